package v3rpc

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics are the member's Prometheus metrics, served on /metrics. Each
// member has its own registry so that several members can run in one
// process (tests).
type Metrics struct {
	reg      *prometheus.Registry
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the metrics of member s.
func NewMetrics(s statsMember) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by method and status code.",
		}, []string{"grpc_method", "grpc_code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "synod_grpc_handling_seconds",
			Help:    "Latency of unary RPCs.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"grpc_method"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.handled, m.duration,
		gauge("etcd_server_has_leader", "Whether a leader exists (1) or not (0).", func() float64 {
			if s.Leader() != 0 {
				return 1
			}
			return 0
		}),
		gauge("etcd_server_is_leader", "Whether this member is the leader.", func() float64 {
			if s.Leader() == s.ID() {
				return 1
			}
			return 0
		}),
		gauge("etcd_server_term", "The current raft term.", func() float64 { return float64(s.Term()) }),
		gauge("etcd_server_applied_index", "The index of the last applied entry.", func() float64 { return float64(s.AppliedIndex()) }),
		gauge("etcd_server_committed_index", "The last commit index seen.", func() float64 { return float64(s.CommittedIndex()) }),
		gauge("etcd_mvcc_db_total_size_in_bytes", "Size of the key space on disk.", func() float64 { return float64(s.KV().DiskSize()) }),
		gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Logical size of the key space and its history, which the space quota is compared with.", func() float64 { return float64(s.KV().LogicalSize()) }),
		gauge("etcd_debugging_mvcc_current_revision", "The current revision of the key space.", func() float64 { return float64(s.KV().Rev()) }),
	)
	return m
}

func (m *Metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.duration.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.handled.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *Metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.handled.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}

package v3rpc

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/synod-db/synod/server"
)

// NewHTTPHandler serves /health, /version and /metrics (and /debug/pprof
// with enablePprof) for member s.
func NewHTTPHandler(s Member, m *Metrics, enablePprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { health(w, r, s) })
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"etcdserver": server.Version, "etcdcluster": server.ClusterVersion})
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// health answers like etcd's /health: healthy when there is a leader and
// a linearizable read succeeds (?serializable=true skips the read).
func health(w http.ResponseWriter, r *http.Request, s Member) {
	type result struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if s.Leader() == 0 {
		writeJSON(w, http.StatusServiceUnavailable, result{Health: "false", Reason: "RAFT NO LEADER"})
		return
	}
	if r.URL.Query().Get("serializable") != "true" {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.LinearizableRead(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, result{Health: "false", Reason: "QGET ERROR: " + err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, result{Health: "true"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

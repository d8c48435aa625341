// Package v3rpc serves the etcd v3 API of a synod member: the gRPC
// services KV, Watch, Lease, Cluster, Maintenance and gRPC health plus
// /health, /livez, /readyz, /version and /metrics over HTTP, all on the
// client port.
//
// The handlers are thin: they validate requests so that nothing malformed
// reaches raft and call the server. Its errors are domain errors; one
// table (errors.go), applied by an interceptor, turns them into etcd's
// gRPC errors, so that etcd clients behave exactly as they do with etcd.
package v3rpc

import (
	"context"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
)

// streamWorkers is the number of goroutines that serve RPCs in turn. By
// default gRPC starts a goroutine per RPC, whose stack then grows by
// copying (several times: gRPC's read path alone is deep) on every call;
// under 1000 clients that copying was a quarter of the leader's CPU for
// linearizable reads and a tenth for puts. Workers keep their grown
// stacks from one RPC to the next (gRPC still starts goroutines when all
// are busy). The cost is their idle stacks, about 8 MiB per member.
const streamWorkers = 1024

// NewGRPCServer returns a gRPC server with synod's services registered.
func NewGRPCServer(s Backend, m *Metrics, o Options) *grpc.Server {
	o = o.withDefaults()
	maxRecv := s.Config().MaxRequestBytes + 512<<10 // room for the envelope
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		// etcd's keepalive policy: gRPC's own default refuses client pings
		// more often than every 5 minutes, and clientv3 users commonly
		// ping every few seconds.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: o.KeepAliveMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: o.KeepAliveInterval, Timeout: o.KeepAliveTimeout}),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(slowUnary(s.Config().Logger, o.WarnUnaryDuration), m.unary, learnerUnary(s), requireLeaderUnary(s), errorsUnary),
		grpc.ChainStreamInterceptor(m.stream, learnerStream(s), requireLeaderStream(s), errorsStream),
	)
	pb.RegisterKVServer(g, newKVServer(s))
	pb.RegisterClusterServer(g, &clusterServer{s: s})
	pb.RegisterMaintenanceServer(g, &maintenanceServer{s: s})
	pb.RegisterWatchServer(g, newWatchServer(s))
	pb.RegisterLeaseServer(g, newLeaseServer(s))
	// The standard health service, as etcd registers it: SERVING for
	// every service ("") while the server runs (load balancers and
	// Kubernetes' gRPC probes ask it). synod's defragmentation does not
	// stop the member, so nothing else changes the status.
	healthpb.RegisterHealthServer(g, grpchealth.NewServer())
	return g
}

// requireLeader reports whether the client asked (clientv3's
// WithRequireLeader) to fail at once when the member has no leader.
func requireLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	v := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}

func requireLeaderUnary(s Member) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if s.Leader() == 0 && requireLeader(ctx) {
			return nil, rpctypes.ErrGRPCNoLeader
		}
		return h(ctx, req)
	}
}

func requireLeaderStream(s Member) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if s.Leader() == 0 && requireLeader(ss.Context()) {
			return rpctypes.ErrGRPCNoLeader
		}
		return h(srv, ss)
	}
}

// learnerRPCs are the calls a learner serves (besides serializable
// ranges): it is not in sync enough for anything that must be current.
var learnerRPCs = map[string]bool{
	"/etcdserverpb.Maintenance/Status":    true,
	"/etcdserverpb.Maintenance/Snapshot":  true,
	"/etcdserverpb.Maintenance/Hash":      true,
	"/etcdserverpb.Maintenance/HashKV":    true,
	"/etcdserverpb.Cluster/MemberList":    true,
	"/etcdserverpb.Cluster/MemberPromote": true,
}

func learnerAllowed(method string, req any) bool {
	if learnerRPCs[method] {
		return true
	}
	r, ok := req.(*pb.RangeRequest)
	return ok && r.Serializable
}

func learnerUnary(s Member) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if s.IsLearner() && !learnerAllowed(info.FullMethod, req) {
			return nil, rpctypes.ErrGRPCNotSupportedForLearner
		}
		return h(ctx, req)
	}
}

func learnerStream(s Member) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if s.IsLearner() && !learnerAllowed(info.FullMethod, nil) {
			return rpctypes.ErrGRPCNotSupportedForLearner
		}
		return h(srv, ss)
	}
}

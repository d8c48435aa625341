package v3rpc

import (
	"context"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/server/watch"
)

// What the API needs of a member, one small interface per service, so
// that each service can be tested against a fake member. *server.Server
// implements them all (Backend). Errors are the member's domain errors;
// errors.go maps them to etcd's.

// Member is what every service and interceptor asks of the member: who
// it is, who leads, and the header of a response.
type Member interface {
	ID() uint64
	ClusterID() uint64
	Leader() uint64
	Term() uint64
	IsLearner() bool
	// Members is the member list (the leader's client URLs are where a
	// follower forwards what only the leader can answer).
	Members() []server.Member
	// Header is a response header: cluster, member, raft term and the
	// current revision.
	Header() *pb.ResponseHeader
	// LinearizableRead returns once the member applied everything
	// committed when it was called (one ReadIndex round).
	LinearizableRead(ctx context.Context) error
	Config() server.Config
}

// KV serves the KV service. Requests arrive validated.
type KV interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	// RangeStream sends the answer to r in pages, in order.
	RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
}

// Lease serves the Lease service. LeaseRenew and LeaseTimeToLive answer
// server.ErrNotLeader on a follower, which forwards them to the leader.
type Lease interface {
	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, id int64) (*pb.LeaseRevokeResponse, error)
	LeaseRenew(ctx context.Context, id int64) (int64, error)
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	LeaseLeases(ctx context.Context) (*pb.LeaseLeasesResponse, error)
}

// Cluster serves the Cluster service. MemberPromote answers
// server.ErrNotLeader on a follower, which forwards it to the leader.
type Cluster interface {
	MemberAdd(ctx context.Context, peerURLs []string, isLearner bool) (server.Member, []server.Member, error)
	MemberRemove(ctx context.Context, id uint64) ([]server.Member, error)
	MemberUpdate(ctx context.Context, id uint64, peerURLs []string) ([]server.Member, error)
	MemberPromote(ctx context.Context, id uint64) ([]server.Member, error)
}

// Maintenance serves the Maintenance service.
type Maintenance interface {
	Status() server.Status
	Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error)
	Defragment(ctx context.Context) error
	Hash() (uint32, error)
	HashKV(rev int64) (hash uint32, compacted, rev2 int64, err error)
	MoveLeader(ctx context.Context, transferee uint64) error
	Snapshot(w io.Writer) error
}

// Watch serves the Watch service.
type Watch interface {
	WatchHub() *watch.Hub
	// LeaderChanged is closed at the next leader change.
	LeaderChanged() <-chan struct{}
}

// Stats are the figures /metrics reports.
type Stats interface {
	AppliedIndex() uint64
	CommittedIndex() uint64
	KV() *mvcc.Store
}

// Backend is a whole member, as Serve needs it.
type Backend interface {
	Member
	KV
	Lease
	Cluster
	Maintenance
	Watch
	Stats
}

var _ Backend = (*server.Server)(nil)

// What each service holds.
type (
	kvMember interface {
		Member
		KV
	}
	leaseMember interface {
		Member
		Lease
	}
	clusterMember interface {
		Member
		Cluster
	}
	maintenanceMember interface {
		Member
		Maintenance
	}
	watchMember interface {
		Member
		Watch
	}
	statsMember interface {
		Member
		Stats
	}
)

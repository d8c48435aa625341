package v3rpc

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/server/watch"
)

// fakeMember is a Backend without raft or storage: it answers what a test
// sets and records the calls that reach it, so that the API layer's own
// work (validation, interceptors, error mapping, forwarding) is tested on
// its own.
type fakeMember struct {
	mu      sync.Mutex
	calls   []string
	leader  uint64
	learner bool
	cfg     server.Config
	err     error // returned by every call that can fail
	// readErr fails linearizable reads alone (a member cut off from
	// its leader still serves serializable ones).
	readErr   error
	alarms    []*pb.AlarmMember // active alarms
	leaseTTLs map[int64]int64
	metrics   *Metrics // of the server serveFake started
}

func newFakeMember() *fakeMember {
	cfg := server.Config{MaxRequestBytes: 1 << 20, MaxTxnOps: 128}
	return &fakeMember{leader: 1, cfg: cfg, leaseTTLs: map[int64]int64{}}
}

func (f *fakeMember) called(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	return f.err
}

func (f *fakeMember) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeMember) set(fn func(f *fakeMember)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeMember) ID() uint64        { return 1 }
func (f *fakeMember) ClusterID() uint64 { return 7 }
func (f *fakeMember) Term() uint64      { return 3 }
func (f *fakeMember) Leader() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}
func (f *fakeMember) IsLearner() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.learner
}
func (f *fakeMember) Members() []server.Member {
	return []server.Member{{ID: 1, Name: "one", ClientURLs: []string{"http://127.0.0.1:1"}}}
}
func (f *fakeMember) Header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 7, MemberId: 1, RaftTerm: 3, Revision: 5}
}
func (f *fakeMember) LinearizableRead(ctx context.Context) error {
	if err := f.called("LinearizableRead"); err != nil {
		return err
	}
	return f.linearizableErr()
}

func (f *fakeMember) linearizableErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readErr
}
func (f *fakeMember) Config() server.Config { return f.cfg }

func (f *fakeMember) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := f.called("Range"); err != nil {
		return nil, err
	}
	if !r.Serializable {
		if err := f.linearizableErr(); err != nil {
			return nil, err
		}
	}
	return &pb.RangeResponse{Header: f.Header()}, nil
}
func (f *fakeMember) RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	resp, err := f.Range(ctx, r)
	if err != nil {
		return err
	}
	return send(resp)
}
func (f *fakeMember) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return &pb.PutResponse{Header: f.Header()}, f.called("Put")
}
func (f *fakeMember) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return &pb.DeleteRangeResponse{Header: f.Header()}, f.called("DeleteRange")
}
func (f *fakeMember) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return &pb.TxnResponse{Header: f.Header()}, f.called("Txn")
}
func (f *fakeMember) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return &pb.CompactionResponse{Header: f.Header()}, f.called("Compact")
}

func (f *fakeMember) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return &pb.LeaseGrantResponse{Header: f.Header(), ID: r.ID, TTL: r.TTL}, f.called("LeaseGrant")
}
func (f *fakeMember) LeaseRevoke(ctx context.Context, id int64) (*pb.LeaseRevokeResponse, error) {
	return &pb.LeaseRevokeResponse{Header: f.Header()}, f.called("LeaseRevoke")
}
func (f *fakeMember) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	if err := f.called("LeaseRenew"); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ttl, ok := f.leaseTTLs[id]
	if !ok {
		return 0, lease.ErrLeaseNotFound
	}
	return ttl, nil
}
func (f *fakeMember) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return &pb.LeaseTimeToLiveResponse{Header: f.Header(), ID: r.ID}, f.called("LeaseTimeToLive")
}
func (f *fakeMember) LeaseLeases(ctx context.Context) (*pb.LeaseLeasesResponse, error) {
	return &pb.LeaseLeasesResponse{Header: f.Header()}, f.called("LeaseLeases")
}

func (f *fakeMember) MemberAdd(ctx context.Context, peerURLs []string, isLearner bool) (server.Member, []server.Member, error) {
	return server.Member{ID: 2, PeerURLs: peerURLs, IsLearner: isLearner}, f.Members(), f.called("MemberAdd")
}
func (f *fakeMember) MemberRemove(ctx context.Context, id uint64) ([]server.Member, error) {
	return f.Members(), f.called("MemberRemove")
}
func (f *fakeMember) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) ([]server.Member, error) {
	return f.Members(), f.called("MemberUpdate")
}
func (f *fakeMember) MemberPromote(ctx context.Context, id uint64) ([]server.Member, error) {
	return f.Members(), f.called("MemberPromote")
}

func (f *fakeMember) Status() server.Status {
	return server.Status{Leader: 1, RaftIndex: 10, RaftTerm: 3, AppliedIndex: 9, DBSize: 4096, DBSizeInUse: 1024}
}
func (f *fakeMember) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if err := f.called("Alarm"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*pb.AlarmMember
	for _, a := range f.alarms {
		if r.Alarm == pb.AlarmType_NONE || r.Alarm == a.Alarm {
			out = append(out, a)
		}
	}
	return &pb.AlarmResponse{Header: f.Header(), Alarms: out}, nil
}
func (f *fakeMember) Defragment(ctx context.Context) error { return f.called("Defragment") }
func (f *fakeMember) Hash() (uint32, error)                { return 42, f.called("Hash") }
func (f *fakeMember) HashKV(rev int64) (uint32, int64, int64, error) {
	if rev == 1 { // before any compaction
		return 41, 0, 1, f.called("HashKV")
	}
	return 43, 2, 5, f.called("HashKV")
}
func (f *fakeMember) MoveLeader(ctx context.Context, transferee uint64) error {
	return f.called("MoveLeader")
}
func (f *fakeMember) Snapshot(w io.Writer) error {
	if err := f.called("Snapshot"); err != nil {
		return err
	}
	_, err := w.Write([]byte("snapshot bytes"))
	return err
}

func (f *fakeMember) WatchHub() *watch.Hub           { return nil }
func (f *fakeMember) LeaderChanged() <-chan struct{} { return make(chan struct{}) }

func (f *fakeMember) AppliedIndex() uint64   { return 9 }
func (f *fakeMember) CommittedIndex() uint64 { return 10 }
func (f *fakeMember) KV() *mvcc.Store        { return nil }

// serveFake serves the gRPC services of f over an in-memory listener and
// returns a connection to them.
func serveFake(t *testing.T, f *fakeMember) *grpc.ClientConn {
	t.Helper()
	ln := bufconn.Listen(1 << 20)
	f.metrics = NewMetrics(f)
	g := NewGRPCServer(f, f.metrics, Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(ln)
	}()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-done
	})
	return conn
}

package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/tests/framework"
)

// fuzzRequestKinds are the requests FuzzRequests sends, chosen by its
// first input byte: everything a client may send to the KV, Lease and
// Watch services, and read-only Cluster and Maintenance calls. Calls that
// would change the membership or raise alarms are left out: they are
// valid requests that would stop the one-member cluster from serving.
var fuzzRequestKinds = []func(context.Context, *fuzzClients, []byte) error{
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.RangeRequest{}, c.kv.Range)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.PutRequest{}, c.kv.Put)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.DeleteRangeRequest{}, c.kv.DeleteRange)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.TxnRequest{}, c.kv.Txn)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.CompactionRequest{}, c.kv.Compact)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.LeaseGrantRequest{}, c.lease.LeaseGrant)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.LeaseRevokeRequest{}, c.lease.LeaseRevoke)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.LeaseTimeToLiveRequest{}, c.lease.LeaseTimeToLive)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.LeaseLeasesRequest{}, c.lease.LeaseLeases)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.MemberListRequest{}, c.cluster.MemberList)
	},
	func(ctx context.Context, c *fuzzClients, b []byte) error {
		return fuzzCall(ctx, b, &pb.HashKVRequest{}, c.maint.HashKV)
	},
	fuzzWatch,
}

// fuzzClients are the raw gRPC clients of the member under test.
type fuzzClients struct {
	kv      pb.KVClient
	lease   pb.LeaseClient
	cluster pb.ClusterClient
	maint   pb.MaintenanceClient
	watch   pb.WatchClient
}

// fuzzCall decodes b into req (bytes that do not decode are not a
// request a client could send) and calls the method with it.
func fuzzCall[Req proto.Message, Resp any](ctx context.Context, b []byte, req Req, call func(context.Context, Req, ...grpc.CallOption) (Resp, error)) error {
	if proto.Unmarshal(b, req) != nil {
		return errNotARequest
	}
	_, err := call(ctx, req)
	return err
}

// errNotARequest marks fuzz input that is not a valid protobuf message.
var errNotARequest = errors.New("input does not decode as the request")

// fuzzWatch opens a watch stream, sends the decoded request and reads
// what comes back within a short time; a stream that stays silent (a
// watch on keys nobody writes) is a valid outcome.
func fuzzWatch(ctx context.Context, c *fuzzClients, b []byte) error {
	var req pb.WatchRequest
	if proto.Unmarshal(b, &req) != nil {
		return errNotARequest
	}
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	st, err := c.watch.Watch(ctx)
	if err != nil {
		return nil // the short deadline may hit while dialling
	}
	if err := st.Send(&req); err != nil {
		return nil
	}
	_, err = st.Recv()
	if err != nil && status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Canceled {
		return err
	}
	return nil
}

// storeState is what a refused request must leave as it was.
type storeState struct {
	rev  int64
	hash uint32
}

func (c *fuzzClients) state(t *testing.T, ctx context.Context) storeState {
	resp, err := c.maint.HashKV(ctx, &pb.HashKVRequest{})
	if err != nil {
		t.Fatalf("HashKV after a fuzzed request: %v (did the server stop serving?)", err)
	}
	return storeState{rev: resp.Header.Revision, hash: resp.Hash}
}

// FuzzRequests sends random requests to the real server through its gRPC
// API (one member, started once): none may panic or stop the server; a
// refused request must come back with a clear error (a known gRPC code
// and a message, never Unknown or Internal, never a hang) and leave the
// key space unchanged. go test runs the seed corpus; fuzz with
// go test ./embed -run '^$' -fuzz FuzzRequests -fuzztime 60s.
func FuzzRequests(f *testing.F) {
	seeds := []struct {
		kind byte
		req  proto.Message
	}{
		{0, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Limit: 3, Revision: 2, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD}},
		{0, &pb.RangeRequest{Key: []byte("a"), Revision: 1 << 40}},
		{1, &pb.PutRequest{Key: []byte("a"), Value: []byte("v")}},
		{1, &pb.PutRequest{Key: []byte("a"), Lease: 12345, PrevKv: true}},
		{1, &pb.PutRequest{Key: []byte("a"), IgnoreValue: true, IgnoreLease: true}},
		{1, &pb.PutRequest{}},
		{2, &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), PrevKv: true}},
		{3, &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_MOD, Result: pb.Compare_LESS, TargetUnion: &pb.Compare_ModRevision{ModRevision: 5}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), Value: []byte("1")}}}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{}}}},
		}},
		{3, &pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("d")}}},
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("d")}}},
		}}},
		{4, &pb.CompactionRequest{Revision: 1 << 50, Physical: true}},
		{5, &pb.LeaseGrantRequest{TTL: 1 << 40, ID: 7}},
		{5, &pb.LeaseGrantRequest{TTL: 5, ID: 9}},
		{6, &pb.LeaseRevokeRequest{ID: 404}},
		{7, &pb.LeaseTimeToLiveRequest{ID: 9, Keys: true}},
		{8, &pb.LeaseLeasesRequest{}},
		{9, &pb.MemberListRequest{Linearizable: true}},
		{10, &pb.HashKVRequest{Revision: -3}},
		{11, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1, Filters: []pb.WatchCreateRequest_FilterType{7}}}}},
		{11, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 99}}}},
		{11, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s.kind, b)
	}
	f.Add(byte(3), []byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f})
	c := framework.NewCluster(f, 1, nil)
	conn := c.Client(0).ActiveConnection()
	cl := &fuzzClients{
		kv: pb.NewKVClient(conn), lease: pb.NewLeaseClient(conn), cluster: pb.NewClusterClient(conn),
		maint: pb.NewMaintenanceClient(conn), watch: pb.NewWatchClient(conn),
	}
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		before := cl.state(t, ctx)
		err := fuzzRequestKinds[int(kind)%len(fuzzRequestKinds)](ctx, cl, b)
		if err == nil || errors.Is(err, errNotARequest) {
			cl.state(t, ctx) // still serving
			return
		}
		st, _ := status.FromError(err)
		switch {
		case st.Code() == codes.Unknown || st.Code() == codes.Internal || st.Message() == "":
			t.Fatalf("request kind %d refused without a clear error: %v", int(kind)%len(fuzzRequestKinds), err)
		case st.Code() == codes.DeadlineExceeded:
			t.Fatalf("request kind %d hung until the deadline", int(kind)%len(fuzzRequestKinds))
		}
		if after := cl.state(t, ctx); after != before {
			t.Fatalf("request kind %d was refused (%v) but the key space changed: revision %d -> %d, hash %x -> %x",
				int(kind)%len(fuzzRequestKinds), err, before.rev, after.rev, before.hash, after.hash)
		}
	})
}

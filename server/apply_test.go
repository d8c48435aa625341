package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/watch"
)

// TestApplySkippedEntryAnswersResultUnknown is the regression test of a
// panic the chaos harness found: a follower that installs a snapshot
// whose key space was taken after the snapshot's index skips the entries
// in between (their effect is already there), and a proposer waiting on
// one of them used to get a nil response, which the request path
// type-asserted. It must get ErrResultUnknown, and the entry must not be
// applied a second time.
func TestApplySkippedEntryAnswersResultUnknown(t *testing.T) {
	kv, err := mvcc.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if _, _, err := kv.Put(5, []byte("k"), []byte("v1"), 0, mvcc.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kv.SetConsistentIndex(9); err != nil {
		t.Fatal(err)
	}
	s := &Server{kv: kv, w: newWaitRegistry()}
	data, err := proto.Marshal(&pb.InternalRaftRequest{ID: 42, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v2")}})
	if err != nil {
		t.Fatal(err)
	}
	ch := s.w.register(42)
	rev := kv.Rev()
	e := &raftpb.Entry{Index: 7, Term: 1, Type: raftpb.EntryNormal, Data: data}
	if err := s.applyNormal(e, s.decodeEntry(e)); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if !errors.Is(r.err, ErrResultUnknown) || r.resp != nil {
		t.Fatalf("waiter of a skipped entry got %+v, want ErrResultUnknown", r)
	}
	if kv.Rev() != rev {
		t.Fatalf("skipped entry was applied: revision %d -> %d", rev, kv.Rev())
	}
}

// TestProposeForUnexpectedResult checks that a result of the wrong type
// (or none) becomes ErrResultUnknown instead of a panic.
func TestProposeForUnexpectedResult(t *testing.T) {
	for _, resp := range []any{nil, &pb.TxnResponse{}} {
		do := func(context.Context, *pb.InternalRaftRequest) (any, error) { return resp, nil }
		out, err := proposeFor[*pb.PutResponse](context.Background(), do, &pb.InternalRaftRequest{})
		if !errors.Is(err, ErrResultUnknown) || out != nil {
			t.Fatalf("result %T: got (%v, %v), want ErrResultUnknown", resp, out, err)
		}
	}
}

// TestExpirySurvivesTheLog checks that the term and grant an expiry
// revocation names travel through the entry's encoding, and that a
// client's revocation carries none.
func TestExpirySurvivesTheLog(t *testing.T) {
	req := &pb.InternalRaftRequest{ID: 3, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 9}}
	markExpiry(req, expiry{term: 17, grantIndex: 1 << 35})
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.InternalRaftRequest
	if err := proto.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if e, ok := expiryOf(&got); !ok || e != (expiry{term: 17, grantIndex: 1 << 35}) || got.LeaseRevoke.GetID() != 9 {
		t.Fatalf("decoded expiry %+v, %v (lease %d), want term 17, grant 1<<35 (lease 9)", e, ok, got.LeaseRevoke.GetID())
	}
	client := &pb.InternalRaftRequest{ID: 4, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 9}}
	if _, ok := expiryOf(client); ok {
		t.Fatal("a client's revocation reads as an expiry")
	}
}

// TestExpiryCurrent checks which expiries are applied: only from the
// deciding leader's term, and only for the grant that expired.
func TestExpiryCurrent(t *testing.T) {
	ls := &leaseState{les: lease.New(lease.Config{})}
	if _, err := ls.les.Grant(7, 10, 100); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		e    expiry
		term uint64
		id   int64
		want bool
	}{
		{expiry{term: 4, grantIndex: 100}, 4, 7, true},
		{expiry{term: 4, grantIndex: 100}, 5, 7, false}, // forwarded to a later leader
		{expiry{term: 4, grantIndex: 90}, 4, 7, false},  // an earlier grant of lease 7
		{expiry{term: 4, grantIndex: 90}, 4, 8, true},   // unknown lease: "not found"
	} {
		if got := ls.expiryCurrent(c.e, c.term, c.id); got != c.want {
			t.Errorf("expiry %+v of lease %d in an entry of term %d: current = %v, want %v", c.e, c.id, c.term, got, c.want)
		}
	}
}

// TestApplyStaleExpiryIsNotFatal is the regression test of a member
// stopping on "lease expiry decided by a deposed leader" (the chaos soak
// found it): refusing a stale expiry is a decision every member makes
// alike, not a storage failure. The entry is consumed, the lease stays
// and the proposer learns ErrStaleExpiry.
func TestApplyStaleExpiryIsNotFatal(t *testing.T) {
	kv, err := mvcc.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	ls := &leaseState{les: lease.New(lease.Config{})}
	if _, err := ls.les.Grant(7, 10, 3); err != nil {
		t.Fatal(err)
	}
	s := &Server{kv: kv, w: newWaitRegistry(), leaseSt: ls}
	req := &pb.InternalRaftRequest{ID: 99, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 7}}
	markExpiry(req, expiry{term: 4, grantIndex: 3})
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.w.register(99)
	e := &raftpb.Entry{Index: 10, Term: 5, Type: raftpb.EntryNormal, Data: data}
	if err := s.applyNormal(e, s.decodeEntry(e)); err != nil {
		t.Fatalf("applying a stale expiry failed the member: %v", err)
	}
	if r := <-ch; !errors.Is(r.err, ErrStaleExpiry) {
		t.Fatalf("proposer got %+v, want ErrStaleExpiry", r)
	}
	if !ls.les.Exists(7) || kv.ConsistentIndex() != 10 {
		t.Fatalf("lease 7 exists: %v, consistent index %d (want true, 10)", ls.les.Exists(7), kv.ConsistentIndex())
	}
}

// groupTestServer is a server with just what applyJob needs.
func groupTestServer(t *testing.T) *Server {
	t.Helper()
	kv, err := mvcc.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	s := &Server{kv: kv, w: newWaitRegistry(), applied: newAppliedWaiter(0), lg: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.cfg.SnapshotCount = 1 << 30
	s.watchHub = watch.New(kv, kv.Rev(), watch.Options{})
	t.Cleanup(s.watchHub.Close)
	return s
}

func entryOf(t *testing.T, index, term uint64, req *pb.InternalRaftRequest) raftpb.Entry {
	t.Helper()
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return raftpb.Entry{Index: index, Term: term, Type: raftpb.EntryNormal, Data: data}
}

// TestGroupedWritesAnsweredInOrder applies one Ready's worth of entries
// whose KV writes share Pebble commits, broken up by a new term, a
// member-list change and a write that fails, and checks that every
// proposer gets its own revision and that the writes of the older term,
// which did commit, are answered before the new term fails what is left
// of it.
func TestGroupedWritesAnsweredInOrder(t *testing.T) {
	s := groupTestServer(t)
	put := func(id uint64, k string) *pb.InternalRaftRequest {
		return &pb.InternalRaftRequest{ID: id, Put: &pb.PutRequest{Key: []byte(k), Value: []byte(k)}}
	}
	badTxn := &pb.InternalRaftRequest{ID: 4, Txn: &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("x"), Value: []byte("x")}}},
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("y"), IgnoreValue: true}}},
	}}}
	entries := []raftpb.Entry{
		entryOf(t, 1, 1, put(1, "a")),
		entryOf(t, 2, 1, put(2, "b")),
		{Index: 3, Term: 2, Type: raftpb.EntryNormal}, // a new leader's empty entry
		entryOf(t, 4, 2, put(3, "c")),
		entryOf(t, 5, 2, badTxn),
		entryOf(t, 6, 2, &pb.InternalRaftRequest{ID: 5, DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a")}}),
		entryOf(t, 7, 2, put(6, "d")),
	}
	chans := map[uint64]<-chan applyResult{}
	for id := uint64(1); id <= 6; id++ {
		chans[id] = s.w.register(id)
		s.w.proposed(id, min(id, 2)) // 1 and 2 under term 1, the rest under term 2
	}
	chans[7] = s.w.register(7) // proposed under term 1, never committed
	s.w.proposed(7, 1)
	if err := s.applyJob(applyJob{entries: entries}); err != nil {
		t.Fatal(err)
	}
	wantRev := map[uint64]int64{1: 2, 2: 3, 3: 4, 5: 5, 6: 6}
	for id, rev := range wantRev {
		r := <-chans[id]
		if r.err != nil {
			t.Fatalf("request %d: %v", id, r.err)
		}
		if got := headerRev(r.resp); got != rev {
			t.Fatalf("request %d answered at revision %d, want %d", id, got, rev)
		}
	}
	if r := <-chans[4]; r.err == nil {
		t.Fatalf("the txn putting with ignore_value on a missing key succeeded: %+v", r.resp)
	}
	if r := <-chans[7]; !errors.Is(r.err, ErrLeaderChanged) {
		t.Fatalf("the lost proposal of term 1 got %+v, want ErrLeaderChanged", r)
	}
	if s.kv.Rev() != 6 || s.kv.ConsistentIndex() != 7 || s.applied.applied.Load() != 7 {
		t.Fatalf("revision %d, consistent index %d, applied %d; want 6, 7, 7", s.kv.Rev(), s.kv.ConsistentIndex(), s.applied.applied.Load())
	}
	res, err := s.kv.Range([]byte("x"), nil, mvcc.RangeOptions{})
	if err != nil || res.Count != 0 {
		t.Fatalf("the failed txn's put of x is visible: %+v, %v", res, err)
	}
}

func headerRev(resp any) int64 {
	switch r := resp.(type) {
	case *pb.PutResponse:
		return r.Header.GetRevision()
	case *pb.DeleteRangeResponse:
		return r.Header.GetRevision()
	case *pb.TxnResponse:
		return r.Header.GetRevision()
	}
	return -1
}

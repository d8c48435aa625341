package server

import (
	"context"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft/raftpb"
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
	if err := s.applyNormal(&raftpb.Entry{Index: 7, Term: 1, Type: raftpb.EntryNormal, Data: data}); err != nil {
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
	if err := s.applyNormal(&raftpb.Entry{Index: 10, Term: 5, Type: raftpb.EntryNormal, Data: data}); err != nil {
		t.Fatalf("applying a stale expiry failed the member: %v", err)
	}
	if r := <-ch; !errors.Is(r.err, ErrStaleExpiry) {
		t.Fatalf("proposer got %+v, want ErrStaleExpiry", r)
	}
	if !ls.les.Exists(7) || kv.ConsistentIndex() != 10 {
		t.Fatalf("lease 7 exists: %v, consistent index %d (want true, 10)", ls.les.Exists(7), kv.ConsistentIndex())
	}
}

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/kvapply"
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
	a, _ := newTestApplier(t, kv)
	data, err := encodeEntry(&pb.InternalRaftRequest{ID: 42, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v2")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := a.w.register(42)
	rev := kv.Rev()
	e := &raftpb.Entry{Index: 7, Term: 1, Type: raftpb.EntryNormal, Data: data}
	if err := applyEntry(a, e); err != nil {
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

// markLegacyExpiry tags req with expiry e as entries written before the
// envelope did: unknown fields of the request.
func markLegacyExpiry(req *pb.InternalRaftRequest, e expiry) {
	b := protowire.AppendTag(nil, legacyExpiryTermField, protowire.VarintType)
	b = protowire.AppendVarint(b, e.term)
	b = protowire.AppendTag(b, legacyExpiryGrantField, protowire.VarintType)
	b = protowire.AppendVarint(b, e.grantIndex)
	req.ProtoReflect().SetUnknown(b)
}

// applyEntry decodes and applies a normal entry, as applyJob does.
func applyEntry(a *applier, e *raftpb.Entry) error {
	req, exp, err := a.decodeEntry(e)
	if err != nil {
		return err
	}
	return a.applyNormal(e, req, exp)
}

// TestEntryEnvelope checks the entry format: requests and expiries
// survive the envelope; entries written before it (with the expiry in
// unknown fields) still read the same; an envelope of a newer version is
// an error, and a damaged one does not decode.
func TestEntryEnvelope(t *testing.T) {
	exp := &expiry{term: 17, grantIndex: 1 << 35}
	reqs := []*pb.InternalRaftRequest{
		{ID: 1, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 5}},
		{ID: 2, Txn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("z")}}}}}},
		{ID: 3, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 9}},
		{},
	}
	for _, req := range reqs {
		for _, e := range []*expiry{nil, exp} {
			data, err := encodeEntry(req, e)
			if err != nil {
				t.Fatal(err)
			}
			if data[0] != entryMarker || data[1] != entryVersion {
				t.Fatalf("entry starts % x, want the marker and version %d", data[:2], entryVersion)
			}
			got, gotExp, err := decodeEntry(data)
			if err != nil || !proto.Equal(got, req) || !reflect.DeepEqual(gotExp, e) {
				t.Fatalf("decoded %v, %+v, %v; want %v, %+v", got, gotExp, err, req, e)
			}
		}
	}

	legacy := &pb.InternalRaftRequest{ID: 3, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 9}}
	markLegacyExpiry(legacy, *exp)
	data, err := proto.Marshal(legacy)
	if err != nil {
		t.Fatal(err)
	}
	got, gotExp, err := decodeEntry(data)
	if err != nil || got.LeaseRevoke.GetID() != 9 || gotExp == nil || *gotExp != *exp {
		t.Fatalf("entry written before the envelope: %v, %+v, %v; want lease 9 with %+v", got, gotExp, err, exp)
	}
	client, err := proto.Marshal(&pb.InternalRaftRequest{ID: 4, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 9}})
	if err != nil {
		t.Fatal(err)
	}
	if _, gotExp, err := decodeEntry(client); err != nil || gotExp != nil {
		t.Fatalf("a client's revocation written before the envelope reads as expiry %+v (%v)", gotExp, err)
	}

	newer, err := encodeEntry(reqs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	newer[1] = entryVersion + 1
	if _, _, err := decodeEntry(newer); !errors.Is(err, errEntryVersion) {
		t.Fatalf("newer envelope: %v, want errEntryVersion", err)
	}
	a, _ := newTestApplier(t, nil)
	if err := applyEntry(a, &raftpb.Entry{Index: 1, Term: 1, Data: newer}); !errors.Is(err, errEntryVersion) {
		t.Fatalf("applying a newer envelope: %v, want the member to stop with errEntryVersion", err)
	}
	for _, bad := range [][]byte{{entryMarker}, {entryMarker, entryVersion, 0x05, 0x08}, {entryMarker, entryVersion, 0x02, 0x08}} {
		if _, _, err := decodeEntry(bad); err == nil {
			t.Errorf("damaged envelope % x decoded", bad)
		}
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
	a, _ := newTestApplier(t, kv)
	ls := a.leases
	if _, err := ls.les.Grant(7, 10, 3); err != nil {
		t.Fatal(err)
	}
	req := &pb.InternalRaftRequest{ID: 99, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 7}}
	data, err := encodeEntry(req, &expiry{term: 4, grantIndex: 3})
	if err != nil {
		t.Fatal(err)
	}
	ch := a.w.register(99)
	e := &raftpb.Entry{Index: 10, Term: 5, Type: raftpb.EntryNormal, Data: data}
	if err := applyEntry(a, e); err != nil {
		t.Fatalf("applying a stale expiry failed the member: %v", err)
	}
	if r := <-ch; !errors.Is(r.err, ErrStaleExpiry) {
		t.Fatalf("proposer got %+v, want ErrStaleExpiry", r)
	}
	if !ls.les.Exists(7) || kv.ConsistentIndex() != 10 {
		t.Fatalf("lease 7 exists: %v, consistent index %d (want true, 10)", ls.les.Exists(7), kv.ConsistentIndex())
	}
}

// testEnv is an applyEnv that records what the applier asks for.
type testEnv struct {
	confChanges []raftpb.ConfChange
	peers       []raftpb.ConfChange
	syncs       int
	removed     bool
	snapshots   []raftpb.SnapshotMetadata
	busy        bool // a snapshot is being taken: startSnapshot refuses
}

func (e *testEnv) applyConfChange(cc raftpb.ConfChange) { e.confChanges = append(e.confChanges, cc) }
func (e *testEnv) peerChanged(cc raftpb.ConfChange)     { e.peers = append(e.peers, cc) }
func (e *testEnv) syncPeers()                           { e.syncs++ }
func (e *testEnv) removedSelf()                         { e.removed = true }
func (e *testEnv) startSnapshot(meta raftpb.SnapshotMetadata) bool {
	if e.busy {
		return false
	}
	e.snapshots = append(e.snapshots, meta)
	return true
}

// newTestApplier builds member 1's applier on kv (a new key space if
// nil), with an empty member list and lease table and snapshots only
// every 2^30 entries.
func newTestApplier(t *testing.T, kv *mvcc.Store) (*applier, *testEnv) {
	t.Helper()
	if kv == nil {
		var err error
		kv, err = mvcc.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kv.Close() })
	}
	les := lease.New(lease.Config{})
	hub := watch.New(kv, kv.Rev(), watch.Options{})
	t.Cleanup(hub.Close)
	env := &testEnv{}
	a := &applier{
		lg: slog.New(slog.NewTextHandler(io.Discard, nil)), id: 1,
		cfg: Config{SnapshotCount: 1 << 30, MaxLearners: DefaultMaxLearners},
		kv:  kv, members: newMembership(), alarms: &alarmSet{},
		leases: &leaseState{les: les, checker: kvapply.LeaseCheckerFunc(les.Exists), primaryChg: make(chan struct{})},
		watch:  hub, w: newWaitRegistry(), applied: newAppliedWaiter(kv.ConsistentIndex()), env: env,
	}
	return a, env
}

func entryOf(t *testing.T, index, term uint64, req *pb.InternalRaftRequest) raftpb.Entry {
	t.Helper()
	data, err := encodeEntry(req, nil)
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
	a, _ := newTestApplier(t, nil)
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
		chans[id] = a.w.register(id)
		a.w.proposed(id, min(id, 2)) // 1 and 2 under term 1, the rest under term 2
	}
	chans[7] = a.w.register(7) // proposed under term 1, never committed
	a.w.proposed(7, 1)
	if err := a.applyJob(applyJob{entries: entries}); err != nil {
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
	if a.kv.Rev() != 6 || a.kv.ConsistentIndex() != 7 || a.applied.applied.Load() != 7 {
		t.Fatalf("revision %d, consistent index %d, applied %d; want 6, 7, 7", a.kv.Rev(), a.kv.ConsistentIndex(), a.applied.applied.Load())
	}
	res, err := a.kv.Range([]byte("x"), nil, mvcc.RangeOptions{})
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

// memberChangeEntry is entry index of term holding cc about member m.
func memberChangeEntry(t *testing.T, index, term uint64, cc raftpb.ConfChange, m Member) raftpb.Entry {
	t.Helper()
	if m.ID != 0 {
		ctx, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		cc.Context = ctx
	}
	e := raftpb.ToEntry(cc)
	e.Index, e.Term = index, term
	return e
}

// TestApplyConfChanges checks membership changes as the applier decides
// them from the log alone: an accepted change reaches raft, the member
// list and the transport; a refused one reaches raft with NodeID 0 (so
// that it clears its pending change) and its proposer learns why; the
// removal of this member says so; and replaying the entries after a
// restart changes nothing but makes the same decisions.
func TestApplyConfChanges(t *testing.T) {
	a, env := newTestApplier(t, nil)
	a.confState = raftpb.ConfState{Voters: []uint64{1}}
	entries := []raftpb.Entry{
		memberChangeEntry(t, 1, 1, raftpb.ConfChange{ID: 11, Type: raftpb.ConfChangeAddNode, NodeID: 2}, Member{ID: 2, PeerURLs: []string{"http://b:2380"}}),
		memberChangeEntry(t, 2, 1, raftpb.ConfChange{ID: 12, Type: raftpb.ConfChangeAddNode, NodeID: 2}, Member{ID: 2, PeerURLs: []string{"http://b:2380"}}),
		memberChangeEntry(t, 3, 1, raftpb.ConfChange{ID: 13, Type: raftpb.ConfChangeRemoveNode, NodeID: 3}, Member{}),
		memberChangeEntry(t, 4, 1, raftpb.ConfChange{ID: 14, Type: raftpb.ConfChangeAddLearnerNode, NodeID: 3}, Member{ID: 3, PeerURLs: []string{"http://c:2380"}}),
		memberChangeEntry(t, 5, 1, raftpb.ConfChange{ID: 15, Type: raftpb.ConfChangeRemoveNode, NodeID: 1}, Member{}),
	}
	want := map[uint64]error{11: nil, 12: ErrMemberExists, 13: ErrMemberNotFound, 14: nil, 15: nil}
	chans := map[uint64]<-chan applyResult{}
	for id := range want {
		chans[id] = a.w.register(id)
	}
	if err := a.applyJob(applyJob{entries: entries}); err != nil {
		t.Fatal(err)
	}
	for id, err := range want {
		if r := <-chans[id]; !errors.Is(r.err, err) {
			t.Errorf("change %d: %v, want %v", id, r.err, err)
		}
	}
	var toRaft []uint64
	for _, cc := range env.confChanges {
		toRaft = append(toRaft, cc.NodeID)
	}
	if !slices.Equal(toRaft, []uint64{2, 0, 0, 3, 1}) {
		t.Errorf("node IDs handed to raft %v, want [2 0 0 3 1]", toRaft)
	}
	if !slices.Equal(a.confState.Voters, []uint64{2}) || !slices.Equal(a.confState.Learners, []uint64{3}) {
		t.Errorf("conf state %+v, want voters [2], learners [3]", a.confState)
	}
	if len(env.peers) != 2 || !env.removed {
		t.Errorf("transport told of %d changes (want 2: this member's own removal is not a peer's), removed %v", len(env.peers), env.removed)
	}
	if m, ok := a.members.get(3); !ok || !m.IsLearner || a.kv.ConsistentIndex() != 5 {
		t.Errorf("member 3 %+v (listed: %v), consistent index %d", m, ok, a.kv.ConsistentIndex())
	}

	// A restart replays the same entries on the key space that holds
	// them: the same decisions, and the stored member list is kept.
	b, env2 := newTestApplier(t, a.kv)
	b.confState = raftpb.ConfState{Voters: []uint64{1}}
	if err := loadMembers(b.kv, b.members); err != nil {
		t.Fatal(err)
	}
	if err := b.applyJob(applyJob{entries: entries}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.confState.Voters, a.confState.Voters) || !slices.Equal(b.confState.Learners, a.confState.Learners) || len(env2.confChanges) != 5 {
		t.Errorf("replay: conf state %+v, %d changes to raft", b.confState, len(env2.confChanges))
	}
	if !reflect.DeepEqual(b.members.list(), a.members.list()) {
		t.Errorf("replay: members %+v, want %+v", b.members.list(), a.members.list())
	}
}

// TestSnapshotTrigger checks when the applier asks for a snapshot: after
// SnapshotCount entries or SnapshotLogBytes of them, and again only
// after as many more; a request refused while one is being taken is
// asked again at the next entry.
func TestSnapshotTrigger(t *testing.T) {
	a, env := newTestApplier(t, nil)
	a.cfg.SnapshotCount, a.cfg.SnapshotLogBytes = 10, 1<<20
	index := uint64(0)
	apply := func(n int, valueBytes int) {
		t.Helper()
		var entries []raftpb.Entry
		for range n {
			index++
			entries = append(entries, entryOf(t, index, 1, &pb.InternalRaftRequest{ID: index, Put: &pb.PutRequest{Key: []byte("k"), Value: make([]byte, valueBytes)}}))
		}
		if err := a.applyJob(applyJob{entries: entries}); err != nil {
			t.Fatal(err)
		}
	}
	apply(9, 0)
	if len(env.snapshots) != 0 {
		t.Fatalf("snapshot after 9 entries: %+v", env.snapshots)
	}
	apply(1, 0)
	if len(env.snapshots) != 1 || env.snapshots[0].Index != 10 || env.snapshots[0].Term != 1 {
		t.Fatalf("after 10 entries: %+v, want one at index 10, term 1", env.snapshots)
	}
	env.busy = true
	apply(10, 0)
	if len(env.snapshots) != 1 {
		t.Fatalf("snapshot started while one is taken: %+v", env.snapshots)
	}
	env.busy = false
	apply(1, 0)
	if len(env.snapshots) != 2 || env.snapshots[1].Index != 21 {
		t.Fatalf("after the busy one: %+v, want a second at 21", env.snapshots)
	}
	apply(2, 600<<10) // 1.2 MiB of entries in 2
	if len(env.snapshots) != 3 || env.snapshots[2].Index != 23 {
		t.Fatalf("by bytes: %+v, want a third at 23", env.snapshots)
	}
}

// BenchmarkEncodeEntry measures the envelope's cost on the proposal
// path against marshaling the bare request.
func BenchmarkEncodeEntry(b *testing.B) {
	req := &pb.InternalRaftRequest{ID: 1 << 50, Header: &pb.RequestHeader{ID: 1 << 50}, Put: &pb.PutRequest{Key: []byte("/registry/pods/default/p-123"), Value: make([]byte, 256)}}
	b.Run("envelope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeEntry(req, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSlowApplyWarning: entries whose apply takes longer than
// WarnApplyDuration are logged in etcd's words; with a generous limit
// nothing is.
func TestSlowApplyWarning(t *testing.T) {
	for _, limit := range []time.Duration{time.Nanosecond, time.Hour} {
		a, _ := newTestApplier(t, nil)
		var logs bytes.Buffer
		a.lg = slog.New(slog.NewTextHandler(&logs, nil))
		a.cfg.WarnApplyDuration = limit
		put := &pb.InternalRaftRequest{ID: 1, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}}
		if err := a.applyJob(applyJob{entries: []raftpb.Entry{entryOf(t, 1, 1, put), {Index: 2, Term: 1, Type: raftpb.EntryNormal}}}); err != nil {
			t.Fatal(err)
		}
		if warned := strings.Contains(logs.String(), "apply request took too long"); warned != (limit == time.Nanosecond) {
			t.Errorf("limit %v: warned %v; log:\n%s", limit, warned, logs.String())
		}
	}
}

// TestBootstrapDefrag: at start-up, key-space files holding at least the
// threshold beyond the data in use are compacted (and say so); below it
// the member logs etcd's "Skipping defragmentation".
func TestBootstrapDefrag(t *testing.T) {
	for _, tc := range []struct {
		threshold int64
		want      string
	}{
		{1 << 40, "Skipping defragmentation"},
		{1, "defragmenting the key space before start-up"},
	} {
		kv, err := mvcc.Open(filepath.Join(t.TempDir(), "kv"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			if _, _, err := kv.Put(0, []byte(fmt.Sprint(i)), bytes.Repeat([]byte("v"), 1000), 0, mvcc.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// Delete it all and compact: the files hold more than is in use.
		rev, _, _, err := kv.DeleteRange(0, []byte{0}, []byte{0xff}, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := kv.Compact(0, rev); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s := &Server{cfg: Config{BootstrapDefragThreshold: tc.threshold}, kv: kv, lg: slog.New(slog.NewTextHandler(&logs, nil))}
		if err := s.bootstrapDefrag(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), tc.want) {
			t.Errorf("threshold %d: log lacks %q:\n%s", tc.threshold, tc.want, logs.String())
		}
		kv.Close()
	}
}

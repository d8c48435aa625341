package server

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/raft/raftpb"
)

// TestRecentProposalsDropRepeats checks that a forwarded proposal seen
// twice keeps only its first delivery, that entries without a request ID
// pass, and that the memory stays bounded: the oldest IDs are forgotten.
func TestRecentProposalsDropRepeats(t *testing.T) {
	entry := func(id uint64) raftpb.Entry {
		data, err := encodeEntry(&pb.InternalRaftRequest{ID: id, Header: &pb.RequestHeader{ID: id}, Put: &pb.PutRequest{Key: []byte("k")}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return raftpb.Entry{Type: raftpb.EntryNormal, Data: data}
	}
	if got := requestID(entry(77)); got != 77 {
		t.Fatalf("requestID = %d, want 77", got)
	}
	// In an envelope with synod's fields, and in an entry written before
	// the envelope.
	withExpiry, err := encodeEntry(&pb.InternalRaftRequest{ID: 78, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 3}}, &expiry{term: 2, grantIndex: 9})
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := proto.Marshal(&pb.InternalRaftRequest{ID: 79, Put: &pb.PutRequest{Key: []byte("k")}})
	if err != nil {
		t.Fatal(err)
	}
	for want, data := range map[uint64][]byte{78: withExpiry, 79: legacy} {
		if got := requestID(raftpb.Entry{Type: raftpb.EntryNormal, Data: data}); got != want {
			t.Fatalf("requestID = %d, want %d", got, want)
		}
	}
	var r recentProposals
	m := raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{entry(1), entry(2)}}
	if !r.dropRepeats(&m) || len(m.Entries) != 2 {
		t.Fatalf("first delivery lost entries: %d left", len(m.Entries))
	}
	m = raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{entry(2), entry(3), {Type: raftpb.EntryNormal}, {Type: raftpb.EntryConfChange, Data: []byte{8, 2}}}}
	if !r.dropRepeats(&m) || len(m.Entries) != 3 || requestID(m.Entries[0]) != 3 {
		t.Fatalf("repeat of 2 not dropped, or others lost: %d entries left", len(m.Entries))
	}
	m = raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{entry(1)}}
	if r.dropRepeats(&m) {
		t.Fatal("a proposal delivered twice was kept")
	}
	for id := uint64(100); id < 100+recentProposalsCap; id++ {
		r.firstTime(id)
	}
	if len(r.seen) != recentProposalsCap {
		t.Fatalf("remembering %d IDs, want the cap %d", len(r.seen), recentProposalsCap)
	}
	if !r.firstTime(1) {
		t.Fatal("the oldest ID was not forgotten")
	}
}

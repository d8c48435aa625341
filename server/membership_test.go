package server

import (
	"errors"
	"slices"
	"testing"

	"github.com/synod-db/synod/raft/raftpb"
)

// TestMemberIDs checks that IDs depend on the URLs (in any order) and the
// token, so every member of a new cluster derives the same ones.
func TestMemberIDs(t *testing.T) {
	a := MemberID([]string{"http://a:1", "http://b:2"}, "tok", 0)
	if b := MemberID([]string{"http://b:2", "http://a:1"}, "tok", 0); a != b {
		t.Fatal("member ID depends on URL order")
	}
	if MemberID([]string{"http://a:1", "http://b:2"}, "other", 0) == a {
		t.Fatal("member ID ignores the token")
	}
	if MemberID([]string{"http://a:1", "http://b:2"}, "tok", 42) == a {
		t.Fatal("member ID ignores the time of a runtime add")
	}
	if ClusterID([]uint64{1, 2, 3}) != ClusterID([]uint64{3, 1, 2}) || ClusterID([]uint64{1, 2}) == ClusterID([]uint64{1, 3}) {
		t.Fatal("cluster ID is not a function of the member set")
	}
}

// TestParseInitialCluster checks the --initial-cluster syntax.
func TestParseInitialCluster(t *testing.T) {
	ic, err := ParseInitialCluster("a=http://h:1, b=http://h:2,a=http://h:3")
	if err != nil || !slices.Equal(ic["a"], []string{"http://h:1", "http://h:3"}) || len(ic["b"]) != 1 {
		t.Fatalf("%v %v", ic, err)
	}
	for _, bad := range []string{"", "a", "=http://h:1", "a=", "a=https://h:1", "a=http://h", "a=http://:1"} {
		if _, err := ParseInitialCluster(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestMembershipState checks add/remove/validate and the encoding round
// trip that persists the list.
func TestMembershipState(t *testing.T) {
	m := newMembership()
	m.add(Member{ID: 1, Name: "a", PeerURLs: []string{"http://h:1"}})
	m.add(Member{ID: 2, PeerURLs: []string{"http://h:2"}, IsLearner: true})
	if err := m.validateAdd(Member{ID: 1}); !errors.Is(err, ErrMemberExists) {
		t.Errorf("re-add: %v", err)
	}
	if err := m.validateAdd(Member{ID: 3, PeerURLs: []string{"http://h:2"}}); !errors.Is(err, ErrPeerURLExists) {
		t.Errorf("URL reuse: %v", err)
	}
	m.remove(2)
	if err := m.validateAdd(Member{ID: 2}); !errors.Is(err, ErrIDRemoved) || !m.isRemoved(2) {
		t.Errorf("removed ID: %v", err)
	}
	c := newMembership()
	if err := c.load(m.marshal()); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(c.list(), m.list(), func(a, b Member) bool { return a.ID == b.ID && a.Name == b.Name }) || !c.isRemoved(2) {
		t.Fatalf("round trip: %+v", c.list())
	}
	if err := c.load([]byte("{")); err == nil {
		t.Fatal("corrupt member list accepted")
	}
}

// TestNextConfState checks the configuration tracked from the log.
func TestNextConfState(t *testing.T) {
	cs := raftpb.ConfState{Voters: []uint64{1, 2}}
	cs = nextConfState(cs, raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode, NodeID: 3})
	cs = nextConfState(cs, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 3})
	cs = nextConfState(cs, raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: 1})
	cs = nextConfState(cs, raftpb.ConfChange{Type: raftpb.ConfChangeUpdateNode, NodeID: 2})
	if !slices.Equal(cs.Voters, []uint64{2, 3}) || len(cs.Learners) != 0 {
		t.Fatalf("%+v", cs)
	}
}

package raft_test

import (
	"fmt"
	"testing"

	"github.com/synod-db/synod/raft/rafttest"
)

func newCluster(t testing.TB, opts rafttest.Options, voters, learners []uint64) *rafttest.Cluster {
	t.Helper()
	c, err := rafttest.New(opts, voters, learners)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSmokeReplication(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, []uint64{1, 2, 3}, nil)
	must(t, c.ElectLeader(1))
	for i := 0; i < 10; i++ {
		must(t, c.Propose(1, []byte(fmt.Sprintf("v%d", i))))
	}
	must(t, c.Stabilize())
	for _, id := range c.IDs() {
		m := c.Member(id)
		if len(m.Data) != 10 {
			t.Fatalf("member %d applied %d entries, want 10", id, len(m.Data))
		}
	}
}

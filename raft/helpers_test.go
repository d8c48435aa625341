package raft_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
)

// newCluster builds a rafttest cluster or fails the test.
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

func ids(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// status returns a running member's basic status.
func status(c *rafttest.Cluster, id uint64) raft.BasicStatus {
	return c.Member(id).Node.BasicStatus()
}

// tickUntil ticks every member and stabilizes until cond holds, failing
// after maxTicks.
func tickUntil(t testing.TB, c *rafttest.Cluster, maxTicks int, what string, cond func() bool) int {
	t.Helper()
	for i := 0; i < maxTicks; i++ {
		if cond() {
			return i
		}
		c.TickAll()
		must(t, c.Stabilize())
	}
	if !cond() {
		t.Fatalf("%s: not reached within %d ticks", what, maxTicks)
	}
	return maxTicks
}

// proposeAndCommit proposes n entries on id and stabilizes.
func proposeAndCommit(t testing.TB, c *rafttest.Cluster, id uint64, n int, prefix string) {
	t.Helper()
	for i := 0; i < n; i++ {
		must(t, c.Propose(id, []byte(fmt.Sprintf("%s%d", prefix, i))))
	}
	must(t, c.Stabilize())
}

// dataOf returns a member's applied data as strings.
func dataOf(c *rafttest.Cluster, id uint64) []string {
	var out []string
	for _, d := range c.Member(id).Data {
		out = append(out, string(d))
	}
	return out
}

// storedLog returns the entries in a member's storage.
func storedLog(t testing.TB, c *rafttest.Cluster, id uint64) []pb.Entry {
	t.Helper()
	st := c.Member(id).Storage
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	ents, err := st.Entries(first, last+1, ^uint64(0))
	must(t, err)
	return ents
}

// countMsgs counts queued network messages matching f.
func countMsgs(c *rafttest.Cluster, f func(pb.Message) bool) int {
	n := 0
	c.Net.Filter(func(m pb.Message) bool {
		if f(m) {
			n++
		}
		return false
	})
	return n
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

package raft_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
	"github.com/synod-db/synod/raft/tracker"
)

// TestReplicationReachesEveryMember checks basic log replication: entries
// proposed on the leader are applied in the same order everywhere.
func TestReplicationReachesEveryMember(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(5), nil)
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 20, "e")
	want := dataOf(c, 1)
	if len(want) != 20 {
		t.Fatalf("leader applied %d entries, want 20", len(want))
	}
	for _, id := range c.IDs() {
		if got := dataOf(c, id); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("member %d applied %v, leader %v", id, got, want)
		}
	}
}

// TestProgressStates checks the leader's view of a follower: probing
// while it is unknown, replicating once it answered, and snapshot when it
// needs compacted entries; then back to replicating.
func TestProgressStates(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	progress := func(id uint64) tracker.Progress { return c.Member(1).Node.Status().Progress[id] }
	if pr := progress(2); pr.State != tracker.StateReplicate {
		t.Fatalf("follower 2 after election: %s, want replicate", pr.String())
	}
	c.Net.Isolate(3, c.IDs())
	proposeAndCommit(t, c, 1, 10, "a")
	// Unreachable reports moved 3 to probe.
	if pr := progress(3); pr.State != tracker.StateProbe {
		t.Fatalf("unreachable follower 3: %s, want probe", pr.String())
	}
	must(t, c.Compact(1, 0))
	c.Net.Heal()
	var sawSnapshot bool
	c.Hooks.SnapshotApplied = func(id uint64, meta pb.SnapshotMetadata, _ uint64) {
		if id == 3 {
			sawSnapshot = true
		}
	}
	c.TickAll() // heartbeat: 3 answers, the leader probes, finds a gap.
	must(t, c.Stabilize())
	if !sawSnapshot {
		t.Fatal("follower 3 behind the compacted log did not receive a snapshot")
	}
	if pr := progress(3); pr.State != tracker.StateReplicate || pr.Match != c.Member(1).AppliedIndex {
		t.Fatalf("after the snapshot: %s, want replicate at %d", pr.String(), c.Member(1).AppliedIndex)
	}
	proposeAndCommit(t, c, 1, 1, "after")
	if got := dataOf(c, 3); len(got) != 11 {
		t.Fatalf("member 3 applied %d entries, want 11: %v", len(got), got)
	}
}

// TestFastBacktracking checks that a follower whose log diverges over many
// entries of old terms is repaired in a few round trips, not one per entry.
func TestFastBacktracking(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	// Build the divergence: 1, isolated, appends 50 entries that never
	// commit, while 2 and 3 commit 50 others over two later terms.
	c.Net.Isolate(1, c.IDs())
	for i := 0; i < 50; i++ {
		must(t, c.Propose(1, []byte(fmt.Sprintf("lost%d", i))))
	}
	must(t, c.Stabilize())
	// 2 becomes leader with 3 and commits 50 other entries across terms.
	must(t, c.ElectLeader(2))
	proposeAndCommit(t, c, 2, 25, "kept")
	must(t, c.ElectLeader(3))
	proposeAndCommit(t, c, 3, 25, "kept2")
	rejections := 0
	c.Hooks.Ready = func(id uint64, rd raft.Ready) {
		for _, m := range append(rd.Messages, rd.MessagesAfterPersist...) {
			if m.Type == pb.MsgAppResp && m.Reject && m.From == 1 {
				rejections++
			}
		}
	}
	c.Net.Heal()
	c.TickAll()
	must(t, c.Stabilize())
	if got, want := dataOf(c, 1), dataOf(c, 3); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("member 1 not repaired:\n got %v\nwant %v", got, want)
	}
	if rejections == 0 || rejections > 3 {
		t.Fatalf("repairing 50 divergent entries took %d rejections, want at most 3 (fast backtracking)", rejections)
	}
}

// TestPipeliningWindowByCount checks that a leader streams appends to a
// follower without waiting for answers, up to MaxInflightMsgs.
func TestPipeliningWindowByCount(t *testing.T) {
	c := newCluster(t, rafttest.Options{Configure: func(cfg *raft.Config) {
		cfg.MaxInflightMsgs = 4
	}}, ids(3), nil)
	must(t, c.ElectLeader(1))
	// Hold back every answer to the leader.
	c.Net.Cut(2, 1)
	c.Net.Cut(3, 1)
	for i := 0; i < 10; i++ {
		must(t, c.Propose(1, []byte("x")))
		if _, err := c.Process(1); err != nil {
			t.Fatal(err)
		}
	}
	apps := countMsgs(c, func(m pb.Message) bool { return m.Type == pb.MsgApp && m.To == 2 && len(m.Entries) > 0 })
	if apps != 4 {
		t.Fatalf("leader sent %d appends to a silent follower, want exactly the window of 4", apps)
	}
}

// TestPipeliningWindowByBytes checks the byte bound of the window.
func TestPipeliningWindowByBytes(t *testing.T) {
	c := newCluster(t, rafttest.Options{Configure: func(cfg *raft.Config) {
		cfg.MaxSizePerMsg = 100
		cfg.MaxInflightMsgs = 100
		cfg.MaxInflightBytes = 300
	}}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Cut(2, 1)
	c.Net.Cut(3, 1)
	payload := bytes.Repeat([]byte("b"), 100)
	for i := 0; i < 10; i++ {
		must(t, c.Propose(1, payload))
		if _, err := c.Process(1); err != nil {
			t.Fatal(err)
		}
	}
	var sent int
	c.Net.Filter(func(m pb.Message) bool {
		if m.Type == pb.MsgApp && m.To == 2 {
			for _, e := range m.Entries {
				sent += len(e.Data)
			}
		}
		return false
	})
	if sent != 300 {
		t.Fatalf("leader has %d bytes in flight to a silent follower, want the 300-byte window", sent)
	}
}

// TestMaxSizePerMsg checks that catching up a follower splits entries into
// messages no larger than MaxSizePerMsg (but at least one entry each).
func TestMaxSizePerMsg(t *testing.T) {
	c := newCluster(t, rafttest.Options{Configure: func(cfg *raft.Config) {
		cfg.MaxSizePerMsg = 250
	}}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(3, c.IDs())
	for i := 0; i < 20; i++ {
		must(t, c.Propose(1, bytes.Repeat([]byte("m"), 100)))
	}
	must(t, c.Stabilize())
	c.Net.Heal()
	var maxBytes, msgs int
	c.Hooks.Ready = func(id uint64, rd raft.Ready) {
		for _, m := range rd.Messages {
			if m.Type == pb.MsgApp && m.To == 3 && len(m.Entries) > 0 {
				msgs++
				size := 0
				for _, e := range m.Entries {
					size += len(e.Data)
				}
				maxBytes = max(maxBytes, size)
			}
		}
	}
	c.TickAll()
	must(t, c.Stabilize())
	if maxBytes > 250 || msgs < 10 {
		t.Fatalf("catch-up used %d messages of at most %d bytes, want >= 10 messages of <= 250 bytes", msgs, maxBytes)
	}
	if got := len(dataOf(c, 3)); got != 20 {
		t.Fatalf("member 3 applied %d entries, want 20", got)
	}
}

// TestMaxUncommittedEntriesSize checks that a leader that cannot commit
// refuses proposals once its uncommitted log reaches the limit, with
// ErrProposalDropped, and accepts them again after committing.
func TestMaxUncommittedEntriesSize(t *testing.T) {
	c := newCluster(t, rafttest.Options{Configure: func(cfg *raft.Config) {
		cfg.MaxUncommittedEntriesSize = 1000
	}}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(1, c.IDs())
	payload := bytes.Repeat([]byte("u"), 100)
	accepted := 0
	var err error
	for i := 0; i < 20; i++ {
		if err = c.Propose(1, payload); err != nil {
			break
		}
		accepted++
	}
	if !errors.Is(err, raft.ErrProposalDropped) || accepted != 10 {
		t.Fatalf("accepted %d proposals of 100 bytes under a 1000-byte limit, then %v; want 10 then ErrProposalDropped", accepted, err)
	}
	c.Net.Heal()
	c.TickAll()
	must(t, c.Stabilize())
	if got := len(dataOf(c, 1)); got != 10 {
		t.Fatalf("applied %d, want 10", got)
	}
	must(t, c.Propose(1, payload))
}

// TestMaxCommittedSizePerReady checks that committed entries are handed
// out in bounded batches.
func TestMaxCommittedSizePerReady(t *testing.T) {
	c := newCluster(t, rafttest.Options{Configure: func(cfg *raft.Config) {
		cfg.MaxCommittedSizePerReady = 300
	}}, ids(3), nil)
	must(t, c.ElectLeader(1))
	maxBatch := 0
	c.Hooks.Ready = func(id uint64, rd raft.Ready) {
		size := 0
		for _, e := range rd.CommittedEntries {
			size += len(e.Data)
		}
		maxBatch = max(maxBatch, size)
	}
	for i := 0; i < 30; i++ {
		must(t, c.Propose(1, bytes.Repeat([]byte("c"), 100)))
	}
	must(t, c.Stabilize())
	if maxBatch > 300 {
		t.Fatalf("a Ready carried %d bytes of committed entries, limit 300", maxBatch)
	}
	if got := len(dataOf(c, 2)); got != 30 {
		t.Fatalf("applied %d, want 30", got)
	}
}

// TestProposalForwarding checks that a follower forwards proposals to the
// leader, and drops them when forwarding is disabled or no leader is known.
func TestProposalForwarding(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	if err := c.Propose(2, []byte("early")); !errors.Is(err, raft.ErrProposalDropped) {
		t.Fatalf("proposal with no leader: %v, want ErrProposalDropped", err)
	}
	must(t, c.ElectLeader(1))
	must(t, c.Propose(2, []byte("forwarded")))
	must(t, c.Stabilize())
	if got := dataOf(c, 1); len(got) != 1 || got[0] != "forwarded" {
		t.Fatalf("leader applied %v, want the forwarded proposal", got)
	}

	d := newCluster(t, rafttest.Options{Configure: func(cfg *raft.Config) {
		cfg.DisableProposalForwarding = true
	}}, ids(3), nil)
	must(t, d.ElectLeader(1))
	if err := d.Propose(2, []byte("x")); !errors.Is(err, raft.ErrProposalDropped) {
		t.Fatalf("proposal on follower with forwarding disabled: %v, want ErrProposalDropped", err)
	}
	must(t, d.Propose(1, []byte("on-leader")))
}

// TestCandidateDropsProposals checks that a candidate refuses proposals.
func TestCandidateDropsProposals(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	c.Net.Isolate(1, c.IDs())
	must(t, c.Campaign(1))
	if err := c.Propose(1, []byte("x")); !errors.Is(err, raft.ErrProposalDropped) {
		t.Fatalf("candidate accepted a proposal: %v", err)
	}
}

// TestLostAppendsRecovered checks that the leader recovers when appends
// are lost in replicate state: the follower's rejection of a later append
// reveals the gap.
func TestLostAppendsRecovered(t *testing.T) {
	c := newCluster(t, rafttest.Options{Seed: 11}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Faults = rafttest.Faults{Drop: 0.3, Reorder: true, MaxDelay: 2, Duplicate: 0.1}
	for i := 0; i < 40; i++ {
		_ = c.Propose(1, []byte(fmt.Sprintf("l%d", i)))
		c.TickAll()
		must(t, c.Stabilize())
	}
	c.Net.Heal()
	tickUntil(t, c, 100, "all members converge", func() bool {
		lead := c.Leader()
		if lead == 0 {
			return false
		}
		want := c.Member(lead).AppliedIndex
		for _, id := range c.IDs() {
			if c.Member(id).AppliedIndex != want {
				return false
			}
		}
		return true
	})
}

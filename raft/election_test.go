package raft_test

import (
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
)

// TestElectionByTimeout checks that followers elect a leader on their own
// once an election timeout passes, and that it happens within the
// randomized window [ElectionTick, 2*ElectionTick) plus one round.
func TestElectionByTimeout(t *testing.T) {
	for _, preVote := range []bool{false, true} {
		c := newCluster(t, rafttest.Options{Seed: 7, PreVote: preVote}, ids(3), nil)
		ticks := tickUntil(t, c, 40, "leader elected", func() bool { return c.Leader() != 0 })
		if ticks < 10 || ticks > 21 {
			t.Fatalf("preVote=%v: leader after %d ticks, want within [10, 21]", preVote, ticks)
		}
		lead := c.Leader()
		for _, id := range c.IDs() {
			if st := status(c, id); st.Lead != lead || st.Term != status(c, lead).Term {
				t.Fatalf("member %d: lead=%d term=%d, want lead=%d term=%d", id, st.Lead, st.Term, lead, status(c, lead).Term)
			}
		}
	}
}

// TestRandomizedElectionTimeoutsDiffer checks that members draw different
// election timeouts, which is what makes split votes rare: across many
// seeds, the first member to campaign varies.
func TestRandomizedElectionTimeoutsDiffer(t *testing.T) {
	firsts := map[uint64]bool{}
	for seed := uint64(1); seed <= 30; seed++ {
		c := newCluster(t, rafttest.Options{Seed: seed}, ids(3), nil)
		tickUntil(t, c, 40, "leader", func() bool { return c.Leader() != 0 })
		firsts[c.Leader()] = true
	}
	if len(firsts) < 2 {
		t.Fatalf("the same member won every election across 30 seeds: %v", firsts)
	}
}

// TestVoteIsPersistedAndHonouredAfterRestart checks that a granted vote is
// in the HardState of the Ready that sends the grant, and that a member
// restarted from storage does not vote for a second candidate in the same
// term.
func TestVoteIsPersistedAndHonouredAfterRestart(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	var grantReady raft.Ready
	c.Hooks.Ready = func(id uint64, rd raft.Ready) {
		for _, m := range append(rd.Messages, rd.MessagesAfterPersist...) {
			if id == 2 && m.Type == pb.MsgVoteResp && !m.Reject {
				grantReady = rd
			}
		}
	}
	// Only 1 and 2 talk, so 3 will not vote for 1.
	c.Net.Isolate(3, c.IDs())
	must(t, c.ElectLeader(1))
	term := status(c, 1).Term
	if grantReady.HardState.Vote != 1 || grantReady.HardState.Term != term {
		t.Fatalf("vote grant sent in a Ready with HardState %+v, want vote 1 at term %d", grantReady.HardState, term)
	}
	for _, m := range grantReady.Messages {
		if m.Type == pb.MsgVoteResp {
			t.Fatalf("vote grant may be sent before the vote is durable: %+v", m)
		}
	}
	hs, _, _ := c.Member(2).Storage.InitialState()
	if hs.Vote != 1 || hs.Term != term {
		t.Fatalf("stored hard state %+v, want vote 1 at term %d", hs, term)
	}
	// Restart 2; 3 asks for its vote in the same term with a better log.
	c.Crash(2)
	must(t, c.Restart(2))
	must(t, c.Member(2).Node.Step(pb.Message{Type: pb.MsgVote, From: 3, To: 2, Term: term, Index: 100, LogTerm: term}))
	rd := c.Member(2).Node.Ready()
	for _, m := range append(rd.Messages, rd.MessagesAfterPersist...) {
		if m.Type == pb.MsgVoteResp && !m.Reject {
			t.Fatalf("restarted member voted twice in term %d: %+v", term, m)
		}
	}
}

// TestCandidateWithStaleLogLoses checks the election restriction: a member
// whose log is behind cannot win.
func TestCandidateWithStaleLogLoses(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(3, c.IDs())
	proposeAndCommit(t, c, 1, 3, "x")
	c.Net.Heal()
	must(t, c.Campaign(3))
	must(t, c.Stabilize())
	if st := status(c, 3); st.RaftState == raft.StateLeader {
		t.Fatalf("member 3 with a stale log became leader at term %d", st.Term)
	}
	must(t, c.ElectLeader(2))
	if got := len(dataOf(c, 3)); got != 3 {
		t.Fatalf("member 3 has %d entries after the new leader caught it up, want 3", got)
	}
}

// TestSplitVoteResolves checks that two simultaneous candidates do not
// both win and that a later timeout elects one leader.
func TestSplitVoteResolves(t *testing.T) {
	c := newCluster(t, rafttest.Options{Seed: 3}, ids(4), nil)
	// 1 and 2 campaign at once; 3 votes for 1 and 4 for 2: nobody has 3 of 4.
	c.Net.Partition([]uint64{1, 3}, []uint64{2, 4})
	must(t, c.Campaign(1))
	must(t, c.Campaign(2))
	must(t, c.Stabilize())
	if lead := c.Leader(); lead != 0 {
		t.Fatalf("leader %d elected with a split vote", lead)
	}
	c.Net.Heal()
	tickUntil(t, c, 60, "leader after split vote", func() bool { return c.Leader() != 0 })
}

// TestSingleVoterElectsItself checks that a one-member cluster elects
// itself on campaign and commits on its own (after Advance).
func TestSingleVoterElectsItself(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(1), nil)
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 2, "solo")
	if got := dataOf(c, 1); len(got) != 2 {
		t.Fatalf("applied %v, want 2 entries", got)
	}
}

// TestHigherTermMessageDeposesLeader checks that a leader that sees a
// higher term (without check-quorum leases) steps down.
func TestHigherTermMessageDeposesLeader(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	must(t, c.Member(1).Node.Step(pb.Message{Type: pb.MsgAppResp, From: 2, To: 1, Term: 9}))
	if st := status(c, 1); st.RaftState != raft.StateFollower || st.Term != 9 {
		t.Fatalf("after a term-9 message: state %s term %d, want follower at 9", st.RaftState, st.Term)
	}
}

package raft_test

import (
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
)

// TestPreVotePartitionedMemberDoesNotDisrupt checks pre-vote (thesis §9.6):
// a member cut off from the cluster keeps failing its pre-election without
// raising its term, so when it rejoins the healthy leader stays in place.
// Without pre-vote the same member returns with a higher term and forces
// an election.
func TestPreVotePartitionedMemberDoesNotDisrupt(t *testing.T) {
	for _, preVote := range []bool{true, false} {
		c := newCluster(t, rafttest.Options{PreVote: preVote}, ids(3), nil)
		must(t, c.ElectLeader(1))
		term := status(c, 1).Term
		c.Net.Isolate(3, c.IDs())
		for i := 0; i < 100; i++ {
			c.TickAll()
			must(t, c.Stabilize())
		}
		st3 := status(c, 3)
		if preVote && st3.Term != term {
			t.Fatalf("pre-vote: isolated member raised its term to %d (cluster at %d)", st3.Term, term)
		}
		if !preVote && st3.Term <= term {
			t.Fatalf("without pre-vote the isolated member should have raised its term, at %d", st3.Term)
		}
		c.Net.Heal()
		for i := 0; i < 5; i++ {
			c.TickAll()
			must(t, c.Stabilize())
		}
		lead := c.Leader()
		if preVote && (lead != 1 || status(c, 1).Term != term) {
			t.Fatalf("pre-vote: rejoining member disrupted the leader: leader %d at term %d, was 1 at %d", lead, status(c, lead).Term, term)
		}
		if !preVote && status(c, lead).Term == term {
			t.Fatalf("without pre-vote the rejoining member should have forced a new term")
		}
	}
}

// TestPreVoteDoesNotChangeTermOrVote checks that a pre-candidate keeps its
// term and vote, and voters grant pre-votes without recording a vote.
func TestPreVoteDoesNotChangeTermOrVote(t *testing.T) {
	c := newCluster(t, rafttest.Options{PreVote: true}, ids(3), nil)
	c.Net.Isolate(1, c.IDs())
	must(t, c.Campaign(1))
	must(t, c.Stabilize())
	term := status(c, 2).Term
	st := status(c, 1)
	if st.RaftState != raft.StatePreCandidate || st.Term != term || st.Vote != 0 {
		t.Fatalf("isolated pre-candidate: state %s term %d vote %d, want pre-candidate at term %d without vote", st.RaftState, st.Term, st.Vote, term)
	}
	c.Net.Heal()
	must(t, c.Campaign(1))
	must(t, c.Stabilize())
	if st := status(c, 1); st.RaftState != raft.StateLeader || st.Term != term+1 {
		t.Fatalf("after pre-vote and vote: state %s term %d, want leader at %d", st.RaftState, st.Term, term+1)
	}
}

// TestCheckQuorumLeaderStepsDown checks that a leader cut off from its
// quorum steps down within an election timeout and a new leader is elected
// on the majority side.
func TestCheckQuorumLeaderStepsDown(t *testing.T) {
	c := newCluster(t, rafttest.Options{CheckQuorum: true, PreVote: true}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(1, c.IDs())
	ticks := tickUntil(t, c, 40, "isolated leader steps down", func() bool {
		return status(c, 1).RaftState != raft.StateLeader
	})
	if ticks > 2*10 {
		t.Fatalf("isolated leader stepped down after %d ticks, want within two election timeouts", ticks)
	}
	tickUntil(t, c, 60, "new leader on the majority side", func() bool {
		lead := c.Leader()
		return lead == 2 || lead == 3
	})
}

// TestWithoutCheckQuorumIsolatedLeaderStays is the contrast: without
// check-quorum an isolated leader keeps believing it leads.
func TestWithoutCheckQuorumIsolatedLeaderStays(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(1, c.IDs())
	for i := 0; i < 50; i++ {
		c.TickAll()
		must(t, c.Stabilize())
	}
	if st := status(c, 1); st.RaftState != raft.StateLeader {
		t.Fatalf("without check-quorum the isolated leader stepped down (state %s)", st.RaftState)
	}
}

// TestCheckQuorumLeaseIgnoresVotes checks that with check-quorum a follower
// that recently heard from its leader ignores vote requests of a higher
// term, but honours them for a leadership transfer.
func TestCheckQuorumLeaseIgnoresVotes(t *testing.T) {
	c := newCluster(t, rafttest.Options{CheckQuorum: true}, ids(3), nil)
	must(t, c.ElectLeader(1))
	term := status(c, 2).Term
	must(t, c.Member(2).Node.Step(pb.Message{Type: pb.MsgVote, From: 3, To: 2, Term: term + 5, Index: 100, LogTerm: term}))
	if st := status(c, 2); st.Term != term || st.Lead != 1 {
		t.Fatalf("follower in lease took a vote request: term %d lead %d", st.Term, st.Lead)
	}
	must(t, c.Member(2).Node.Step(pb.Message{Type: pb.MsgVote, From: 3, To: 2, Term: term + 5, Index: 100, LogTerm: term, Context: []byte("CampaignTransfer")}))
	if st := status(c, 2); st.Term != term+5 || st.Vote != 3 {
		t.Fatalf("transfer vote not honoured: term %d vote %d", st.Term, st.Vote)
	}
}

// TestStaleLeaderLearnsHigherTerm checks that with check-quorum, a member
// at a higher term answers a stale leader's appends so that the stale
// leader steps down instead of both being stuck.
func TestStaleLeaderLearnsHigherTerm(t *testing.T) {
	c := newCluster(t, rafttest.Options{CheckQuorum: true, PreVote: true}, ids(3), nil)
	must(t, c.ElectLeader(1))
	// Only 1 ticks: 2 and 3 see no time pass, so 1 keeps its lease view.
	c.Net.Isolate(1, c.IDs())
	for i := 0; i < 100; i++ {
		c.Tick(2)
		c.Tick(3)
		must(t, c.Stabilize())
	}
	lead := c.Leader()
	if lead != 2 && lead != 3 {
		t.Fatalf("no new leader on the majority side (leader %d)", lead)
	}
	if st := status(c, 1); st.RaftState != raft.StateLeader {
		t.Fatalf("member 1 should still believe it leads, is %s", st.RaftState)
	}
	// 1's heartbeat reaches a member at the higher term, whose answer
	// tells 1 of the new term.
	c.Net.Heal()
	c.Tick(1)
	must(t, c.Stabilize())
	if st := status(c, 1); st.RaftState == raft.StateLeader || st.Term != status(c, lead).Term {
		t.Fatalf("stale leader 1: state %s term %d, want follower at term %d", st.RaftState, st.Term, status(c, lead).Term)
	}
}

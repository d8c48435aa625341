package raft_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
)

// confOf returns the leader-applied configuration of a member.
func confOf(c *rafttest.Cluster, id uint64) pb.ConfState { return c.Member(id).ConfState }

// TestAddVoter checks a single add: the new member catches up from scratch
// (snapshot plus log) and then counts for the quorum.
func TestAddVoter(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 5, "a")
	must(t, c.AddMember(4))
	must(t, c.ProposeConfChange(1, pb.ConfChange{Type: pb.ConfChangeAddNode, NodeID: 4}))
	must(t, c.Stabilize())
	c.TickAll()
	must(t, c.Stabilize())
	if cs := confOf(c, 1); !slices.Equal(cs.Voters, []uint64{1, 2, 3, 4}) {
		t.Fatalf("voters %v, want [1 2 3 4]", cs.Voters)
	}
	if got := dataOf(c, 4); len(got) != 5 {
		t.Fatalf("new member applied %v, want the 5 earlier entries", got)
	}
	// With 2 and 3 down, 1 and 4 are not a quorum of 4: nothing commits.
	c.Crash(2)
	c.Crash(3)
	must(t, c.Propose(1, []byte("needs-quorum")))
	must(t, c.Stabilize())
	if got := dataOf(c, 1); len(got) != 5 {
		t.Fatalf("committed with 2 of 4 voters: %v", got)
	}
	must(t, c.Restart(2))
	c.TickAll()
	must(t, c.Stabilize())
	if got := dataOf(c, 4); len(got) != 6 {
		t.Fatalf("after 3 of 4 voters are up: %v, want 6 entries", got)
	}
}

// TestRemoveVoterShrinksQuorum checks a single removal: afterwards the
// remaining voters commit without the removed one.
func TestRemoveVoterShrinksQuorum(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(4), nil)
	must(t, c.ElectLeader(1))
	must(t, c.ProposeConfChange(1, pb.ConfChange{Type: pb.ConfChangeRemoveNode, NodeID: 4}))
	must(t, c.Stabilize())
	if cs := confOf(c, 1); !slices.Equal(cs.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("voters %v, want [1 2 3]", cs.Voters)
	}
	c.Crash(4)
	c.Crash(3)
	proposeAndCommit(t, c, 1, 1, "two-of-three")
	if got := dataOf(c, 2); len(got) != 1 {
		t.Fatalf("2 of 3 remaining voters did not commit: %v", got)
	}
}

// TestOneConfChangeAtATime checks that a second conf change proposed before
// the first is applied is turned into a no-op.
func TestOneConfChangeAtATime(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	must(t, c.AddMember(4))
	must(t, c.AddMember(5))
	must(t, c.ProposeConfChange(1, pb.ConfChange{Type: pb.ConfChangeAddNode, NodeID: 4}))
	must(t, c.ProposeConfChange(1, pb.ConfChange{Type: pb.ConfChangeAddNode, NodeID: 5}))
	must(t, c.Stabilize())
	if cs := confOf(c, 1); !slices.Equal(cs.Voters, []uint64{1, 2, 3, 4}) {
		t.Fatalf("voters %v, want only the first change applied: [1 2 3 4]", cs.Voters)
	}
}

// TestJointConsensus checks a change of two voters at once: it enters a
// joint configuration where both majorities are needed, and leaves it
// automatically.
func TestJointConsensus(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	must(t, c.AddMember(4))
	must(t, c.AddMember(5))
	var seen []pb.ConfState
	c.Hooks.Applied = func(id uint64, e pb.Entry, _ uint64) {
		if id == 1 && e.Type == pb.EntryConfChangeV2 {
			seen = append(seen, c.Member(1).ConfState)
		}
	}
	cc := pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{
		{Type: pb.ConfChangeAddNode, NodeID: 4},
		{Type: pb.ConfChangeAddNode, NodeID: 5},
		{Type: pb.ConfChangeRemoveNode, NodeID: 3},
	}}
	must(t, c.ProposeConfChange(1, cc))
	must(t, c.Stabilize())
	if len(seen) != 2 {
		t.Fatalf("applied %d conf changes, want enter and auto-leave: %+v", len(seen), seen)
	}
	if j := seen[0]; !slices.Equal(j.Voters, []uint64{1, 2, 4, 5}) || !slices.Equal(j.VotersOutgoing, []uint64{1, 2, 3}) || !j.AutoLeave {
		t.Fatalf("joint configuration %+v, want voters [1 2 4 5] outgoing [1 2 3] autoleave", j)
	}
	if f := seen[1]; !slices.Equal(f.Voters, []uint64{1, 2, 4, 5}) || len(f.VotersOutgoing) != 0 {
		t.Fatalf("final configuration %+v, want voters [1 2 4 5] and no outgoing", f)
	}
}

// TestJointNeedsBothMajorities checks that while joint, an entry needs a
// majority of the outgoing voters as well as of the incoming ones.
func TestJointNeedsBothMajorities(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	for _, id := range []uint64{4, 5, 6} {
		must(t, c.AddMember(id))
	}
	cc := pb.ConfChangeV2{Transition: pb.ConfChangeTransitionJointExplicit, Changes: []pb.ConfChangeSingle{
		{Type: pb.ConfChangeAddNode, NodeID: 4}, {Type: pb.ConfChangeAddNode, NodeID: 5}, {Type: pb.ConfChangeAddNode, NodeID: 6},
		{Type: pb.ConfChangeRemoveNode, NodeID: 2}, {Type: pb.ConfChangeRemoveNode, NodeID: 3},
	}}
	must(t, c.ProposeConfChange(1, cc))
	must(t, c.Stabilize())
	cs := confOf(c, 1)
	if !slices.Equal(cs.VotersOutgoing, []uint64{1, 2, 3}) || cs.AutoLeave {
		t.Fatalf("want an explicit joint config with outgoing [1 2 3], got %+v", cs)
	}
	// Incoming {1,4,5,6} has a majority with 1,4,5; outgoing {1,2,3} has only 1.
	c.Crash(2)
	c.Crash(3)
	must(t, c.Propose(1, []byte("blocked")))
	must(t, c.Stabilize())
	if slices.Contains(dataOf(c, 1), "blocked") {
		t.Fatal("entry committed without a majority of the outgoing voters")
	}
	must(t, c.Restart(2))
	c.TickAll()
	must(t, c.Stabilize())
	if !slices.Contains(dataOf(c, 1), "blocked") {
		t.Fatal("entry not committed with majorities of both halves")
	}
	// Leave explicitly; then the outgoing voters no longer matter.
	must(t, c.ProposeConfChange(1, pb.ConfChangeV2{}))
	must(t, c.Stabilize())
	if cs := confOf(c, 1); len(cs.VotersOutgoing) != 0 || !slices.Equal(cs.Voters, []uint64{1, 4, 5, 6}) {
		t.Fatalf("after leaving: %+v, want voters [1 4 5 6]", cs)
	}
	c.Crash(2)
	proposeAndCommit(t, c, 1, 1, "new-config")
	if !slices.Contains(dataOf(c, 4), "new-config0") {
		t.Fatal("new configuration did not commit")
	}
}

// TestLeaveJointRefusedWhenNotJoint checks that leaving a joint
// configuration that does not exist is refused (the entry becomes a no-op).
func TestLeaveJointRefusedWhenNotJoint(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	before := confOf(c, 1)
	must(t, c.ProposeConfChange(1, pb.ConfChangeV2{}))
	must(t, c.Stabilize())
	must(t, confOf(c, 1).Equivalent(before))
}

// TestLeaderRemovedStepsDown checks that a leader that removes itself
// steps down once the removal is applied, and the others elect a leader.
func TestLeaderRemovedStepsDown(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	must(t, c.ProposeConfChange(1, pb.ConfChange{Type: pb.ConfChangeRemoveNode, NodeID: 1}))
	must(t, c.Stabilize())
	if st := status(c, 1); st.RaftState == raft.StateLeader {
		t.Fatal("removed leader still leads")
	}
	if err := c.Propose(1, []byte("x")); !errors.Is(err, raft.ErrProposalDropped) {
		t.Fatalf("removed member accepted a proposal: %v", err)
	}
	tickUntil(t, c, 60, "new leader among the remaining voters", func() bool {
		lead := c.Leader()
		return lead == 2 || lead == 3
	})
	// The removed member never campaigns.
	for i := 0; i < 50; i++ {
		c.Tick(1)
	}
	must(t, c.Stabilize())
	if st := status(c, 1); st.RaftState != raft.StateFollower {
		t.Fatalf("removed member is %s, want follower", st.RaftState)
	}
}

// TestLearners checks learners: they receive and apply the log, never vote
// nor campaign, do not count for commitment, and can be promoted.
func TestLearners(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), []uint64{4})
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 3, "l")
	if got := dataOf(c, 4); len(got) != 3 {
		t.Fatalf("learner applied %v, want 3 entries", got)
	}
	// A learner never campaigns, however long it waits.
	c.Net.Isolate(4, c.IDs())
	for i := 0; i < 100; i++ {
		c.Tick(4)
		must(t, c.Stabilize())
	}
	if st := status(c, 4); st.RaftState != raft.StateFollower {
		t.Fatalf("learner became %s", st.RaftState)
	}
	must(t, c.Campaign(4))
	if st := status(c, 4); st.RaftState != raft.StateFollower {
		t.Fatalf("learner campaigned on request: %s", st.RaftState)
	}
	c.Net.Heal()
	// A learner does not count: with 2 and 3 down, 1 and learner 4 cannot commit.
	c.Crash(2)
	c.Crash(3)
	must(t, c.Propose(1, []byte("needs-voters")))
	must(t, c.Stabilize())
	if len(dataOf(c, 1)) != 3 {
		t.Fatal("committed with one voter and one learner out of 3 voters")
	}
	must(t, c.Restart(2))
	must(t, c.Restart(3))
	c.TickAll()
	must(t, c.Stabilize())
	// Promote 4, then it counts.
	must(t, c.ProposeConfChange(c.Leader(), pb.ConfChange{Type: pb.ConfChangeAddNode, NodeID: 4}))
	must(t, c.Stabilize())
	if cs := confOf(c, 1); !slices.Equal(cs.Voters, []uint64{1, 2, 3, 4}) || len(cs.Learners) != 0 {
		t.Fatalf("after promotion %+v, want voters [1 2 3 4]", cs)
	}
}

// TestLearnerVoteDoesNotCount checks that a candidate does not count a
// learner's granted vote.
func TestLearnerVoteDoesNotCount(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), []uint64{4, 5})
	// Only learners can answer 1.
	c.Net.Cut(2, 1)
	c.Net.Cut(3, 1)
	must(t, c.Campaign(1))
	must(t, c.Stabilize())
	if st := status(c, 1); st.RaftState == raft.StateLeader {
		t.Fatal("a candidate won with learners' votes")
	}
}

// TestDemoteVoterToLearner checks a demotion through a joint configuration:
// the voter is a LearnersNext until the joint configuration is left.
func TestDemoteVoterToLearner(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(4), nil)
	must(t, c.ElectLeader(1))
	var seen []pb.ConfState
	c.Hooks.Applied = func(id uint64, e pb.Entry, _ uint64) {
		if id == 1 && e.Type != pb.EntryNormal {
			seen = append(seen, c.Member(1).ConfState)
		}
	}
	must(t, c.ProposeConfChange(1, pb.ConfChangeV2{Transition: pb.ConfChangeTransitionJointImplicit,
		Changes: []pb.ConfChangeSingle{{Type: pb.ConfChangeAddLearnerNode, NodeID: 4}}}))
	must(t, c.Stabilize())
	if len(seen) != 2 {
		t.Fatalf("want enter and leave, saw %+v", seen)
	}
	if !slices.Equal(seen[0].LearnersNext, []uint64{4}) {
		t.Fatalf("joint config %+v, want 4 in LearnersNext", seen[0])
	}
	if f := seen[1]; !slices.Equal(f.Learners, []uint64{4}) || !slices.Equal(f.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("final config %+v, want voters [1 2 3] learners [4]", f)
	}
	// Demoting with a simple change works too (it touches one voter).
	must(t, c.ProposeConfChange(1, pb.ConfChange{Type: pb.ConfChangeAddLearnerNode, NodeID: 3}))
	must(t, c.Stabilize())
	if f := confOf(c, 1); !slices.Equal(f.Learners, []uint64{3, 4}) {
		t.Fatalf("config %+v, want learners [3 4]", f)
	}
}

// TestConfChangeBlocksElectionUntilApplied checks that a member does not
// campaign while a committed conf change is not yet applied.
func TestConfChangeBlocksElectionUntilApplied(t *testing.T) {
	st := raft.NewMemoryStorage()
	must(t, st.ApplySnapshot(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: []uint64{1}}}}))
	cc := pb.ToEntry(pb.ConfChange{Type: pb.ConfChangeAddNode, NodeID: 2})
	cc.Index, cc.Term = 2, 1
	must(t, st.Append([]pb.Entry{cc}))
	must(t, st.SetHardState(pb.HardState{Term: 1, Commit: 2}))
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Applied: 1, Logger: quietLogger()})
	must(t, err)
	must(t, rn.Campaign())
	if s := rn.BasicStatus(); s.RaftState != raft.StateFollower {
		t.Fatalf("campaigned with an unapplied conf change: %s", s.RaftState)
	}
	rd := rn.Ready()
	if len(rd.CommittedEntries) != 1 {
		t.Fatalf("want the conf change handed out, got %d entries", len(rd.CommittedEntries))
	}
	rn.Advance(rd)
	must(t, rn.Campaign())
	if s := rn.BasicStatus(); s.RaftState != raft.StateLeader {
		t.Fatalf("after applying, single voter did not win: %s", s.RaftState)
	}
}

// TestInvalidConfChangeRefused checks that a change that would leave no
// voter is refused by ApplyConfChange and leaves the configuration as is.
func TestInvalidConfChangeRefused(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(1), nil)
	must(t, c.ElectLeader(1))
	_, err := c.Member(1).Node.ApplyConfChange(pb.ConfChange{Type: pb.ConfChangeRemoveNode, NodeID: 1})
	if err == nil {
		t.Fatal("removing the last voter was accepted")
	}
	if got := fmt.Sprint(c.Member(1).Node.Status().Config.Voters); got != "(1)" {
		t.Fatalf("config changed by a refused change: %s", got)
	}
}

// TestLearnerAtHigherTermCatchesUp checks liveness when a learner has a
// higher term than the leader (it was a voter that campaigned while cut
// off, then was demoted). It cannot campaign, so it must tell the leader
// its term when the leader's appends arrive; a new election then reaches
// its term and it catches up. Found by the simulation (seed 17272).
func TestLearnerAtHigherTermCatchesUp(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), []uint64{4})
	must(t, c.ElectLeader(1))
	// Raise the learner's term; its answer is lost, so nobody else learns it.
	c.Net.Cut(4, 2)
	must(t, c.Member(4).Node.Step(pb.Message{Type: pb.MsgVote, From: 2, To: 4, Term: 50, Index: 1, LogTerm: 1}))
	must(t, c.Stabilize())
	c.Net.Mend(4, 2)
	if st := status(c, 4); st.Term != 50 {
		t.Fatalf("setup: learner at term %d, want 50", st.Term)
	}
	must(t, c.Propose(1, []byte("for-the-learner")))
	tickUntil(t, c, 200, "learner applies the entry", func() bool {
		return slices.Contains(dataOf(c, 4), "for-the-learner")
	})
}

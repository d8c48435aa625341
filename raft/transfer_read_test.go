package raft_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
)

// TestLeaderTransferToCaughtUpFollower checks a transfer: TimeoutNow is
// sent and the target leads the next term.
func TestLeaderTransferToCaughtUpFollower(t *testing.T) {
	for _, opts := range []rafttest.Options{{}, {PreVote: true, CheckQuorum: true}} {
		c := newCluster(t, opts, ids(3), nil)
		must(t, c.ElectLeader(1))
		proposeAndCommit(t, c, 1, 3, "t")
		term := status(c, 1).Term
		sawTimeoutNow := false
		c.Hooks.Ready = func(id uint64, rd raft.Ready) {
			for _, m := range rd.Messages {
				if m.Type == pb.MsgTimeoutNow && m.To == 2 {
					sawTimeoutNow = true
				}
			}
		}
		c.TransferLeader(1, 2)
		must(t, c.Stabilize())
		if lead := c.Leader(); lead != 2 || !sawTimeoutNow || status(c, 2).Term != term+1 {
			t.Fatalf("%+v: leader %d at term %d (TimeoutNow seen: %v), want 2 at term %d", opts, lead, status(c, lead).Term, sawTimeoutNow, term+1)
		}
	}
}

// TestLeaderTransferCatchesUpLaggingTarget checks that a target behind the
// leader first receives the missing entries, then TimeoutNow.
func TestLeaderTransferCatchesUpLaggingTarget(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(3, c.IDs())
	proposeAndCommit(t, c, 1, 5, "lag")
	c.Net.Heal()
	c.TransferLeader(1, 3)
	if err := c.Propose(1, []byte("during")); !errors.Is(err, raft.ErrProposalDropped) {
		t.Fatalf("proposal during transfer: %v, want ErrProposalDropped", err)
	}
	// The next heartbeat reveals that 3 is reachable again.
	c.Tick(1)
	must(t, c.Stabilize())
	if lead := c.Leader(); lead != 3 {
		t.Fatalf("leader %d, want 3", lead)
	}
	if got := len(dataOf(c, 3)); got != 5 {
		t.Fatalf("new leader applied %d entries, want 5", got)
	}
}

// TestLeaderTransferAbortsAfterElectionTimeout checks that a transfer to an
// unreachable target is abandoned after an election timeout and proposals
// are accepted again.
func TestLeaderTransferAbortsAfterElectionTimeout(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(3, c.IDs())
	proposeAndCommit(t, c, 1, 1, "x")
	c.TransferLeader(1, 3)
	if st := c.Member(1).Node.BasicStatus(); st.LeadTransferee != 3 {
		t.Fatalf("transferee %d, want 3", st.LeadTransferee)
	}
	for i := 0; i < 10; i++ {
		c.Tick(1)
		must(t, c.Stabilize())
	}
	if st := c.Member(1).Node.BasicStatus(); st.LeadTransferee != 0 || st.RaftState != raft.StateLeader {
		t.Fatalf("after an election timeout: transferee %d state %s, want transfer aborted and still leader", st.LeadTransferee, st.RaftState)
	}
	must(t, c.Propose(1, []byte("accepted-again")))
}

// TestLeaderTransferAbortsWhenTargetRemoved checks that removing the
// transfer target aborts the transfer.
func TestLeaderTransferAbortsWhenTargetRemoved(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	must(t, c.ProposeConfChange(1, pb.ConfChange{Type: pb.ConfChangeRemoveNode, NodeID: 3}))
	// Start the transfer while the removal is in flight, with 3 unreachable.
	c.Net.Isolate(3, c.IDs())
	c.TransferLeader(1, 3)
	must(t, c.Stabilize())
	if st := c.Member(1).Node.BasicStatus(); st.LeadTransferee != 0 || st.RaftState != raft.StateLeader {
		t.Fatalf("after removing the target: transferee %d state %s", st.LeadTransferee, st.RaftState)
	}
}

// TestLeaderTransferIgnoresLearnerAndSelf checks that transfers to a learner
// or to the leader itself do nothing.
func TestLeaderTransferIgnoresLearnerAndSelf(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), []uint64{4})
	must(t, c.ElectLeader(1))
	c.TransferLeader(1, 4)
	c.TransferLeader(1, 1)
	must(t, c.Stabilize())
	if st := c.Member(1).Node.BasicStatus(); st.LeadTransferee != 0 || c.Leader() != 1 {
		t.Fatalf("transfer to learner/self changed something: transferee %d leader %d", st.LeadTransferee, c.Leader())
	}
}

// TestLeaderTransferRequestedOnFollower checks that a follower forwards a
// transfer request to its leader.
func TestLeaderTransferRequestedOnFollower(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.TransferLeader(2, 2) // 2 asks (through itself) to become leader
	must(t, c.Stabilize())
	if lead := c.Leader(); lead != 2 {
		t.Fatalf("leader %d, want 2", lead)
	}
}

// readIndexes returns the answers a member got, by context.
func readIndexes(c *rafttest.Cluster, id uint64) map[string]uint64 {
	out := map[string]uint64{}
	for _, rs := range c.Member(id).ReadStates {
		out[string(rs.RequestCtx)] = rs.Index
	}
	return out
}

// TestReadIndexOnLeader checks ReadIndex: the answer is the commit index,
// given only after a heartbeat round, and nothing is written to the log.
func TestReadIndexOnLeader(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 2, "r")
	last := c.Member(1).Node.Status().Commit
	before := len(storedLog(t, c, 1))
	c.ReadIndex(1, []byte("ctx1"))
	if _, err := c.Process(1); err != nil {
		t.Fatal(err)
	}
	if len(c.Member(1).ReadStates) != 0 {
		t.Fatal("read answered before the heartbeat round")
	}
	hb := countMsgs(c, func(m pb.Message) bool { return m.Type == pb.MsgHeartbeat && string(m.Context) == "ctx1" })
	if hb != 2 {
		t.Fatalf("read sent %d heartbeats with its context, want 2", hb)
	}
	must(t, c.Stabilize())
	if got := readIndexes(c, 1); got["ctx1"] != last {
		t.Fatalf("read answered %v, want ctx1 at %d", got, last)
	}
	if after := len(storedLog(t, c, 1)); after != before {
		t.Fatalf("a read wrote to the log: %d entries before, %d after", before, after)
	}
}

// TestReadIndexBatching checks that concurrent reads share one heartbeat
// round: only the newest read's context travels, and answering it answers
// all.
func TestReadIndexBatching(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	for i := 0; i < 10; i++ {
		c.ReadIndex(1, []byte(fmt.Sprintf("b%d", i)))
	}
	must(t, c.Stabilize())
	if got := readIndexes(c, 1); len(got) != 10 {
		t.Fatalf("answered %d of 10 reads: %v", len(got), got)
	}
}

// TestReadIndexForwardedFromFollower checks that a follower's read goes to
// the leader and comes back as a ReadState on the follower.
func TestReadIndexForwardedFromFollower(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 3, "f")
	c.ReadIndex(2, []byte("from-2"))
	must(t, c.Stabilize())
	if got := readIndexes(c, 2); got["from-2"] != c.Member(1).Node.Status().Commit {
		t.Fatalf("follower read answered %v, want leader's commit %d", got, c.Member(1).Node.Status().Commit)
	}
	if len(c.Member(1).ReadStates) != 0 {
		t.Fatal("the follower's read was answered on the leader")
	}
}

// TestReadIndexStaleLeaderNotAnswered checks that a leader cut off from
// the others cannot confirm a read.
func TestReadIndexStaleLeaderNotAnswered(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(1, c.IDs())
	c.ReadIndex(1, []byte("stale"))
	c.TickAll()
	must(t, c.Stabilize())
	if len(c.Member(1).ReadStates) != 0 {
		t.Fatal("isolated leader answered a ReadIndex read")
	}
}

// TestReadIndexSingleVoter checks that a lone voter answers at once.
func TestReadIndexSingleVoter(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(1), nil)
	must(t, c.ElectLeader(1))
	c.ReadIndex(1, []byte("solo"))
	must(t, c.Stabilize())
	if _, ok := readIndexes(c, 1)["solo"]; !ok {
		t.Fatal("single voter did not answer its read")
	}
}

// TestLeaseReadWithoutHeartbeatRound checks lease-based reads: a leader
// with a valid lease answers at once, without a heartbeat round.
func TestLeaseReadWithoutHeartbeatRound(t *testing.T) {
	c := newCluster(t, rafttest.Options{CheckQuorum: true, ReadOnly: raft.ReadOnlyLeaseBased}, ids(3), nil)
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 1, "lease")
	// One heartbeat round gives the leader its lease.
	c.TickAll()
	must(t, c.Stabilize())
	c.ReadIndex(1, []byte("fast"))
	if _, err := c.Process(1); err != nil {
		t.Fatal(err)
	}
	if got := readIndexes(c, 1); got["fast"] != c.Member(1).Node.Status().Commit {
		t.Fatalf("lease read not answered at once: %v", got)
	}
	if n := countMsgs(c, func(m pb.Message) bool { return m.Type == pb.MsgHeartbeat }); n != 0 {
		t.Fatalf("lease read sent %d heartbeats", n)
	}
}

// TestLeaseExpiresBeforeNewLeader checks that an isolated leader's lease
// runs out before the rest of the cluster can elect a new leader, with time
// passing at the same rate everywhere: a lease read after that point falls
// back to a heartbeat round that cannot complete.
func TestLeaseExpiresBeforeNewLeader(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		c := newCluster(t, rafttest.Options{Seed: seed, CheckQuorum: true, PreVote: true, ReadOnly: raft.ReadOnlyLeaseBased}, ids(3), nil)
		must(t, c.ElectLeader(1))
		proposeAndCommit(t, c, 1, 1, "x")
		c.TickAll()
		must(t, c.Stabilize())
		c.Net.Isolate(1, c.IDs())
		for tick := 0; tick < 40; tick++ {
			c.TickAll()
			must(t, c.Stabilize())
			ctx := fmt.Sprintf("s%d-t%d", seed, tick)
			c.ReadIndex(1, []byte(ctx))
			must(t, c.Stabilize())
			_, answered := readIndexes(c, 1)[ctx]
			other := c.Leader()
			if answered && other != 1 && other != 0 {
				t.Fatalf("seed %d tick %d: isolated leader served a lease read while %d leads term %d", seed, tick, other, status(c, other).Term)
			}
		}
	}
}

// TestLeaseRevokedByTransfer checks that a leader that sent TimeoutNow no
// longer serves lease reads at once.
func TestLeaseRevokedByTransfer(t *testing.T) {
	c := newCluster(t, rafttest.Options{CheckQuorum: true, ReadOnly: raft.ReadOnlyLeaseBased}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.TickAll()
	must(t, c.Stabilize())
	// The TimeoutNow is lost, so 1 stays leader with its lease revoked.
	c.Net.Cut(1, 2)
	c.TransferLeader(1, 2)
	if _, err := c.Process(1); err != nil {
		t.Fatal(err)
	}
	c.Net.Filter(func(m pb.Message) bool { return m.Type == pb.MsgTimeoutNow })
	c.ReadIndex(1, []byte("after-transfer"))
	if _, err := c.Process(1); err != nil {
		t.Fatal(err)
	}
	if _, ok := readIndexes(c, 1)["after-transfer"]; ok {
		t.Fatal("lease read served after sending TimeoutNow")
	}
}

// TestLeaseReadFallsBackToHeartbeatRound checks that a lease-based leader
// without a valid lease (just elected, no heartbeat answered yet) still
// answers a read, after a heartbeat round.
func TestLeaseReadFallsBackToHeartbeatRound(t *testing.T) {
	c := newCluster(t, rafttest.Options{CheckQuorum: true, ReadOnly: raft.ReadOnlyLeaseBased}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.ReadIndex(1, []byte("no-lease-yet"))
	if _, err := c.Process(1); err != nil {
		t.Fatal(err)
	}
	if len(c.Member(1).ReadStates) != 0 {
		t.Fatal("read answered without a lease and without a heartbeat round")
	}
	must(t, c.Stabilize())
	if _, ok := readIndexes(c, 1)["no-lease-yet"]; !ok {
		t.Fatal("read not answered after the heartbeat round")
	}
}

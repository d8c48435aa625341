package raft_test

import (
	"errors"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
	"github.com/synod-db/synod/raft/tracker"
)

// TestSnapshotFailureRetried checks that a lost snapshot reported with
// ReportSnapshot(SnapshotFailure) sends the follower back to probing, and
// the next heartbeat leads to a new snapshot that succeeds.
func TestSnapshotFailureRetried(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Net.Isolate(3, c.IDs())
	proposeAndCommit(t, c, 1, 5, "s")
	must(t, c.Compact(1, 0))
	c.Net.Heal()
	// Every snapshot to 3 is lost once: the network reports the failure.
	lost := 0
	c.Hooks.Ready = func(id uint64, rd raft.Ready) {
		if id != 1 || lost > 0 {
			return
		}
		for _, m := range rd.Messages {
			if m.Type == pb.MsgSnap {
				lost++
				c.Net.Cut(1, 3)
			}
		}
	}
	c.Tick(1)
	must(t, c.Stabilize())
	if lost != 1 {
		t.Fatalf("expected one snapshot to be sent and lost, got %d", lost)
	}
	if pr := c.Member(1).Node.Status().Progress[3]; pr.State != tracker.StateProbe {
		t.Fatalf("after a failed snapshot: %s, want probe", pr.String())
	}
	c.Net.Heal()
	c.Tick(1)
	must(t, c.Stabilize())
	if got := len(dataOf(c, 3)); got != 5 {
		t.Fatalf("member 3 applied %d entries after the retried snapshot, want 5", got)
	}
}

// TestReportUnreachableStopsStreaming checks that a replicating follower
// reported unreachable is probed instead of streamed to.
func TestReportUnreachableStopsStreaming(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	c.Member(1).Node.ReportUnreachable(2)
	if pr := c.Member(1).Node.Status().Progress[2]; pr.State != tracker.StateProbe {
		t.Fatalf("unreachable follower: %s, want probe", pr.String())
	}
	proposeAndCommit(t, c, 1, 2, "u")
	if pr := c.Member(1).Node.Status().Progress[2]; pr.State != tracker.StateReplicate {
		t.Fatalf("after it answered: %s, want replicate", pr.String())
	}
}

// TestRestartFromSnapshotAndLog checks that a member restarted from a
// compacted storage (snapshot plus log suffix) rebuilds its configuration
// and state, applying only the entries after the snapshot.
func TestRestartFromSnapshotAndLog(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), []uint64{4})
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 5, "a")
	must(t, c.Compact(2, 2))
	proposeAndCommit(t, c, 1, 3, "b")
	want := dataOf(c, 2)
	c.Crash(2)
	must(t, c.Restart(2))
	c.TickAll()
	must(t, c.Stabilize())
	if got := dataOf(c, 2); len(got) != len(want) || got[len(got)-1] != want[len(want)-1] {
		t.Fatalf("after restart from snapshot: %v, want %v", got, want)
	}
	if cs := c.Member(2).Node.Status().Config; len(cs.Learners) != 1 {
		t.Fatalf("configuration after restart: %s, want learner 4 kept", cs.String())
	}
}

// TestSnapshotOlderThanCommitIgnored checks that a snapshot behind the
// follower's commit index is answered with the commit index and changes
// nothing.
func TestSnapshotOlderThanCommitIgnored(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	proposeAndCommit(t, c, 1, 3, "o")
	commit := status(c, 2).Commit
	term := status(c, 2).Term
	old := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 2, Term: 1, ConfState: pb.ConfState{Voters: ids(3)}}}
	must(t, c.Member(2).Node.Step(pb.Message{Type: pb.MsgSnap, From: 1, To: 2, Term: term, Snapshot: &old}))
	rd := c.Member(2).Node.Ready()
	if !raft.IsEmptySnap(rd.Snapshot) {
		t.Fatal("old snapshot handed out for installation")
	}
	var resp *pb.Message
	for _, m := range rd.MessagesAfterPersist {
		if m.Type == pb.MsgAppResp {
			resp = &m
		}
	}
	if resp == nil || resp.Index != commit {
		t.Fatalf("answer %+v, want an append response at commit %d", resp, commit)
	}
}

// TestMsgSnapWithoutSnapshotIgnored checks that a malformed MsgSnap (no
// snapshot) from a peer is refused with ErrInvalidMessage and changes
// nothing.
func TestMsgSnapWithoutSnapshotIgnored(t *testing.T) {
	c := newCluster(t, rafttest.Options{}, ids(3), nil)
	must(t, c.ElectLeader(1))
	err := c.Member(2).Node.Step(pb.Message{Type: pb.MsgSnap, From: 1, To: 2, Term: status(c, 2).Term})
	if !errors.Is(err, raft.ErrInvalidMessage) {
		t.Fatalf("MsgSnap without snapshot: %v, want ErrInvalidMessage", err)
	}
	proposeAndCommit(t, c, 1, 1, "still-fine")
}

package raft

import (
	"io"
	"log/slog"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// newTestRaft returns a raft member of a fresh cluster of voters, started
// from a snapshot at index 1 holding the configuration.
func newTestRaft(t testing.TB, id uint64, voters []uint64, configure ...func(*Config)) (*raft, *MemoryStorage) {
	t.Helper()
	st := NewMemoryStorage()
	if err := st.ApplySnapshot(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: voters}}}); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, f := range configure {
		f(cfg)
	}
	r, err := newRaft(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

// persistAll plays the application: persists everything the member has
// and acknowledges it, returning the messages it wanted sent.
func persistAll(t testing.TB, rn *RawNode, st *MemoryStorage) []pb.Message {
	t.Helper()
	var msgs []pb.Message
	for rn.HasReady() {
		rd := rn.Ready()
		msgs = append(msgs, rd.Messages...)
		if !IsEmptySnap(rd.Snapshot) {
			if err := st.ApplySnapshot(rd.Snapshot); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Append(rd.Entries); err != nil {
			t.Fatal(err)
		}
		if !IsEmptyHardState(rd.HardState) {
			_ = st.SetHardState(rd.HardState)
		}
		msgs = append(msgs, rd.MessagesAfterPersist...)
		rn.Advance(rd)
	}
	return msgs
}

// electLeader makes r leader of its term with the votes of the given
// members.
func electLeader(t testing.TB, r *raft, voters ...uint64) {
	t.Helper()
	if err := r.Step(pb.Message{Type: pb.MsgHup}); err != nil {
		t.Fatal(err)
	}
	for _, v := range voters {
		if err := r.Step(pb.Message{Type: pb.MsgVoteResp, From: v, To: r.id, Term: r.Term}); err != nil {
			t.Fatal(err)
		}
	}
	if r.state != StateLeader {
		t.Fatalf("member %d is %s after votes from %v", r.id, r.state, voters)
	}
}

// TestReadIndexWaitsForCommitInTerm checks that a new leader answers no
// read before it has committed an entry of its own term (its commit index
// may be behind until then), and answers it once it has.
func TestReadIndexWaitsForCommitInTerm(t *testing.T) {
	r, st := newTestRaft(t, 1, []uint64{1, 2, 3})
	rn := &RawNode{raft: r}
	electLeader(t, r, 2)
	persistAll(t, rn, st)
	if r.committedEntryInCurrentTerm() {
		t.Fatal("setup: leader already committed in its term")
	}
	r.Step(pb.Message{Type: pb.MsgReadIndex, Entries: []pb.Entry{{Data: []byte("early")}}})
	if len(r.pendingReadIndexMessages) != 1 || len(r.readStates) != 0 {
		t.Fatalf("read not held back: pending %d, answered %d", len(r.pendingReadIndexMessages), len(r.readStates))
	}
	// Follower 2 acknowledges the leader's empty entry: it commits.
	r.Step(pb.Message{Type: pb.MsgAppResp, From: 2, To: 1, Term: r.Term, Index: r.raftLog.lastIndex()})
	if !r.committedEntryInCurrentTerm() || len(r.pendingReadIndexMessages) != 0 {
		t.Fatalf("after commit in term: committed-in-term %v, pending %d", r.committedEntryInCurrentTerm(), len(r.pendingReadIndexMessages))
	}
	// The released read goes through a heartbeat round.
	r.Step(pb.Message{Type: pb.MsgHeartbeatResp, From: 2, To: 1, Term: r.Term, Context: []byte("early")})
	if len(r.readStates) != 1 || r.readStates[0].Index != r.raftLog.committed {
		t.Fatalf("read states %+v, want one at %d", r.readStates, r.raftLog.committed)
	}
}

// TestLeaderCountsItselfOnlyAfterPersisting checks parallel disk writes:
// the leader sends appends before persisting, but its own acknowledgement
// counts only once Advance reports the entries durable. With one follower
// of three acknowledging, nothing commits until the leader has persisted.
func TestLeaderCountsItselfOnlyAfterPersisting(t *testing.T) {
	r, st := newTestRaft(t, 1, []uint64{1, 2, 3})
	rn := &RawNode{raft: r}
	electLeader(t, r, 2)
	persistAll(t, rn, st)
	r.Step(pb.Message{Type: pb.MsgAppResp, From: 2, To: 1, Term: r.Term, Index: r.raftLog.lastIndex()})
	persistAll(t, rn, st)
	commit := r.raftLog.committed

	if err := rn.Propose([]byte("parallel")); err != nil {
		t.Fatal(err)
	}
	rd := rn.Ready()
	var appendToFollower bool
	for _, m := range rd.Messages {
		if m.Type == pb.MsgApp && len(m.Entries) == 1 {
			appendToFollower = true
		}
	}
	if !appendToFollower || len(rd.Entries) != 1 {
		t.Fatalf("leader must hand out the append before persisting: Messages %v, Entries %v", rd.Messages, rd.Entries)
	}
	idx := rd.Entries[0].Index
	r.Step(pb.Message{Type: pb.MsgAppResp, From: 2, To: 1, Term: r.Term, Index: idx})
	if r.raftLog.committed != commit {
		t.Fatalf("committed %d with one follower and an unpersisted leader, want still %d", r.raftLog.committed, commit)
	}
	if err := st.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	rn.Advance(rd)
	if r.raftLog.committed != idx {
		t.Fatalf("after the leader persisted: committed %d, want %d", r.raftLog.committed, idx)
	}
}

// TestReadyMessagesSplit checks which messages may go before persisting:
// a follower's append acknowledgement and vote grants wait; everything
// waits when the term or vote changed in the Ready.
func TestReadyMessagesSplit(t *testing.T) {
	r, st := newTestRaft(t, 2, []uint64{1, 2, 3})
	rn := &RawNode{raft: r}
	// A vote request at a new term: term and vote change, all waits.
	rn.Step(pb.Message{Type: pb.MsgVote, From: 1, To: 2, Term: 5, Index: 1, LogTerm: 1})
	rd := rn.Ready()
	if len(rd.Messages) != 0 || len(rd.MessagesAfterPersist) != 1 || !rd.MustSync {
		t.Fatalf("vote grant: now %v after %v sync %v", rd.Messages, rd.MessagesAfterPersist, rd.MustSync)
	}
	_ = st.SetHardState(rd.HardState)
	rn.Advance(rd)
	// An append at the same term: the acknowledgement waits, a heartbeat
	// answer does not.
	rn.Step(pb.Message{Type: pb.MsgApp, From: 1, To: 2, Term: 5, Index: 1, LogTerm: 1, Entries: []pb.Entry{{Index: 2, Term: 5}}})
	rn.Step(pb.Message{Type: pb.MsgHeartbeat, From: 1, To: 2, Term: 5})
	rd = rn.Ready()
	if len(rd.Messages) != 1 || rd.Messages[0].Type != pb.MsgHeartbeatResp {
		t.Fatalf("want the heartbeat answer before persisting, got %v", rd.Messages)
	}
	if len(rd.MessagesAfterPersist) != 1 || rd.MessagesAfterPersist[0].Type != pb.MsgAppResp {
		t.Fatalf("want the append acknowledgement after persisting, got %v", rd.MessagesAfterPersist)
	}
}

// TestOlderTermVoteRejectedWithNewerTerm checks that a vote request of an
// older term is answered with a rejection carrying the newer term, and
// that the candidate adopts it. Without the answer, a candidate whose
// requests only reach members ahead of it would campaign unanswered
// forever (found by a simulation soak, seed 5114).
func TestOlderTermVoteRejectedWithNewerTerm(t *testing.T) {
	ahead, _ := newTestRaft(t, 2, []uint64{1, 2, 3})
	ahead.becomeFollower(10, None)
	for _, typ := range []pb.MessageType{pb.MsgVote, pb.MsgPreVote} {
		ahead.msgs = nil
		if err := ahead.Step(pb.Message{Type: typ, From: 1, To: 2, Term: 5, Index: 1, LogTerm: 1}); err != nil {
			t.Fatal(err)
		}
		if len(ahead.msgs) != 1 {
			t.Fatalf("%s of an older term: %d answers, want 1", typ, len(ahead.msgs))
		}
		resp := ahead.msgs[0]
		if resp.Type != pb.VoteResponseType(typ) || !resp.Reject || resp.Term != 10 {
			t.Fatalf("%s of an older term answered with %+v, want a rejection at term 10", typ, resp)
		}
	}
	cand, _ := newTestRaft(t, 1, []uint64{1, 2, 3})
	if err := cand.Step(pb.Message{Type: pb.MsgHup}); err != nil {
		t.Fatal(err)
	}
	if err := cand.Step(pb.Message{Type: pb.MsgVoteResp, From: 2, To: 1, Term: 10, Reject: true}); err != nil {
		t.Fatal(err)
	}
	if cand.state != StateFollower || cand.Term != 10 {
		t.Fatalf("candidate after a newer-term rejection: %s at term %d, want follower at 10", cand.state, cand.Term)
	}
}

package raft

import (
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// FuzzStep feeds arbitrary messages, decoded from fuzzed bytes, to a
// leader and to a follower and handles their Readys. Whatever a peer
// sends, the member must not panic and must keep its invariants.
func FuzzStep(f *testing.F) {
	seeds := []pb.Message{
		{Type: pb.MsgApp, From: 2, To: 1, Term: 2, Index: 2, LogTerm: 2, Commit: 3, Entries: []pb.Entry{{Index: 3, Term: 2}}},
		{Type: pb.MsgAppResp, From: 2, To: 1, Term: 2, Index: 2},
		{Type: pb.MsgAppResp, From: 2, To: 1, Term: 2, Index: 5, Reject: true, RejectHint: 1, LogTerm: 1},
		{Type: pb.MsgHeartbeat, From: 2, To: 1, Term: 3, Commit: 9},
		{Type: pb.MsgHeartbeatResp, From: 3, To: 1, Term: 2, Context: []byte("x"), Index: 4},
		{Type: pb.MsgVote, From: 3, To: 1, Term: 5, Index: 9, LogTerm: 4},
		{Type: pb.MsgSnap, From: 2, To: 1, Term: 3, Snapshot: &pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 20, Term: 3, ConfState: pb.ConfState{Voters: []uint64{1, 2, 3}}}}},
		{Type: pb.MsgReadIndex, From: 2, To: 1, Entries: []pb.Entry{{Data: []byte("r")}}},
		{Type: pb.MsgReadIndexResp, From: 2, To: 1, Term: 2, Index: 7},
		{Type: pb.MsgTimeoutNow, From: 2, To: 1, Term: 2},
		{Type: pb.MsgTransferLeader, From: 3, To: 1},
		{Type: pb.MsgProp, From: 2, To: 1, Entries: []pb.Entry{{Type: pb.EntryConfChangeV2, Data: []byte{1, 2, 3}}}},
	}
	for _, m := range seeds {
		f.Add(pb.MarshalMessage(&m))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m pb.Message
		if err := pb.UnmarshalMessage(data, &m); err != nil {
			return
		}
		for _, lead := range []bool{true, false} {
			r, st := newTestRaft(t, 1, []uint64{1, 2, 3})
			rn := &RawNode{raft: r}
			if lead {
				electLeader(t, r, 2)
			}
			persistAll(t, rn, st)
			_ = rn.Step(m)
			persistAll(t, rn, st)
			if r.raftLog.committed > r.raftLog.lastIndex() {
				t.Fatalf("commit %d beyond last index %d after %+v", r.raftLog.committed, r.raftLog.lastIndex(), m)
			}
		}
	})
}

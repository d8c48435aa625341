package raft

import (
	"io"
	"log/slog"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// TestCampaignAfterApplicationCompacted is the regression test of a panic
// found by a power-loss test: a member restarting with committed entries
// to replay hands them to its apply goroutine before it advances the
// Ready, and that goroutine may apply them, snapshot and compact the log
// while raft still counts them as unapplied. A campaign then scanned the
// compacted entries for conf changes and panicked. Compacted entries were
// applied, so the scan must skip them, and still find a conf change among
// the entries that are left.
func TestCampaignAfterApplicationCompacted(t *testing.T) {
	for _, tc := range []struct {
		name         string
		confChangeAt uint64
		wantLeader   bool
	}{
		{"conf change compacted", 4, true},
		{"conf change left to apply", 9, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := NewMemoryStorage()
			if err := st.ApplySnapshot(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: []uint64{1}}}}); err != nil {
				t.Fatal(err)
			}
			var ents []pb.Entry
			for i := uint64(2); i <= 10; i++ {
				e := pb.Entry{Index: i, Term: 1, Type: pb.EntryNormal}
				if i == tc.confChangeAt {
					e.Type = pb.EntryConfChangeV2
				}
				ents = append(ents, e)
			}
			if err := st.Append(ents); err != nil {
				t.Fatal(err)
			}
			if err := st.SetHardState(pb.HardState{Term: 1, Commit: 10}); err != nil {
				t.Fatal(err)
			}
			r, err := newRaft(&Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Applied: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			// The application applied and snapshotted up to 8 before raft
			// heard that anything was applied.
			if err := st.Compact(8); err != nil {
				t.Fatal(err)
			}
			if err := r.Step(pb.Message{Type: pb.MsgHup}); err != nil {
				t.Fatal(err)
			}
			if got := r.state == StateLeader; got != tc.wantLeader {
				t.Fatalf("after MsgHup the lone voter is %v, want leader %v", r.state, tc.wantLeader)
			}
		})
	}
}

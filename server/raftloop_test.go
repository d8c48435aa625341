package server

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/synod-db/synod/logstore"
	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/transport"
	"github.com/synod-db/synod/snap"
)

// readyTestServer is a server with just what handleReady needs: a raft
// log on disk, a transport without peers, and an apply queue the test
// drains itself.
func readyTestServer(t *testing.T) *Server {
	t.Helper()
	dir := t.TempDir()
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	snaps, err := snap.New(filepath.Join(dir, "snap"), snap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snaps.Close() })
	logs, _, err := logstore.Open(filepath.Join(dir, "wal"), snaps, []byte("{}"), logstore.Options{
		Logger: lg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logs.Close() })
	s := &Server{logs: logs, lg: lg, applyc: make(chan applyJob, 64), stopping: make(chan struct{})}
	s.tr, err = transport.New(transport.Config{ClusterID: 1, ID: 1, Handler: (*peerHandler)(s), Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.tr.Stop)
	return s
}

// TestReadyWithConfChangeAdvancesOnlyOnceApplied is the regression test
// of a split brain CI found: a restarted member replays its log's
// "add member" changes through the apply goroutine, but the raft loop
// advanced past them at once, so raft took them as applied while its
// configuration held only the first. A member whose own addition came
// first then campaigned as a lone voter, won, and committed an entry by
// itself (and later panicked sending to a member it could not serve).
// handleReady must not return, and so let raft advance, before a
// committed conf change is applied; ordinary entries are not waited for.
func TestReadyWithConfChangeAdvancesOnlyOnceApplied(t *testing.T) {
	s := readyTestServer(t)
	ccEntry := confChangeEntry()
	rd := raft.Ready{
		HardState:        raftpb.HardState{Term: 1, Commit: 1},
		Entries:          []raftpb.Entry{ccEntry},
		CommittedEntries: []raftpb.Entry{ccEntry},
		MustSync:         true,
	}
	returned := make(chan error, 1)
	go func() { returned <- s.handleReady(rd) }()
	j := <-s.applyc
	if j.applied == nil {
		t.Fatal("the apply job of a conf change has no applied signal: the raft loop cannot wait for it")
	}
	select {
	case err := <-returned:
		t.Fatalf("handleReady returned (err %v) before the apply goroutine applied the conf change", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(j.applied)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}

	// Normal entries are applied while the raft loop goes on.
	normal := raftpb.Entry{Index: 2, Term: 1, Type: raftpb.EntryNormal}
	rd = raft.Ready{
		HardState:        raftpb.HardState{Term: 1, Commit: 2},
		Entries:          []raftpb.Entry{normal},
		CommittedEntries: []raftpb.Entry{normal},
		MustSync:         true,
	}
	if err := s.handleReady(rd); err != nil {
		t.Fatal(err)
	}
	if j := <-s.applyc; j.applied != nil || len(j.entries) != 1 {
		t.Fatalf("apply job of a normal entry: %+v, want one entry and no applied signal", j)
	}
}

// TestReadyWithConfChangeStopsWaitingOnStop checks that a raft loop
// waiting for a conf change to be applied still stops with the member
// (the apply goroutine may have stopped on a fatal error).
func TestReadyWithConfChangeStopsWaitingOnStop(t *testing.T) {
	s := readyTestServer(t)
	ccEntry := confChangeEntry()
	returned := make(chan error, 1)
	go func() {
		returned <- s.handleReady(raft.Ready{HardState: raftpb.HardState{Term: 1, Commit: 1}, Entries: []raftpb.Entry{ccEntry}, CommittedEntries: []raftpb.Entry{ccEntry}})
	}()
	<-s.applyc
	close(s.stopping)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
}

// confChangeEntry is entry 1 of a new log: the change adding member 1.
func confChangeEntry() raftpb.Entry {
	e := raftpb.ToEntry(raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 1})
	e.Index, e.Term = 1, 1
	return e
}

package logstore

import (
	"bytes"
	"io"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/snap"
)

// TestOpenDirWithRealSnapshots checks the store on package snap: a local
// snapshot and a restart from it, with the snapshot's data streamed back.
func TestOpenDirWithRealSnapshots(t *testing.T) {
	dir := t.TempDir()
	o := opts(0)
	o.IsNoSnapshot = nil
	s, snaps, _, err := OpenDir(dir, []byte("m"), snap.Options{}, o)
	must(t, err)
	must(t, s.Save(pb.HardState{Term: 2, Commit: 40}, ents(1, 50, 2), true))
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 40, Term: 2, ConfState: pb.ConfState{Voters: []uint64{1}}}, bytes.NewReader([]byte("app-state"))))
	must(t, s.Close())
	must(t, snaps.Close())

	s, snaps, meta, err := OpenDir(dir, nil, snap.Options{}, o)
	must(t, err)
	defer snaps.Close()
	defer s.Close()
	if string(meta) != "m" {
		t.Fatalf("metadata %q", meta)
	}
	if first, _ := s.FirstIndex(); first != 41 {
		t.Fatalf("first index %d after restart, want 41", first)
	}
	checkRange(t, s, 41, 50, ents(41, 50, 2))
	m, rc, err := snaps.LoadNewest()
	must(t, err)
	data, err := io.ReadAll(rc)
	rc.Close()
	must(t, err)
	if m.Index != 40 || string(data) != "app-state" {
		t.Fatalf("snapshot %d %q", m.Index, data)
	}
}

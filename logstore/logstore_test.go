package logstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/snap"
	"github.com/synod-db/synod/wal"
)

// memSnaps keeps snapshots in memory, standing in for package snap.
type memSnaps struct {
	meta pb.SnapshotMetadata
	data []byte
	has  bool
}

func (m *memSnaps) SaveFrom(meta pb.SnapshotMetadata, r io.Reader) error {
	d, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.meta, m.data, m.has = meta, d, true
	return nil
}

func (m *memSnaps) LoadNewest() (pb.SnapshotMetadata, io.ReadCloser, error) {
	if !m.has {
		return pb.SnapshotMetadata{}, nil, snap.ErrNoSnapshot
	}
	return m.meta, io.NopCloser(bytes.NewReader(m.data)), nil
}

func opts(cache uint64) Options {
	l := slog.New(slog.NewTextHandler(io.Discard, nil))
	return Options{
		WAL:        wal.Options{SegmentSize: 8 << 10, Logger: l},
		CacheBytes: cache,
		Logger:     l,
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ents(lo, hi, term uint64) []pb.Entry {
	var out []pb.Entry
	for i := lo; i < hi; i++ {
		out = append(out, pb.Entry{Index: i, Term: term, Data: []byte(fmt.Sprintf("data-%d-%d", i, term))})
	}
	return out
}

func checkRange(t testing.TB, s *Store, lo, hi uint64, want []pb.Entry) {
	t.Helper()
	got, err := s.Entries(lo, hi, ^uint64(0))
	must(t, err)
	if len(got) != len(want) {
		t.Fatalf("Entries(%d, %d): %d entries, want %d", lo, hi, len(got), len(want))
	}
	for i := range got {
		if got[i].Index != want[i].Index || got[i].Term != want[i].Term || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("Entries(%d, %d)[%d] = %d/%d %q, want %d/%d %q", lo, hi, i, got[i].Index, got[i].Term, got[i].Data, want[i].Index, want[i].Term, want[i].Data)
		}
		term, err := s.Term(got[i].Index)
		must(t, err)
		if term != want[i].Term {
			t.Fatalf("Term(%d) = %d, want %d", got[i].Index, term, want[i].Term)
		}
	}
}

// TestRestartKeepsLogAndState checks that a store reopened from disk has
// the hard state and entries saved before, including overwrites.
func TestRestartKeepsLogAndState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	snaps := &memSnaps{}
	s, meta, err := Open(dir, snaps, []byte("ids"), opts(0))
	must(t, err)
	if string(meta) != "ids" {
		t.Fatalf("metadata %q", meta)
	}
	must(t, s.Save(pb.HardState{Term: 1, Commit: 5}, ents(1, 100, 1), true))
	must(t, s.Save(pb.HardState{Term: 2, Vote: 3, Commit: 60}, ents(70, 90, 2), true))
	must(t, s.Close())
	s, meta, err = Open(dir, snaps, nil, opts(0))
	must(t, err)
	defer s.Close()
	hs, _, _ := s.InitialState()
	if hs != (pb.HardState{Term: 2, Vote: 3, Commit: 60}) || string(meta) != "ids" {
		t.Fatalf("after restart: hard state %+v metadata %q", hs, meta)
	}
	if last, _ := s.LastIndex(); last != 89 {
		t.Fatalf("last index %d, want 89", last)
	}
	checkRange(t, s, 1, 90, append(ents(1, 70, 1), ents(70, 90, 2)...))
	if _, err := s.Entries(1, 91, ^uint64(0)); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("entries beyond the end: %v", err)
	}
}

// TestCacheIsBoundedAndOldEntriesComeFromWAL checks that memory holds at
// most CacheBytes of entries and older ones are read from the WAL files.
func TestCacheIsBoundedAndOldEntriesComeFromWAL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	s, _, err := Open(dir, &memSnaps{}, nil, opts(1000))
	must(t, err)
	defer s.Close()
	var all []pb.Entry
	for i := uint64(1); i <= 1000; i += 50 {
		e := ents(i, i+50, 1)
		all = append(all, e...)
		must(t, s.Save(pb.HardState{Term: 1}, e, true))
	}
	s.mu.Lock()
	cached, bytesCached := len(s.cache), s.cacheBytes
	s.mu.Unlock()
	if bytesCached > 1000 || cached == len(all) {
		t.Fatalf("cache holds %d entries, %d bytes; want at most 1000 bytes", cached, bytesCached)
	}
	checkRange(t, s, 1, 1001, all)
	checkRange(t, s, 500, 520, all[499:519])
	got, err := s.Entries(1, 1001, 30)
	must(t, err)
	// Payloads are 8 bytes: three fit in 30.
	if len(got) != 3 {
		t.Fatalf("size-limited read returned %d entries, want 3", len(got))
	}
}

// TestCreateSnapshotCompacts checks that a local snapshot compacts the log
// but keeps the entries after it, also across a restart.
func TestCreateSnapshotCompacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	snaps := &memSnaps{}
	s, _, err := Open(dir, snaps, nil, opts(0))
	must(t, err)
	must(t, s.Save(pb.HardState{Term: 1, Commit: 80}, ents(1, 100, 1), true))
	cs := pb.ConfState{Voters: []uint64{1, 2, 3}}
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 80, Term: 1, ConfState: cs}, bytes.NewReader([]byte("state@80"))))
	if first, _ := s.FirstIndex(); first != 81 {
		t.Fatalf("first index %d, want 81", first)
	}
	if _, err := s.Entries(50, 90, ^uint64(0)); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("compacted entries: %v, want ErrCompacted", err)
	}
	if term, err := s.Term(80); err != nil || term != 1 {
		t.Fatalf("Term at the snapshot: %d, %v", term, err)
	}
	must(t, s.Close())
	s, _, err = Open(dir, snaps, nil, opts(0))
	must(t, err)
	defer s.Close()
	_, gotCS, _ := s.InitialState()
	if gotCS.Equivalent(cs) != nil {
		t.Fatalf("conf state after restart %+v", gotCS)
	}
	checkRange(t, s, 81, 100, ents(81, 100, 1))
}

// TestSnapshotAheadOfStoredCommit is the regression test of a member that
// could not restart after a power loss (found by the chaos harness): the
// snapshot file reached the disk, the unsynced hard state with the commit
// index that covered it did not, and raft refused a commit index below
// its log. The snapshot's index is committed, and so is taken.
func TestSnapshotAheadOfStoredCommit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	snaps := &memSnaps{}
	s, _, err := Open(dir, snaps, nil, opts(0))
	must(t, err)
	must(t, s.Save(pb.HardState{Term: 1, Commit: 40}, ents(1, 100, 1), true))
	// The snapshot at 80 and its WAL marker are on disk; no hard state
	// with a commit index of 80 or more is (commit indexes go unsynced).
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 80, Term: 1, ConfState: pb.ConfState{Voters: []uint64{1}}}, bytes.NewReader([]byte("state@80"))))
	must(t, s.Close())
	s, _, err = Open(dir, snaps, nil, opts(0))
	must(t, err)
	defer s.Close()
	hs, _, _ := s.InitialState()
	if first, _ := s.FirstIndex(); hs.Commit != 80 || first != 81 {
		t.Fatalf("after restart: commit %d, first index %d; want 80, 81", hs.Commit, first)
	}
}

// TestApplySnapshotReplacesLog checks that a leader's snapshot replaces the
// log, also across a restart: stale entries never come back.
func TestApplySnapshotReplacesLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	snaps := &memSnaps{}
	s, _, err := Open(dir, snaps, nil, opts(0))
	must(t, err)
	must(t, s.Save(pb.HardState{Term: 1, Commit: 10}, ents(1, 200, 1), true))
	must(t, s.ApplySnapshot(pb.SnapshotMetadata{Index: 150, Term: 4}, bytes.NewReader([]byte("leader"))))
	must(t, s.Save(pb.HardState{Term: 4, Commit: 150}, nil, true))
	if last, _ := s.LastIndex(); last != 150 {
		t.Fatalf("last after snapshot %d, want 150", last)
	}
	must(t, s.Save(pb.HardState{Term: 4, Commit: 152}, ents(151, 153, 4), true))
	must(t, s.Close())
	s, _, err = Open(dir, snaps, nil, opts(0))
	must(t, err)
	defer s.Close()
	if last, _ := s.LastIndex(); last != 152 {
		t.Fatalf("last after restart %d, want 152", last)
	}
	checkRange(t, s, 151, 153, ents(151, 153, 4))
	if err := s.CreateSnapshot(pb.SnapshotMetadata{Index: 100, Term: 1}, bytes.NewReader(nil)); !errors.Is(err, raft.ErrSnapOutOfDate) {
		t.Fatalf("older snapshot: %v, want ErrSnapOutOfDate", err)
	}
}

// TestRaftRestartsFromDisk runs a single-voter raft member on the store,
// then restarts it from disk and checks it keeps its log and leads again.
func TestRaftRestartsFromDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	snaps := &memSnaps{}
	s, _, err := Open(dir, snaps, nil, opts(2000))
	must(t, err)
	// Seed the configuration as a snapshot, as a bootstrapped member would.
	must(t, s.ApplySnapshot(pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: []uint64{1}}}, bytes.NewReader(nil)))
	applied := uint64(1)
	run := func(s *Store, proposals int) {
		rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: s, Applied: applied,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		must(t, err)
		must(t, rn.Campaign())
		proposed := 0
		for i := 0; i < 100000 && (proposed < proposals || rn.HasReady()); i++ {
			if proposed < proposals && rn.BasicStatus().RaftState == raft.StateLeader {
				must(t, rn.Propose([]byte(fmt.Sprintf("p%d", proposed))))
				proposed++
			}
			if !rn.HasReady() {
				continue
			}
			rd := rn.Ready()
			must(t, s.Save(rd.HardState, rd.Entries, rd.MustSync))
			for _, e := range rd.CommittedEntries {
				applied = e.Index
			}
			rn.Advance(rd)
		}
	}
	run(s, 300)
	before := applied
	must(t, s.Close())
	s, _, err = Open(dir, snaps, nil, opts(2000))
	must(t, err)
	defer s.Close()
	run(s, 10)
	if applied != before+11 {
		t.Fatalf("applied %d after restart and 10 proposals (plus the new term's entry), want %d", applied, before+11)
	}
	// The log from before the restart is still readable.
	got, err := s.Entries(2, 12, ^uint64(0))
	must(t, err)
	if len(got) != 10 || string(got[1].Data) != "p0" {
		t.Fatalf("entries after restart: %d, second %q", len(got), got[1].Data)
	}
}

// BenchmarkSave measures saving a Ready of 16 entries of 128 bytes
// (unsynced, to measure the store rather than the disk) with a cache that
// stays full, per entry.
func BenchmarkSave(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "wal")
	o := opts(1 << 20)
	o.WAL.SegmentSize = wal.DefaultSegmentSize
	s, _, err := Open(dir, &memSnaps{}, nil, o)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := make([]pb.Entry, 16)
	data := make([]byte, 128)
	b.ReportAllocs()
	b.ResetTimer()
	idx := uint64(1)
	for done := 0; done < b.N; done += len(batch) {
		for i := range batch {
			batch[i] = pb.Entry{Index: idx, Term: 1, Data: data}
			idx++
		}
		if err := s.Save(pb.HardState{Term: 1}, batch, false); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCatchUpEntriesStayAfterSnapshot checks that CreateSnapshot keeps
// CatchUpEntries entries before the snapshot readable (a lagging follower
// gets them instead of the whole snapshot), and that a restart starts the
// log at the snapshot.
func TestCatchUpEntriesStayAfterSnapshot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	snaps := &memSnaps{}
	o := opts(0)
	o.CatchUpEntries = 30
	s, _, err := Open(dir, snaps, nil, o)
	must(t, err)
	must(t, s.Save(pb.HardState{Term: 1, Commit: 80}, ents(1, 100, 1), true))
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 80, Term: 1}, bytes.NewReader([]byte("state@80"))))
	if first, _ := s.FirstIndex(); first != 51 {
		t.Fatalf("first index %d, want 51", first)
	}
	checkRange(t, s, 51, 100, ents(51, 100, 1))
	if term, err := s.Term(50); err != nil || term != 1 {
		t.Fatalf("term before the first index: %d, %v", term, err)
	}
	if _, err := s.Entries(50, 60, ^uint64(0)); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("entries before the first index: %v, want ErrCompacted", err)
	}
	if _, err := s.Term(48); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("term long before the first index: %v, want ErrCompacted", err)
	}
	// A later snapshot moves the first index on, never back.
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 95, Term: 1}, bytes.NewReader([]byte("state@95"))))
	if first, _ := s.FirstIndex(); first != 66 {
		t.Fatalf("first index %d after the second snapshot, want 66", first)
	}
	must(t, s.Close())
	s, _, err = Open(dir, snaps, nil, o)
	must(t, err)
	defer s.Close()
	if first, _ := s.FirstIndex(); first != 96 {
		t.Fatalf("first index after restart %d, want 96", first)
	}
}

// TestTermBeforeFirstAfterEarlySnapshot is the regression test of a
// leader's panic the chaos soak found ("storage Term(0) failed: entry 0
// is not in the WAL"): a first snapshot taken before CatchUpEntries
// entries existed keeps the whole log readable, and raft, probing a new
// member from the start, asks for the term of entry 0, which no WAL
// record holds. The same holds after a leader's snapshot replaced the
// log: the entry before first is the snapshot's, not the WAL's.
func TestTermBeforeFirstAfterEarlySnapshot(t *testing.T) {
	o := opts(0)
	o.CatchUpEntries = 500
	s, _, err := Open(filepath.Join(t.TempDir(), "wal"), &memSnaps{}, nil, o)
	must(t, err)
	defer s.Close()
	must(t, s.Save(pb.HardState{Term: 2, Commit: 300}, ents(1, 400, 2), true))
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 300, Term: 2}, bytes.NewReader(nil)))
	if first, _ := s.FirstIndex(); first != 1 {
		t.Fatalf("first index %d, want 1 (all kept for catching up)", first)
	}
	if term, err := s.Term(0); err != nil || term != 0 {
		t.Fatalf("term of entry 0 after an early snapshot: %d, %v; want 0", term, err)
	}
	must(t, s.ApplySnapshot(pb.SnapshotMetadata{Index: 600, Term: 5}, bytes.NewReader(nil)))
	must(t, s.Save(pb.HardState{Term: 5, Commit: 610}, ents(601, 611, 5), true))
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 610, Term: 5}, bytes.NewReader(nil)))
	if first, _ := s.FirstIndex(); first != 601 {
		t.Fatalf("first index %d, want 601", first)
	}
	if term, err := s.Term(600); err != nil || term != 5 {
		t.Fatalf("term of the replaced log's snapshot entry: %d, %v; want 5", term, err)
	}
	if _, err := s.Term(599); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("term before it: %v, want ErrCompacted", err)
	}
}

// TestCatchUpBytesBoundEntriesKept checks that CatchUpBytes bounds the
// entries a snapshot keeps behind it by their payload, before
// CatchUpEntries does: with large entries, a follower further behind gets
// the snapshot instead of a long replay.
func TestCatchUpBytesBoundEntriesKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	o := opts(0)
	o.CatchUpEntries, o.CatchUpBytes = 100, 10_000
	s, _, err := Open(dir, &memSnaps{}, nil, o)
	must(t, err)
	defer s.Close()
	var all []pb.Entry
	for i := uint64(1); i <= 200; i++ {
		all = append(all, pb.Entry{Index: i, Term: 1, Data: make([]byte, 1000)})
	}
	must(t, s.Save(pb.HardState{Term: 1, Commit: 200}, all, true))
	must(t, s.CreateSnapshot(pb.SnapshotMetadata{Index: 150, Term: 1}, bytes.NewReader(nil)))
	// Ten entries of 1000 bytes fit in 10,000: 141..150 stay.
	if first, _ := s.FirstIndex(); first != 141 {
		t.Fatalf("first index %d after a snapshot at 150 keeping 10,000 bytes of 1000-byte entries; want 141", first)
	}
	if _, err := s.Entries(140, 150, ^uint64(0)); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("entries beyond the bytes kept: %v, want ErrCompacted", err)
	}
	checkRange(t, s, 141, 201, all[140:])
}

package wal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synod-db/synod/diskfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOpts() Options { return Options{SegmentSize: 4096, Logger: quiet()} }

func mustT(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// entries returns entries [lo, hi) of term with recognisable data.
func entries(lo, hi, term uint64) []pb.Entry {
	var ents []pb.Entry
	for i := lo; i < hi; i++ {
		ents = append(ents, pb.Entry{Index: i, Term: term, Data: []byte(fmt.Sprintf("entry-%d-term-%d", i, term))})
	}
	return ents
}

func checkEntries(t testing.TB, got, want []pb.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replayed %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Index != want[i].Index || got[i].Term != want[i].Term || string(got[i].Data) != string(want[i].Data) {
			t.Fatalf("entry %d: got %d/%d %q, want %d/%d %q", i, got[i].Index, got[i].Term, got[i].Data, want[i].Index, want[i].Term, want[i].Data)
		}
	}
}

// TestRoundTrip checks that metadata, hard state and entries saved across
// many segment rolls are replayed exactly.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, []byte("cluster=1 member=2"), testOpts())
	mustT(t, err)
	var want []pb.Entry
	for i := uint64(1); i <= 500; i += 10 {
		ents := entries(i, i+10, 1)
		want = append(want, ents...)
		mustT(t, w.Save(pb.HardState{Term: 1, Vote: 2, Commit: i}, ents, i%20 == 1))
	}
	segs := len(w.Segments())
	mustT(t, w.Close())
	if segs < 5 {
		t.Fatalf("only %d segments for 500 entries with 4 KiB segments", segs)
	}
	w, rp, err := Open(dir, Marker{}, testOpts())
	mustT(t, err)
	defer w.Close()
	if string(rp.Metadata) != "cluster=1 member=2" || rp.HardState != (pb.HardState{Term: 1, Vote: 2, Commit: 491}) {
		t.Fatalf("replayed metadata %q hard state %+v", rp.Metadata, rp.HardState)
	}
	checkEntries(t, rp.Entries, want)
}

// TestReplayFromMarkerAndOverwrites checks replay from a snapshot marker
// and that a later write of an index replaces it and what followed.
func TestReplayFromMarkerAndOverwrites(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil, testOpts())
	mustT(t, err)
	mustT(t, w.Save(pb.HardState{Term: 1}, entries(1, 101, 1), true))
	mustT(t, w.SaveSnapshot(Marker{Index: 50, Term: 1}))
	// A new leader of term 2 overwrote from 80 on.
	mustT(t, w.Save(pb.HardState{Term: 2}, entries(80, 120, 2), true))
	mustT(t, w.Close())
	w, rp, err := Open(dir, Marker{Index: 50, Term: 1}, testOpts())
	mustT(t, err)
	defer w.Close()
	checkEntries(t, rp.Entries, append(entries(51, 80, 1), entries(80, 120, 2)...))
	if _, _, err := Open(dir, Marker{Index: 60, Term: 1}, testOpts()); !errors.Is(err, diskfs.ErrLocked) {
		t.Fatalf("second open of a locked WAL: %v, want ErrLocked", err)
	}
}

// TestOpenUnknownMarker checks that a marker not in the WAL is an error.
func TestOpenUnknownMarker(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil, testOpts())
	mustT(t, err)
	mustT(t, w.Save(pb.HardState{Term: 1}, entries(1, 10, 1), true))
	mustT(t, w.Close())
	if _, _, err := Open(dir, Marker{Index: 5, Term: 1}, testOpts()); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("open at an unsaved marker: %v, want ErrSnapshotNotFound", err)
	}
	if _, _, err := Open(t.TempDir(), Marker{}, testOpts()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open of an empty dir: %v, want ErrNotFound", err)
	}
	if _, err := Create(dir, nil, testOpts()); !errors.Is(err, ErrExists) {
		t.Fatalf("create over a WAL: %v, want ErrExists", err)
	}
}

// lastSegment returns the path of the newest segment file.
func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	segs, err := listSegments(diskfs.Default, dir)
	mustT(t, err)
	return filepath.Join(dir, segs[len(segs)-1].name)
}

// TestTornTailRepaired cuts the last segment at every offset past its head
// and checks that reopening keeps exactly the complete records before the
// cut and that the WAL accepts new writes after it.
func TestTornTailRepaired(t *testing.T) {
	src := t.TempDir()
	w, err := Create(src, nil, Options{SegmentSize: 1 << 20, Logger: quiet()})
	mustT(t, err)
	for i := uint64(1); i <= 20; i++ {
		mustT(t, w.Save(pb.HardState{Term: 1, Commit: i}, entries(i, i+1, 1), true))
	}
	mustT(t, w.Close())
	full, err := os.ReadFile(lastSegment(t, src))
	mustT(t, err)
	// Record boundaries, to know how many entries survive each cut.
	var ends []int
	for off, crc := 0, uint32(0); ; {
		seed := crc
		if off == 0 {
			seed, _ = peekCRCRecord(full)
		}
		_, _, size, c, _, err := decodeRecord(full[off:], seed)
		if err != nil {
			break
		}
		off += size
		crc = c
		ends = append(ends, off)
	}
	headEnd := ends[2] // crc, metadata, snapshot marker
	for cut := headEnd; cut < len(full); cut += 7 {
		dir := t.TempDir()
		name := filepath.Join(dir, filepath.Base(lastSegment(t, src)))
		// The cut part is replaced by zeros, as a preallocated file would be.
		torn := append(append([]byte(nil), full[:cut]...), make([]byte, 64)...)
		mustT(t, os.WriteFile(name, torn, 0o600))
		w, rp, err := Open(dir, Marker{}, testOpts())
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		complete := 0
		for _, e := range ends {
			if e <= cut {
				complete++
			}
		}
		// Each Save wrote an entry record then a state record.
		wantEntries := (complete - 3 + 1) / 2
		if len(rp.Entries) != wantEntries {
			t.Fatalf("cut at %d: replayed %d entries, want %d", cut, len(rp.Entries), wantEntries)
		}
		next := uint64(wantEntries + 1)
		mustT(t, w.Save(pb.HardState{Term: 1, Commit: next}, entries(next, next+1, 1), true))
		mustT(t, w.Close())
		w, rp, err = Open(dir, Marker{}, testOpts())
		mustT(t, err)
		checkEntries(t, rp.Entries, entries(1, next+1, 1))
		mustT(t, w.Close())
	}
}

// TestCorruptionIsAnError flips a byte in records before the tail and
// checks that Open fails with ErrCorrupt naming the file and offset,
// instead of returning wrong data.
func TestCorruptionIsAnError(t *testing.T) {
	src := t.TempDir()
	w, err := Create(src, nil, Options{SegmentSize: 1 << 20, Logger: quiet()})
	mustT(t, err)
	mustT(t, w.Save(pb.HardState{Term: 1, Commit: 30}, entries(1, 31, 1), true))
	mustT(t, w.Close())
	full, err := os.ReadFile(lastSegment(t, src))
	mustT(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	// Every offset except the last record's, whose damage is
	// indistinguishable from a torn write.
	lastRecord := len(full) - 40
	for off := 0; off < lastRecord; off++ {
		dir := t.TempDir()
		name := filepath.Join(dir, filepath.Base(lastSegment(t, src)))
		bad := append([]byte(nil), full...)
		bad[off] ^= byte(1 + rng.IntN(255))
		mustT(t, os.WriteFile(name, bad, 0o600))
		w, _, err := Open(dir, Marker{}, testOpts())
		if err == nil {
			w.Close()
			t.Fatalf("flipped byte at %d: open succeeded", off)
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(name)) || !strings.Contains(err.Error(), "offset") {
			t.Fatalf("flipped byte at %d: %v, want ErrCorrupt naming file and offset", off, err)
		}
	}
}

// TestMissingSegmentIsAnError removes a middle segment.
func TestMissingSegmentIsAnError(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil, testOpts())
	mustT(t, err)
	saveInBatches(t, w, 300)
	segs := w.Segments()
	mustT(t, w.Close())
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(segs))
	}
	mustT(t, os.Remove(filepath.Join(dir, segs[1])))
	if _, _, err := Open(dir, Marker{}, testOpts()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("open with a missing segment: %v, want ErrCorrupt about a missing segment", err)
	}
}

// TestSegmentsFromAnotherMemberRefused swaps in a segment whose chain does
// not continue the previous one.
func TestSegmentsFromAnotherMemberRefused(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		w, err := Create(dir, []byte(dir), testOpts())
		mustT(t, err)
		saveInBatches(t, w, 300)
		mustT(t, w.Close())
	}
	segs, err := listSegments(diskfs.Default, a)
	mustT(t, err)
	other, err := os.ReadFile(filepath.Join(b, segs[1].name))
	mustT(t, err)
	mustT(t, os.WriteFile(filepath.Join(a, segs[1].name), other, 0o600))
	if _, _, err := Open(a, Marker{}, testOpts()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a foreign segment: %v, want ErrCorrupt", err)
	}
}

// TestGroupCommit checks that concurrent synced Saves are all durable and
// share fsyncs.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil, Options{Logger: quiet()})
	mustT(t, err)
	var wg sync.WaitGroup
	const writers, each = 8, 50
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := w.Save(pb.HardState{}, []pb.Entry{{Index: 1, Term: 1, Data: []byte("x")}}, true); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	mustT(t, w.Close())
}

// TestPurgeKeepsSegmentsAfterSnapshot checks the background purge: only
// segments wholly before the snapshot go, and MaxSegments are kept.
func TestPurgeKeepsSegmentsAfterSnapshot(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4096, MaxSegments: 2, Logger: quiet()}
	w, err := Create(dir, nil, opts)
	mustT(t, err)
	saveInBatches(t, w, 400)
	before := len(w.Segments())
	mustT(t, w.SaveSnapshot(Marker{Index: 390, Term: 1}))
	if got := len(w.Segments()); got != before {
		t.Fatalf("segments purged before ReleaseTo: %d, was %d", got, before)
	}
	w.ReleaseTo(390)
	// The purge runs in the background; wait (bounded) for it.
	for i := 0; i < 2000 && len(w.Segments()) == before; i++ {
		time.Sleep(time.Millisecond)
	}
	mustT(t, w.Close())
	segs, err := listSegments(diskfs.Default, dir)
	mustT(t, err)
	if len(segs) >= before || len(segs) < 2 {
		t.Fatalf("%d segments before the purge, %d after; want fewer but at least 2", before, len(segs))
	}
	w, rp, err := Open(dir, Marker{Index: 390, Term: 1}, opts)
	mustT(t, err)
	defer w.Close()
	checkEntries(t, rp.Entries, entries(391, 401, 1))
}

// TestReadEntries checks reading entries back from the segment files,
// across segments and overwrites, with a size limit.
func TestReadEntries(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil, testOpts())
	mustT(t, err)
	defer w.Close()
	for i := uint64(1); i < 200; i += 10 {
		mustT(t, w.Save(pb.HardState{Term: 1}, entries(i, i+10, 1), false))
	}
	mustT(t, w.Save(pb.HardState{Term: 2}, entries(150, 160, 2), true))
	got, err := w.ReadEntries(100, 160, ^uint64(0))
	mustT(t, err)
	checkEntries(t, got, append(entries(100, 150, 1), entries(150, 160, 2)...))
	got, err = w.ReadEntries(100, 160, 1)
	mustT(t, err)
	checkEntries(t, got, entries(100, 101, 1))
	if _, err := w.ReadEntries(170, 180, ^uint64(0)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("reading overwritten-away entries: %v, want ErrUnavailable", err)
	}
}

// TestSnapshotReplacingLog checks that a leader's snapshot marker drops the
// entries saved before it from the replay, while a local one keeps them;
// and that entries after a replacing marker are refused when replay
// starts from an older snapshot (whose file would then be missing).
func TestSnapshotReplacingLog(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil, testOpts())
	mustT(t, err)
	mustT(t, w.Save(pb.HardState{Term: 1}, entries(1, 50, 1), true))
	mustT(t, w.SaveSnapshot(Marker{Index: 20, Term: 1}))
	mustT(t, w.SaveSnapshot(Marker{Index: 100, Term: 3, ReplacesLog: true}))
	mustT(t, w.Save(pb.HardState{Term: 3}, entries(101, 110, 3), true))
	mustT(t, w.Close())
	w, rp, err := Open(dir, Marker{Index: 100, Term: 3}, testOpts())
	mustT(t, err)
	checkEntries(t, rp.Entries, entries(101, 110, 3))
	mustT(t, w.Close())
	if _, _, err := Open(dir, Marker{Index: 20, Term: 1}, testOpts()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("replay from before a replacing snapshot with entries after it: %v, want ErrCorrupt", err)
	}
}

// TestDataAfterEndOfRecords checks that bytes after a zero header are not
// silently ignored: cut (and logged) as a torn tail in the last segment,
// an error in an earlier one.
func TestDataAfterEndOfRecords(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil, testOpts())
	mustT(t, err)
	saveInBatches(t, w, 300)
	segs := w.Segments()
	mustT(t, w.Close())
	stray := append(make([]byte, 64), []byte("stray unsynced page")...)
	appendTo := func(name string) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0)
		mustT(t, err)
		_, err = f.Write(stray)
		mustT(t, err)
		mustT(t, f.Close())
	}
	appendTo(segs[len(segs)-1])
	w, rp, err := Open(dir, Marker{}, testOpts())
	mustT(t, err)
	if rp.Repaired != int64(len(stray)) {
		t.Fatalf("repaired %d bytes, want %d", rp.Repaired, len(stray))
	}
	checkEntries(t, rp.Entries, entries(1, 301, 1))
	mustT(t, w.Close())
	appendTo(segs[0])
	if _, _, err := Open(dir, Marker{}, testOpts()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("data after the records of an earlier segment: %v, want ErrCorrupt", err)
	}
}

// saveInBatches saves entries [1, n] of term 1 in synced batches of ten,
// so that small segments roll between them.
func saveInBatches(t testing.TB, w *WAL, n uint64) {
	t.Helper()
	for i := uint64(1); i < n; i += 10 {
		mustT(t, w.Save(pb.HardState{Term: 1}, entries(i, i+10, 1), true))
	}
}

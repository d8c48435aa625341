package snap

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// logBuf collects log output from several goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func open(t testing.TB, dir string, opts Options) *Snapshotter {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	s, err := New(dir, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMeta(term, index uint64) pb.SnapshotMetadata {
	return pb.SnapshotMetadata{
		Term:  term,
		Index: index,
		ConfState: pb.ConfState{
			Voters:         []uint64{1, 2, 3},
			Learners:       []uint64{4},
			VotersOutgoing: []uint64{1, 2, 5},
			LearnersNext:   []uint64{5},
			AutoLeave:      true,
		},
	}
}

// testData returns deterministic data that differs per index.
func testData(index uint64, n int) []byte {
	r := rand.New(rand.NewPCG(index, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testSnap(term, index uint64, n int) pb.Snapshot {
	return pb.Snapshot{Metadata: testMeta(term, index), Data: testData(index, n)}
}

func mustSave(t testing.TB, s *Snapshotter, sn pb.Snapshot) {
	t.Helper()
	if err := s.Save(sn); err != nil {
		t.Fatalf("Save(term %d, index %d): %v", sn.Metadata.Term, sn.Metadata.Index, err)
	}
}

func checkSnap(t testing.TB, got pb.Snapshot, want pb.Snapshot) {
	t.Helper()
	if !reflect.DeepEqual(got.Metadata, want.Metadata) {
		t.Fatalf("metadata = %+v, want %+v", got.Metadata, want.Metadata)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("data of snapshot term %d index %d differs: got %d bytes, want %d", want.Metadata.Term, want.Metadata.Index, len(got.Data), len(want.Data))
	}
}

// readAll reads r to the end and closes it.
func readAll(t testing.TB, r io.ReadCloser) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading snapshot data: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("closing snapshot reader: %v", err)
	}
	return b
}

func names(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range entries {
		ns = append(ns, e.Name())
	}
	return ns
}

func TestFileName(t *testing.T) {
	for _, c := range []struct{ term, index uint64 }{{0, 0}, {1, 2}, {0xdead, 0xbeef}, {^uint64(0), ^uint64(0)}} {
		name := FileName(c.term, c.index)
		if len(name) != nameLen {
			t.Errorf("FileName(%d, %d) = %q, length %d, want %d", c.term, c.index, name, len(name), nameLen)
		}
		term, index, ok := parseName(name)
		if !ok || term != c.term || index != c.index {
			t.Errorf("parseName(%q) = %d, %d, %v", name, term, index, ok)
		}
	}
	if got := FileName(0x12, 0xab); got != "0000000000000012-00000000000000ab.snap" {
		t.Errorf("FileName(0x12, 0xab) = %q", got)
	}
	for _, bad := range []string{
		"", "x.snap", "0000000000000012-00000000000000AB.snap", "0000000000000012_00000000000000ab.snap",
		"0000000000000012-00000000000000ab.snap.tmp", "0000000000000012-00000000000000ab.snap.broken",
		"000000000000012-000000000000000ab.snap", "0000000000000012-00000000000000ab.snaq", "+000000000000012-00000000000000ab.snap",
	} {
		if _, _, ok := parseName(bad); ok {
			t.Errorf("parseName(%q) accepted", bad)
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 1000, writeBufSize + 7, 3*readBufSize + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			want := testSnap(3, 100, n)
			mustSave(t, s, want)

			got, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			checkSnap(t, got, want)

			meta, r, err := s.LoadNewest()
			if err != nil {
				t.Fatal(err)
			}
			checkSnap(t, pb.Snapshot{Metadata: meta, Data: readAll(t, r)}, want)

			meta, r, err = s.LoadAt(3, 100)
			if err != nil {
				t.Fatal(err)
			}
			checkSnap(t, pb.Snapshot{Metadata: meta, Data: readAll(t, r)}, want)

			meta, r, err = ReadFile(filepath.Join(dir, FileName(3, 100)))
			if err != nil {
				t.Fatal(err)
			}
			checkSnap(t, pb.Snapshot{Metadata: meta, Data: readAll(t, r)}, want)

			if ns := names(t, dir); len(ns) != 1 || ns[0] != FileName(3, 100) {
				t.Fatalf("directory holds %q, want only %s", ns, FileName(3, 100))
			}
			st, err := os.Stat(filepath.Join(dir, FileName(3, 100)))
			if err != nil {
				t.Fatal(err)
			}
			hdr, _ := encodeHeader(want.Metadata)
			if wantSize := int64(len(hdr) + n + trailerLen); st.Size() != wantSize {
				t.Fatalf("file size %d, want %d", st.Size(), wantSize)
			}
		})
	}
}

func TestSaveEmptyConfState(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	want := pb.Snapshot{Metadata: pb.SnapshotMetadata{Term: 1, Index: 1}, Data: []byte("x")}
	mustSave(t, s, want)
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, want)
}

func TestSaveRejectsEmptySnapshot(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	if err := s.Save(pb.Snapshot{Data: []byte("x")}); err == nil {
		t.Fatal("saving a snapshot with index 0 succeeded")
	}
	if ns := names(t, dir); len(ns) != 0 {
		t.Fatalf("directory holds %q after a refused save", ns)
	}
}

func TestSaveReplacesSameName(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	mustSave(t, s, testSnap(2, 9, 100))
	want := pb.Snapshot{Metadata: testMeta(2, 9), Data: []byte("second")}
	mustSave(t, s, want)
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, want)
}

// failingReader returns n bytes and then an error.
type failingReader struct{ n int }

var errReader = errors.New("reader broke")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errReader
	}
	k := min(len(p), f.n)
	clear(p[:k])
	f.n -= k
	return k, nil
}

func TestSaveFromReaderErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	err := s.SaveFrom(testMeta(1, 5), &failingReader{n: 3 * writeBufSize})
	if !errors.Is(err, errReader) {
		t.Fatalf("SaveFrom error = %v, want one wrapping %v", err, errReader)
	}
	if !strings.Contains(err.Error(), FileName(1, 5)) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("error %q does not name the file and offset", err)
	}
	if ns := names(t, dir); len(ns) != 0 {
		t.Fatalf("directory holds %q after a failed save", ns)
	}
	if _, _, err := s.LoadNewest(); !errors.Is(err, ErrNoSnapshot) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadNewest after failed save: %v, want ErrNoSnapshot only", err)
	}
}

func TestLoadEmptyDir(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	_, _, err := s.LoadNewest()
	if !errors.Is(err, ErrNoSnapshot) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadNewest in an empty directory: %v, want ErrNoSnapshot", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q does not name the directory", err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Load: %v, want ErrNoSnapshot", err)
	}
	if _, _, err := s.LoadAt(1, 1); !errors.Is(err, ErrNoSnapshot) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadAt of a missing snapshot: %v, want ErrNoSnapshot and fs.ErrNotExist", err)
	}
}

func TestNewCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := open(t, dir, Options{})
	mustSave(t, s, testSnap(1, 1, 10))
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("directory not created: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(file, Options{}); err == nil {
		t.Fatal("New on a regular file succeeded")
	}
	if _, err := New("", Options{}); err == nil {
		t.Fatal("New with an empty directory name succeeded")
	}
}

func TestLoadNewestPicksNewest(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	// Saved out of order: the newest is chosen by (term, index), not by
	// the time of writing.
	snaps := []pb.Snapshot{testSnap(2, 20, 50), testSnap(3, 35, 60), testSnap(1, 10, 40), testSnap(3, 30, 70)}
	for _, sn := range snaps {
		mustSave(t, s, sn)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, snaps[1])

	files, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, fi := range files {
		listed = append(listed, fmt.Sprintf("%d/%d", fi.Term, fi.Index))
		if fi.Path != filepath.Join(dir, FileName(fi.Term, fi.Index)) {
			t.Errorf("FileInfo.Path = %s", fi.Path)
		}
	}
	if want := "3/35 3/30 2/20 1/10"; strings.Join(listed, " ") != want {
		t.Fatalf("List = %s, want %s", strings.Join(listed, " "), want)
	}

	// LoadAt reaches an older one.
	meta, r, err := s.LoadAt(2, 20)
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, pb.Snapshot{Metadata: meta, Data: readAll(t, r)}, snaps[0])
}

func TestTempAndOtherFilesIgnored(t *testing.T) {
	dir := t.TempDir()
	// A temporary file left by a crash before New: removed by New.
	stale := filepath.Join(dir, "0000000000000009-0000000000000099.123.snap.tmp")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	s := open(t, dir, Options{Logger: newLogger(&logs)})
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temporary file not removed by New: %v", err)
	}
	if !strings.Contains(logs.String(), "interrupted save") {
		t.Fatalf("removal of the stale temporary file not logged: %s", logs.String())
	}
	want := testSnap(1, 10, 100)
	mustSave(t, s, want)

	// Newer-looking files that are not snapshots: a temporary file of a
	// save in progress (even a complete one), a .broken file, a file whose
	// name does not parse and a directory with a snapshot name.
	good, err := os.ReadFile(filepath.Join(dir, FileName(1, 10)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"0000000000000009-0000000000000099.456.snap.tmp",
		FileName(9, 98) + brokenSuffix,
		"0000000000000009-00000000000000FF.snap",
		"junk.snap",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), good, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, FileName(9, 97)), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, want)
	if files, err := s.List(); err != nil || len(files) != 1 {
		t.Fatalf("List = %v, %v; want only the one snapshot", files, err)
	}
}

func TestPurgeKeepsNewest(t *testing.T) {
	for _, max := range []int{1, 3, DefaultMaxSnapshots, 0, -1} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			dir := t.TempDir()
			// A .broken file is never purged.
			broken := filepath.Join(dir, FileName(1, 1)+brokenSuffix)
			if err := os.WriteFile(broken, []byte("evidence"), 0o600); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir, Options{MaxSnapshots: max})
			const saves = 10
			for i := uint64(1); i <= saves; i++ {
				mustSave(t, s, testSnap(1+i/4, i*10, 20))
			}
			// Close finishes the purge the last Save requested.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			keep := max
			switch {
			case max == 0:
				keep = DefaultMaxSnapshots
			case max < 0:
				keep = saves
			}
			var want []string
			for i := uint64(saves - keep + 1); i <= saves; i++ {
				want = append(want, FileName(1+i/4, i*10))
			}
			want = append(want, filepath.Base(broken))
			got := names(t, dir)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("after %d saves with MaxSnapshots %d the directory holds\n%q\nwant\n%q", saves, max, got, want)
			}
			s2 := open(t, dir, Options{MaxSnapshots: max})
			got2, err := s2.Load()
			if err != nil {
				t.Fatal(err)
			}
			checkSnap(t, got2, testSnap(1+saves/4, saves*10, 20))
		})
	}
}

func TestPurgeRunsInBackground(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxSnapshots: 2})
	for i := uint64(1); i <= 5; i++ {
		mustSave(t, s, testSnap(1, i, 10))
	}
	// Without Close, the purge still happens soon.
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 2 && files[0].Index == 5 && files[1].Index == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("purge did not run: %v", files)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewDoesNotPurge(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	for i := uint64(1); i <= 4; i++ {
		mustSave(t, s, testSnap(1, i, 10))
	}
	s.Close()
	s2 := open(t, dir, Options{MaxSnapshots: 1})
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(names(t, dir)); n != 4 {
		t.Fatalf("New with MaxSnapshots 1 left %d of 4 files; it must not purge before a save", n)
	}
}

func TestCloseIdempotent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxSnapshots: 2})
	mustSave(t, s, testSnap(1, 1, 10))
	_, r, err := s.LoadNewest()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	if err := s.Save(testSnap(1, 2, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.LoadNewest(); !errors.Is(err, ErrClosed) {
		t.Fatalf("LoadNewest after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close: %v, want ErrClosed", err)
	}
	if _, _, err := s.LoadAt(1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("LoadAt after Close: %v, want ErrClosed", err)
	}
	if _, err := s.List(); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close: %v, want ErrClosed", err)
	}
	// A reader from before Close still works.
	if got := readAll(t, r); !bytes.Equal(got, testData(1, 10)) {
		t.Fatal("reader returned before Close read wrong data")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second reader Close: %v", err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after reader Close: %v, want os.ErrClosed", err)
	}
}

// snapGoroutines returns the stacks of goroutines running code of this
// package, other than tests.
func snapGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// A goroutine started but not yet scheduled shows only the
		// wrapper the compiler made for its go statement (snap.New.gowrap1).
		if strings.Contains(g, "synod/snap.(*Snapshotter)") || strings.Contains(g, "synod/snap.New.gowrap") {
			found = append(found, g)
		}
	}
	return found
}

// waitNoSnapGoroutines fails unless this package's goroutines are gone.
// Close waits for them, but a goroutine may still be unwinding its
// deferred Done for a moment, so it polls briefly.
func waitNoSnapGoroutines(t *testing.T, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for g := snapGoroutines(); len(g) != 0; g = snapGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left %s:\n%s", when, strings.Join(g, "\n\n"))
		}
		runtime.Gosched()
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	waitNoSnapGoroutines(t, "before the test")
	for _, max := range []int{0, 1, 5} {
		s, err := New(t.TempDir(), Options{MaxSnapshots: max, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(1); i <= 3; i++ {
			mustSave(t, s, testSnap(1, i, 10))
		}
		if max > 0 && len(snapGoroutines()) == 0 {
			t.Fatal("no purge goroutine found while open; the leak check would not notice one")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		waitNoSnapGoroutines(t, fmt.Sprintf("after Close (MaxSnapshots %d)", max))
	}
}

// patternReader generates n bytes of a fixed pattern without allocating,
// standing in for an application streaming a large snapshot.
type patternReader struct {
	block []byte
	off   int64
	n     int64
	crc   uint32
}

// patternBlock is the period of the pattern: a prime length, so that it
// does not line up with any buffer size and a misplaced chunk changes the
// checksum. It is made once so that benchmarks count only the snapshotter.
var patternBlock = sync.OnceValue(func() []byte { return testData(7, 65521) })

func newPatternReader(n int64) *patternReader {
	return &patternReader{block: patternBlock(), n: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	for done := 0; done < len(b); {
		done += copy(b[done:], p.block[(p.off+int64(done))%int64(len(p.block)):])
	}
	p.crc = crc32.Update(p.crc, castagnoli, b)
	p.off += int64(len(b))
	return len(b), nil
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

func TestLargeStreamedBoundedMemory(t *testing.T) {
	const size = 64 << 20
	// Saving and loading must not hold the data in memory: allow a few
	// buffers, far below the data size.
	const budget = 4 << 20
	dir := t.TempDir()
	s := open(t, dir, Options{MaxSnapshots: 1})
	meta := testMeta(5, 12345)

	src := newPatternReader(size)
	before := totalAlloc()
	if err := s.SaveFrom(meta, src); err != nil {
		t.Fatal(err)
	}
	saveAlloc := totalAlloc() - before
	if src.off != size {
		t.Fatalf("SaveFrom consumed %d bytes, want %d", src.off, size)
	}

	before = totalAlloc()
	gotMeta, r, err := s.LoadNewest()
	if err != nil {
		t.Fatal(err)
	}
	cw := &crcWriter{w: io.Discard}
	if _, err := io.Copy(cw, r); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	loadAlloc := totalAlloc() - before
	t.Logf("allocated %d KiB to save and %d KiB to load %d MiB", saveAlloc>>10, loadAlloc>>10, size>>20)

	if !reflect.DeepEqual(gotMeta, meta) {
		t.Fatalf("metadata = %+v, want %+v", gotMeta, meta)
	}
	if cw.n != size || cw.crc != src.crc {
		t.Fatalf("loaded %d bytes with CRC %#x, want %d with %#x", cw.n, cw.crc, size, src.crc)
	}
	if saveAlloc > budget {
		t.Errorf("saving %d MiB allocated %d KiB, over the budget of %d KiB", size>>20, saveAlloc>>10, budget>>10)
	}
	if loadAlloc > budget {
		t.Errorf("loading %d MiB allocated %d KiB, over the budget of %d KiB", size>>20, loadAlloc>>10, budget>>10)
	}
}

func TestConcurrentSaveLoad(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxSnapshots: 2})
	var next atomic.Uint64
	var saving sync.WaitGroup
	var done atomic.Bool
	dataFor := func(index uint64) []byte { return testData(index, 1000+int(index%7)*3000) }
	for range 3 {
		saving.Go(func() {
			for range 15 {
				i := next.Add(1)
				if err := s.Save(pb.Snapshot{Metadata: testMeta(1, i), Data: dataFor(i)}); err != nil {
					t.Errorf("Save %d: %v", i, err)
					return
				}
			}
		})
	}
	var loading sync.WaitGroup
	var loads atomic.Int64
	for range 3 {
		loading.Go(func() {
			for !done.Load() {
				meta, r, err := s.LoadNewest()
				if errors.Is(err, ErrNoSnapshot) && !errors.Is(err, ErrCorrupt) {
					continue
				}
				if err != nil {
					t.Errorf("LoadNewest: %v", err)
					return
				}
				b, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					t.Errorf("reading snapshot %d: %v", meta.Index, err)
					return
				}
				if !bytes.Equal(b, dataFor(meta.Index)) {
					t.Errorf("snapshot %d holds the wrong data", meta.Index)
					return
				}
				if _, err := s.List(); err != nil {
					t.Errorf("List: %v", err)
					return
				}
				loads.Add(1)
			}
		})
	}
	saving.Wait()
	done.Store(true)
	loading.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d loads during 45 saves", loads.Load())
	for _, n := range names(t, dir) {
		if !strings.HasSuffix(n, snapSuffix) {
			t.Errorf("unexpected file %s after concurrent use", n)
		}
	}
	s2 := open(t, dir, Options{})
	got, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata.Index != 45 {
		t.Fatalf("newest snapshot after 45 saves has index %d", got.Metadata.Index)
	}
	if files, _ := s2.List(); len(files) != 2 {
		t.Fatalf("%d files left, want MaxSnapshots = 2", len(files))
	}
}

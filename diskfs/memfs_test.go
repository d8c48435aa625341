package diskfs

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func exists(fs *MemFS, name string) bool {
	_, err := fs.Stat(name)
	return err == nil
}

func contents(t testing.TB, fs *MemFS, name string) string {
	t.Helper()
	data, err := fs.ReadFile(name)
	must(t, err)
	return string(data)
}

// TestMemFSModel checks the simulated disk itself: what a crash keeps of
// synced and unsynced writes and directory operations, and the lock.
func TestMemFSModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	fs := NewMemFS(rng)
	must(t, fs.MkdirAll("/d", 0o700))
	f, err := fs.Create("/d/a", vfs.WriteCategoryUnspecified)
	must(t, err)
	_, err = f.Write([]byte("synced"))
	must(t, err)
	must(t, f.Sync())
	must(t, SyncDir(fs, "/d"))
	_, err = f.Write([]byte("-unsynced"))
	must(t, err)
	g, err := fs.Create("/d/b", vfs.WriteCategoryUnspecified)
	must(t, err)
	_, err = g.Write([]byte("never synced"))
	must(t, err)
	must(t, g.Sync())
	fs.KeepDirOps(0)
	seen := map[string]bool{}
	for range 200 {
		img := fs.Crash(rng)
		if exists(img, "/d/b") {
			t.Fatal("a creation survived a crash without SyncDir")
		}
		a := contents(t, img, "/d/a")
		full := "synced-unsynced"
		if !strings.HasPrefix(a, "synced") || (!strings.HasPrefix(full, a) && strings.Trim(a[len(strings.TrimRight(a, "\x00")):], "\x00") != "") {
			t.Fatalf("crash left %q, want synced data then a prefix of the rest, then zeros", a)
		}
		seen[a] = true
	}
	if !seen["synced"] || !seen["synced-unsynced"] || len(seen) < 5 {
		t.Fatalf("crashes left only %q; want torn writes at many points", slices.Sorted(maps.Keys(seen)))
	}
	fs.KeepDirOps(1)
	if !exists(fs.Crash(rng), "/d/b") {
		t.Fatal("a kept creation did not survive")
	}
	must(t, SyncDir(fs, "/d"))
	must(t, fs.Remove("/d/b"))
	fs.KeepDirOps(0)
	if img := fs.Crash(rng); !exists(img, "/d/b") || contents(t, img, "/d/b") != "never synced" {
		t.Fatal("an unsynced removal took effect")
	}

	l, err := fs.Lock("/d/LOCK")
	must(t, err)
	if _, err := fs.Lock("/d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	must(t, l.Close())
	l, err = fs.Lock("/d/LOCK")
	must(t, err)
	must(t, l.Close())

	fs.Arm(1)
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrPowerLost) {
		t.Fatalf("write at the armed crash: %v, want ErrPowerLost", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrPowerLost) {
		t.Fatalf("sync after the crash: %v, want ErrPowerLost", err)
	}
	if dead, img := fs.PowerLost(); !dead || img == nil {
		t.Fatal("armed crash left no image")
	}
}

// TestMemFSTree checks the operations Pebble and the snapshot directory
// need beyond the WAL's: nested directories, listing, links, reuse,
// truncation, and removal of a tree.
func TestMemFSTree(t *testing.T) {
	fs := NewMemFS(rand.New(rand.NewPCG(1, 1)))
	must(t, fs.MkdirAll("/m/kv", 0o700))
	must(t, fs.MkdirAll("/m/snap", 0o700))
	for _, name := range []string{"/m/kv/1.log", "/m/snap/a.snap"} {
		f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
		must(t, err)
		_, err = f.Write([]byte("0123456789"))
		must(t, err)
		must(t, f.Close())
	}
	got, err := List(fs, "/m")
	must(t, err)
	if want := []string{"kv", "snap"}; !slices.Equal(got, want) {
		t.Fatalf("List(/m) = %q, want %q", got, want)
	}
	if fi, err := fs.Stat("/m/kv"); err != nil || !fi.IsDir() {
		t.Fatalf("Stat(/m/kv) = %v, %v; want a directory", fi, err)
	}
	if err := fs.Remove("/m/kv"); err == nil {
		t.Fatal("removed a directory that is not empty")
	}

	must(t, fs.Link("/m/kv/1.log", "/m/kv/2.log"))
	if got := contents(t, fs, "/m/kv/2.log"); got != "0123456789" {
		t.Fatalf("link reads %q", got)
	}
	f, err := fs.ReuseForWrite("/m/kv/1.log", "/m/kv/3.log", vfs.WriteCategoryUnspecified)
	must(t, err)
	_, err = f.Write([]byte("ab"))
	must(t, err)
	must(t, f.Close())
	if exists(fs, "/m/kv/1.log") || contents(t, fs, "/m/kv/3.log") != "ab23456789" {
		t.Fatalf("ReuseForWrite: 1.log exists %v, 3.log reads %q; want it renamed and written over", exists(fs, "/m/kv/1.log"), contents(t, fs, "/m/kv/3.log"))
	}
	f, err = fs.OpenReadWrite("/m/kv/3.log", vfs.WriteCategoryUnspecified)
	must(t, err)
	_, err = f.WriteAt([]byte("Z"), 9)
	must(t, err)
	must(t, f.Close())
	must(t, fs.Truncate("/m/kv/3.log", 4))
	if got := contents(t, fs, "/m/kv/3.log"); got != "ab23" {
		t.Fatalf("after WriteAt and Truncate: %q, want ab23", got)
	}

	must(t, SyncDir(fs, "/m/snap"))
	must(t, fs.Rename("/m/snap", "/m/snap.old"))
	if exists(fs, "/m/snap/a.snap") || contents(t, fs, "/m/snap.old/a.snap") != "0123456789" {
		t.Fatal("renaming a directory did not move its files")
	}
	if img := fs.Crash(rand.New(rand.NewPCG(3, 3))); !exists(img, "/m/snap.old/a.snap") {
		t.Fatal("a synced file of a renamed directory was lost in a crash")
	}
	must(t, fs.RemoveAll("/m/kv"))
	if got, err := List(fs, "/m"); err != nil || !slices.Equal(got, []string{"snap.old"}) {
		t.Fatalf("after RemoveAll: %q, %v", got, err)
	}
	if img := fs.Crash(rand.New(rand.NewPCG(2, 2))); exists(img, "/m/kv") || exists(img, "/m/kv/2.log") {
		t.Fatal("a removed tree came back after a crash")
	}
	if _, err := fs.Open("/m/kv/2.log"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open of a removed file: %v, want ErrNotExist", err)
	}
}

// TestPebbleOnMemFS runs the key-space engine on the power-loss model:
// every write Pebble acknowledged as synced survives a crash at any
// moment, and Pebble reopens whatever the crash left. This is what lets a
// member's key space and raft log share one crashable disk.
func TestPebbleOnMemFS(t *testing.T) {
	seed := uint64(1)
	rng := rand.New(rand.NewPCG(seed, 9))
	fs := NewMemFS(rand.New(rand.NewPCG(seed, 10)))
	opts := &pebble.Options{FS: fs, MemTableSize: 256 << 10, Logger: quietLogger{}}
	db, err := pebble.Open("/kv", opts)
	must(t, err)
	synced := 0
	for round := 0; round < 8; round++ {
		for i := 0; i < 300; i++ {
			k := fmt.Appendf(nil, "k%05d", synced)
			must(t, db.Set(k, bytes.Repeat(k, 20), pebble.Sync))
			synced++
			// Unsynced writes after it may be lost; they never hide it.
			must(t, db.Set([]byte("unsynced"), k, pebble.NoSync))
		}
		img := fs.Crash(rng)
		reopened, err := pebble.Open("/kv", &pebble.Options{FS: img, Logger: quietLogger{}})
		if err != nil {
			t.Fatalf("seed %d round %d: reopening after a crash: %v", seed, round, err)
		}
		for i := 0; i < synced; i++ {
			k := fmt.Appendf(nil, "k%05d", i)
			v, closer, err := reopened.Get(k)
			if err != nil {
				t.Fatalf("seed %d round %d: synced key %s lost after a crash: %v", seed, round, k, err)
			}
			if !bytes.Equal(v, bytes.Repeat(k, 20)) {
				t.Fatalf("seed %d round %d: key %s reads %q", seed, round, k, v)
			}
			closer.Close()
		}
		must(t, reopened.Close())
	}
	must(t, db.Close())
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// TestDefaultLock checks that the operating system's lock conflicts
// within one process as well as across processes, and says what to do.
func TestDefaultLock(t *testing.T) {
	name := filepath.Join(t.TempDir(), "LOCK")
	l, err := Default.Lock(name)
	must(t, err)
	_, err = Default.Lock(name)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "stop the other synod") {
		t.Fatalf("second lock: %v, want ErrLocked saying what to do", err)
	}
	must(t, l.Close())
	l, err = Default.Lock(name)
	must(t, err)
	must(t, l.Close())
}

// TestPowerOffDirs checks a power loss limited to some directories: their
// changes fail from then on, the others go on, and neither reaches the
// image taken at the power loss.
func TestPowerOffDirs(t *testing.T) {
	fs := NewMemFS(rand.New(rand.NewPCG(3, 3)))
	must(t, fs.MkdirAll("/m/wal", 0o700))
	must(t, fs.MkdirAll("/m/kv", 0o700))
	w, err := fs.Create("/m/wal/0.wal", vfs.WriteCategoryUnspecified)
	must(t, err)
	k, err := fs.Create("/m/kv/1.log", vfs.WriteCategoryUnspecified)
	must(t, err)
	for _, d := range []string{"/m", "/m/wal", "/m/kv"} {
		must(t, SyncDir(fs, d))
	}
	img := fs.PowerOff(rand.New(rand.NewPCG(3, 4)), "/m/wal")
	if _, err := w.Write([]byte("after")); !errors.Is(err, ErrPowerLost) {
		t.Fatalf("write to the raft log after the power loss: %v, want ErrPowerLost", err)
	}
	if _, err := fs.Create("/m/wal/1.wal", vfs.WriteCategoryUnspecified); !errors.Is(err, ErrPowerLost) {
		t.Fatalf("create in the raft log's directory after the power loss: %v, want ErrPowerLost", err)
	}
	_, err = k.Write([]byte("after"))
	must(t, err)
	must(t, k.Sync())
	if got := contents(t, img, "/m/kv/1.log"); got != "" {
		t.Fatalf("a write after the power loss reached its image: %q", got)
	}
}

// TestNoSync: through NoSync, a written and synced file (and its synced
// directory) is not durable: a crash loses it, where the same steps on
// the file system itself keep it.
func TestNoSync(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		mem := NewMemFS(rand.New(rand.NewPCG(5, 5)))
		var fs FS = mem
		if unsafe {
			fs = NoSync(mem)
		}
		must(t, fs.MkdirAll("/m", 0o700))
		must(t, SyncDir(fs, "/"))
		f, err := fs.Create("/m/log", vfs.WriteCategoryUnspecified)
		must(t, err)
		_, err = f.Write([]byte("acknowledged"))
		must(t, err)
		must(t, f.Sync())
		must(t, f.SyncData())
		must(t, SyncDir(fs, "/m"))
		img := mem.Crash(rand.New(rand.NewPCG(5, 6)))
		data, err := img.ReadFile("/m/log")
		if kept := err == nil && string(data) == "acknowledged"; kept == unsafe {
			t.Errorf("NoSync %v: after a crash the file holds %q (%v)", unsafe, data, err)
		}
	}
}

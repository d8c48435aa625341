package chaos

import (
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDiskPowerLoss checks the in-process members' disk: a power loss
// keeps synced writes on both file systems and drops unsynced ones (with
// no unsynced data kept, as some seeds choose).
func TestDiskPowerLoss(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	d := newDisk(rng)
	fs := d.Disks()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fs.WAL.MkdirAll("/w", 0o700))
	wf, err := fs.WAL.OpenFile("/w/a.wal", os.O_CREATE|os.O_RDWR, 0o600)
	must(err)
	_, err = wf.Write([]byte("synced"))
	must(err)
	must(wf.Sync())
	must(fs.WAL.SyncDir("/w"))
	_, err = wf.Write([]byte("+lost"))
	must(err)

	must(fs.KV.MkdirAll("/k", 0o700))
	kf, err := fs.KV.Create("/k/a.sst", vfs.WriteCategoryUnspecified)
	must(err)
	_, err = kf.Write([]byte("synced"))
	must(err)
	must(kf.Sync())
	for _, name := range []string{"/", "/k"} {
		dir, err := fs.KV.OpenDir(name)
		must(err)
		must(dir.Sync())
	}
	_, err = kf.Write([]byte("+lost"))
	must(err)

	var walSeen, kvSeen = map[string]bool{}, map[string]bool{}
	for range 50 {
		img := d.PowerLoss(rng).Disks()
		f, err := img.WAL.OpenFile("/w/a.wal", os.O_RDONLY, 0)
		must(err)
		b, err := io.ReadAll(f)
		must(err)
		walSeen[string(b)] = true
		g, err := img.KV.Open("/k/a.sst")
		must(err)
		b, err = io.ReadAll(g)
		must(err)
		kvSeen[string(b)] = true
	}
	for name, seen := range map[string]map[string]bool{"WAL": walSeen, "key space": kvSeen} {
		if !seen["synced"] {
			t.Errorf("%s: no power loss dropped the unsynced write; saw %v", name, seen)
		}
		for s := range seen {
			if len(s) < len("synced") || s[:6] != "synced" {
				t.Errorf("%s: a power loss lost synced data: %q", name, s)
			}
		}
	}
}

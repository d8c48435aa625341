package compat

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMaintenance checks snapshot save, defrag, alarm list/disarm and
// etcdctl version.
func TestMaintenance(t *testing.T) {
	c := newCluster(t, 3)
	for i := range 10 {
		c.must(nil, "put", fmt.Sprintf("m/%02d", i), strings.Repeat("x", 100*i))
	}
	dir := t.TempDir()

	t.Run("SnapshotSave", func(t *testing.T) {
		c := c.on(t)
		for i, ep := range c.endpoints() {
			path := filepath.Join(dir, fmt.Sprintf("backup-%d.db", i))
			out := c.must(one(ep), "snapshot", "save", path)
			if !strings.HasPrefix(out, "Snapshot saved at "+path+"\n") {
				t.Fatalf("snapshot save: stdout %q", out)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path + ".part"); !os.IsNotExist(err) {
				t.Errorf("snapshot save left %s.part behind (%v)", path, err)
			}
			// etcdctl checked the size leaves room for a trailing SHA-256;
			// check the digest itself.
			if len(b) <= sha256.Size {
				t.Fatalf("snapshot from %s: %d bytes", ep, len(b))
			}
			body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
			if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
				t.Fatalf("snapshot from %s: the trailing SHA-256 does not match the %d bytes before it", ep, len(body))
			}
		}
	})

	t.Run("Defrag", func(t *testing.T) {
		c := c.on(t)
		out := c.must(one(c.endpoints()[0]), "defrag", "--cluster")
		for _, ep := range c.endpoints() {
			if !strings.Contains(out, "Finished defragmenting etcd member["+ep+"]. took ") {
				t.Errorf("defrag --cluster did not report %s:\n%s", ep, out)
			}
		}
		out = c.must(nil, "defrag")
		if n := strings.Count(out, "Finished defragmenting etcd member["); n != 3 {
			t.Errorf("defrag of 3 endpoints reported %d:\n%s", n, out)
		}
		// The data is intact and the members are healthy.
		c.mustEqual(nil, strings.Repeat("x", 900)+"\n", "get", "m/09", "--print-value-only")
		r := c.getJSON(nil, "m/", "--prefix", "--keys-only")
		if len(r.Kvs) != 10 {
			t.Fatalf("after defrag: %d keys, want 10", len(r.Kvs))
		}
		c.waitHealthy(c.endpoints())
		st, err := c.statuses(c.endpoints())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Status.DBSize <= 0 {
				t.Errorf("after defrag: %s reports db size %d", s.Endpoint, s.Status.DBSize)
			}
		}
	})

	t.Run("Alarm", func(t *testing.T) {
		c := c.on(t)
		c.mustEqual(nil, "", "alarm", "list")
		c.mustEqual(nil, "", "alarm", "disarm")
		c.mustEqual(nil, "", "alarm", "list")
	})

	t.Run("Version", func(t *testing.T) {
		// Server-independent: the etcdctl the tool directive pins.
		r := runCtl(t, "", "version")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "etcdctl version: 3.7.3\nAPI version: 3.7\n") {
			t.Fatalf("etcdctl version:\n%v", r)
		}
	})
}

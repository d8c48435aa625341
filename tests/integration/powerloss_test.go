package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPowerLossAtSnapshot cuts the power of a member at each step of
// saving and purging its raft snapshots: the snapshot files live on the
// same power-loss model (diskfs.MemFS) as its raft log and key space, so
// the crash leaves all three as one instant would. Restarted on what is
// left, the member must hold every write it acknowledged.
func TestPowerLossAtSnapshot(t *testing.T) {
	t.Parallel()
	snapFile := func(name string) bool { return filepath.Base(filepath.Dir(name)) == "snap" }
	points := []struct {
		name string
		at   func(op, name string) bool
	}{
		{"create temporary file", func(op, name string) bool { return op == "create" && snapFile(name) }},
		{"write", func(op, name string) bool { return op == "write" && snapFile(name) }},
		{"sync file", func(op, name string) bool { return op == "sync" && snapFile(name) }},
		{"rename into place", func(op, name string) bool { return op == "rename" && snapFile(name) }},
		{"sync directory", func(op, name string) bool { return op == "syncdir" && filepath.Base(name) == "snap" }},
		{"purge old snapshot", func(op, name string) bool {
			return op == "remove" && snapFile(name) && strings.HasSuffix(name, ".snap")
		}},
	}
	for i, p := range points {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			seed := uint64(framework.Seed(t, "powerloss", int64(i+1)))
			disk := diskfs.NewMemFS(rand.New(rand.NewPCG(seed, 1)))
			c := framework.NewCluster(t, 1, func(cfg *server.Config) {
				cfg.FS = disk
				cfg.SnapshotCount = 20
				cfg.SnapshotCatchUpEntries = 5
				cfg.MaxSnapshots = 2
			})
			// Skip the first matches, so that older snapshots exist.
			skip := 2 + int(seed%3)
			disk.CrashIf(func(op, name string) bool {
				if !p.at(op, name) {
					return false
				}
				skip--
				return skip < 0
			})
			cli := c.Client()
			acked := 0
			for ; acked < 2000; acked++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := cli.Put(ctx, fmt.Sprintf("k%04d", acked), fmt.Sprintf("v%d", acked))
				cancel()
				if err != nil {
					break
				}
			}
			dead, img := disk.PowerLost()
			if !dead {
				t.Fatalf("seed %d: %d puts acknowledged and the power never failed at %s", seed, acked, p.name)
			}
			t.Logf("power lost at %s (%s) after %d acknowledged puts", p.name, disk.CrashOp(), acked)
			c.Stop(0)
			disk = img
			c.Restart(0)
			c.WaitLeader()
			cli = c.Client()
			ctx := framework.Context(t)
			resp, err := cli.Get(ctx, "k", clientv3.WithPrefix())
			if err != nil {
				t.Fatalf("seed %d: read after restart: %v", seed, err)
			}
			got := map[string]string{}
			for _, kv := range resp.Kvs {
				got[string(kv.Key)] = string(kv.Value)
			}
			for k := range acked {
				key := fmt.Sprintf("k%04d", k)
				if v := got[key]; v != fmt.Sprintf("v%d", k) {
					t.Fatalf("seed %d: power lost at %s: acknowledged put %s reads %q after restart", seed, p.name, key, v)
				}
			}
		})
	}
}

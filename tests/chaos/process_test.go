//go:build linux

package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/synod-db/synod/tests/framework"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// synodBinary builds the static synod binary once for all tests.
func synodBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "synod-chaos-bin-")
		if err != nil {
			binErr = err
			return
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		binPath = filepath.Join(dir, "synod")
		binErr = framework.BuildSynod(ctx, binPath)
		t.Logf("built %s in %v", binPath, time.Since(start).Round(time.Millisecond))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestProcesses is tier 2: real synod processes on loopback, with kill -9
// and SIGSTOP of random members and of the leader, partitions, delays and
// resets through proxies on the peer links, and member replacement, all
// under load.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	d := runDuration(t, 10*time.Second)
	seeds := seeds(t, "process")
	bin := synodBinary(t)
	for i, seed := range seeds {
		size := 3
		if i%2 == 1 {
			size = 5
		}
		t.Run(fmt.Sprintf("seed=%d/members=%d", seed, size), func(t *testing.T) {
			ctx := context.Background()
			dir, err := os.MkdirTemp("", "synod-chaos-process-")
			if err != nil {
				t.Fatal(err)
			}
			c, err := StartProcesses(ctx, bin, dir, size, seed)
			if err != nil {
				os.RemoveAll(dir)
				t.Fatal(err)
			}
			defer func() {
				c.Close() // also when the run panics or fails
				os.RemoveAll(dir)
			}()
			rep, err := Run(ctx, c, Config{
				Name: fmt.Sprintf("process/%d", size), Seed: seed, Duration: d,
				Clients: 6, Keys: 5, Watchers: 2, OpTimeout: 2 * time.Second, Mix: LeaseMix,
				Faults: c.Faults(), FaultGap: [2]time.Duration{300 * time.Millisecond, 1500 * time.Millisecond}, FaultHold: [2]time.Duration{700 * time.Millisecond, 2500 * time.Millisecond},
				Script:       shortScript("kill-leader", "pause-leader", "replace", "partition", "kill", "pause"),
				ArtifactsDir: artifactsDir(), Replay: replay("TestProcesses", seed, d), Logf: t.Logf,
			})
			c.Close()
			if rep != nil && rep.Dir != "" {
				os.Rename(dir, filepath.Join(rep.Dir, "data"))
			}
			report(t, rep, err)
		})
	}
}

// TestProcessesLargeValues is tier 2 with the way production fails that
// small values hide: every value is 64 KiB on the wire, the log is not
// compacted for 10,000 entries (etcd's default), and members are killed
// and kept down for several seconds (kill-long) while the others take
// writes, so that they come back far behind and catch up from the
// leader's log under load; leaders are killed and paused as well.
func TestProcessesLargeValues(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	d := runDuration(t, 12*time.Second)
	seeds := seeds(t, "process")
	bin := synodBinary(t)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			ctx := context.Background()
			dir, err := os.MkdirTemp("", "synod-chaos-large-")
			if err != nil {
				t.Fatal(err)
			}
			c, err := StartProcesses(ctx, bin, dir, 3, seed, "--snapshot-count", "10000")
			if err != nil {
				os.RemoveAll(dir)
				t.Fatal(err)
			}
			defer func() {
				c.Close()
				os.RemoveAll(dir)
			}()
			var faults []Fault
			for _, f := range c.Faults() {
				switch f.Name {
				case "kill-long", "kill-leader", "pause-leader", "slow-member":
					faults = append(faults, f)
				}
			}
			rep, err := Run(ctx, c, Config{
				Name: "process-large/3", Seed: seed, Duration: d,
				Clients: 6, Keys: 5, Watchers: 2, OpTimeout: 3 * time.Second, ValueBytes: 64 << 10,
				Faults: faults, FaultGap: [2]time.Duration{300 * time.Millisecond, time.Second}, FaultHold: [2]time.Duration{700 * time.Millisecond, 2 * time.Second},
				Script:       shortScript("kill-long", "kill-leader"),
				ArtifactsDir: artifactsDir(), Replay: replay("TestProcessesLargeValues", seed, d), Logf: t.Logf,
			})
			c.Close()
			if rep != nil && rep.Dir != "" {
				os.Rename(dir, filepath.Join(rep.Dir, "data"))
			}
			report(t, rep, err)
		})
	}
}

//go:build linux

package chaos

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestDocker is tier 3: a FROM scratch image of the static synod binary,
// built locally, and clusters of 3 and 5 containers on private networks,
// with members disconnected from the peer network, killed (docker kill),
// paused (docker pause) and restarted one after another (rolling
// restart), all under load. It skips when no Docker engine is reachable.
func TestDocker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers; skipped in -short")
	}
	ctx := context.Background()
	d := runDuration(t, 12*time.Second)
	seeds := seeds(t, "docker")
	if err := DockerAvailable(ctx); err != nil {
		t.Skipf("tier 3 (containers) skipped: %v", err)
	}
	bin := synodBinary(t)
	tag := fmt.Sprintf("synod-chaos:%d", os.Getpid())
	start := time.Now()
	if err := BuildImage(ctx, "../docker/Dockerfile", bin, tag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker(context.Background(), "rmi", "-f", tag) })
	t.Logf("built image %s in %v", tag, time.Since(start).Round(time.Millisecond))
	var runs []struct {
		seed   uint64
		size   int
		script []string
	}
	for i, seed := range seeds {
		if soak() {
			runs = append(runs, struct {
				seed   uint64
				size   int
				script []string
			}{seed, 3 + 2*(i%2), nil})
			continue
		}
		runs = append(runs,
			struct {
				seed   uint64
				size   int
				script []string
			}{seed, 3, []string{"rolling-restart", "disconnect-follower", "kill", "pause-leader"}},
			struct {
				seed   uint64
				size   int
				script []string
			}{seed + 1, 5, []string{"disconnect-follower", "kill-leader", "pause", "kill"}})
	}
	for _, r := range runs {
		t.Run(fmt.Sprintf("seed=%d/members=%d", r.seed, r.size), func(t *testing.T) {
			c, err := StartDocker(ctx, tag, r.size, r.seed)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close() // also when the run fails
			faults := c.Faults()
			rep, err := Run(ctx, c, Config{
				Name: fmt.Sprintf("docker/%d", r.size), Seed: r.seed, Duration: d,
				Clients: 6, Keys: 5, Watchers: 2, OpTimeout: 3 * time.Second, Script: r.script, Mix: LeaseMix,
				Faults: faults, FaultGap: [2]time.Duration{300 * time.Millisecond, 1500 * time.Millisecond}, FaultHold: [2]time.Duration{time.Second, 3 * time.Second},
				ArtifactsDir: artifactsDir(), Replay: replay("TestDocker", r.seed, d), Logf: t.Logf,
			})
			report(t, rep, err)
		})
	}
}

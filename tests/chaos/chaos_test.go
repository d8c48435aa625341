package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The environment that turns the short runs of `go test` into a soak.
const (
	envRuns     = "SYNOD_CHAOS_RUNS"     // runs per tier (default 1)
	envSeed     = "SYNOD_CHAOS_SEED"     // seed of the first run (default: random)
	envDuration = "SYNOD_CHAOS_DURATION" // workload time per run (default: short)
	envTiers    = "SYNOD_CHAOS_TIERS"    // comma-separated tiers to run (default: all)
	envDir      = "SYNOD_CHAOS_DIR"      // where failed runs keep their evidence
)

// seeds returns the seeds of a tier's runs.
func seeds(t *testing.T, tier string) []uint64 {
	t.Helper()
	if v := os.Getenv(envTiers); v != "" && !strings.Contains(","+v+",", ","+tier+",") {
		t.Skipf("tier %s not selected by %s=%s", tier, envTiers, v)
	}
	runs := 1
	if v := os.Getenv(envRuns); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", envRuns, v)
		}
		runs = n
	}
	base := rand.Uint64() % 1_000_000
	if v := os.Getenv(envSeed); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", envSeed, v)
		}
		base = n
	}
	out := make([]uint64, runs)
	for i := range out {
		out[i] = base + uint64(i)
	}
	return out
}

// soak reports whether the runs are a soak (longer, both cluster sizes).
func soak() bool { return os.Getenv(envRuns) != "" || os.Getenv(envDuration) != "" }

// runDuration is the workload time of one run.
func runDuration(t *testing.T, short time.Duration) time.Duration {
	if v := os.Getenv(envDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", envDuration, v, err)
		}
		return d
	}
	return short
}

// shortScript is the faults a short run injects first (so that one short
// run covers them); a soak picks every fault at random.
func shortScript(names ...string) []string {
	if soak() {
		return nil
	}
	return names
}

func artifactsDir() string {
	if v := os.Getenv(envDir); v != "" {
		return v
	}
	return os.TempDir()
}

func replay(test string, seed uint64, d time.Duration) string {
	return fmt.Sprintf("%s=%d %s=%v go test ./tests/chaos -run '%s' -count=1 -v -timeout 0", envSeed, seed, envDuration, d, test)
}

// report logs a run's summary and fails the test on violations.
func report(t *testing.T, rep *Report, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("run could not be carried out: %v", err)
	}
	t.Log(rep.Summary())
	if len(rep.Violations) > 0 {
		t.Errorf("%d violations; evidence (seed, history.html, member logs) kept in %s:\n  %s",
			len(rep.Violations), rep.Dir, strings.Join(rep.Violations, "\n  "))
	}
}

// checkNoLeak fails if goroutines started by the test outlive it.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before+3 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInProcess is tier 1: members in this process, faults on the peer
// network through proxies (partitions, one-way links, drops, duplicates,
// reordering, delay, resets) and crashes with restarts.
func TestInProcess(t *testing.T) {
	d := runDuration(t, 8*time.Second)
	for i, seed := range seeds(t, "inprocess") {
		size := 3
		if soak() && i%2 == 1 {
			size = 5
		}
		t.Run(fmt.Sprintf("seed=%d/members=%d", seed, size), func(t *testing.T) {
			before := runtime.NumGoroutine()
			ctx := context.Background()
			dir, err := os.MkdirTemp("", "synod-chaos-inprocess-")
			if err != nil {
				t.Fatal(err)
			}
			// Say which run this is, in case a member's panic takes the
			// test binary down before any evidence is written: the data
			// directory (with the members' logs) is then left behind.
			os.WriteFile(dir+"/seed.txt", []byte(replay("TestInProcess", seed, d)+"\n"), 0o644)
			c, err := StartInProcess(t, ctx, dir, size, seed, nil)
			if err != nil {
				os.RemoveAll(dir)
				t.Fatal(err)
			}
			rep, err := Run(ctx, c, Config{
				Name: fmt.Sprintf("inprocess/%d", size), Seed: seed, Duration: d,
				Clients: 6, Keys: 5, Watchers: 2, OpTimeout: 1500 * time.Millisecond, Mix: LeaseMix,
				Faults: c.Faults(), FaultGap: [2]time.Duration{200 * time.Millisecond, time.Second}, FaultHold: [2]time.Duration{300 * time.Millisecond, 2 * time.Second},
				Script:       shortScript("isolate-leader", "power-loss-all", "crash-leader", "flaky-network", "one-way", "partition"),
				ArtifactsDir: artifactsDir(), Replay: replay("TestInProcess", seed, d), Logf: t.Logf,
			})
			c.Close()
			if rep != nil && rep.Dir != "" {
				os.Rename(dir, rep.Dir+"/data")
			}
			os.RemoveAll(dir)
			report(t, rep, err)
			checkNoLeak(t, before)
		})
	}
}

// cleanups run after all tests (the synod binary built for them).
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

// TestRecheck checks a failed run's saved history again and prints where
// porcupine got stuck: SYNOD_CHAOS_RECHECK=<evidence dir>/run.json.
func TestRecheck(t *testing.T) {
	path := os.Getenv("SYNOD_CHAOS_RECHECK")
	if path == "" {
		t.Skip("set SYNOD_CHAOS_RECHECK=<evidence dir>/run.json to check a saved run again")
	}
	res, diag, err := Recheck(path, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("linearizability: %s\n%s", res, diag)
}

// TestCheckerCatchesStaleReads is the harness's self-test: with reads
// sent as serializable (served from the local store, possibly stale) and
// members isolated from the leader, a run must report the history as not
// linearizable. A checker that passes this run is checking nothing.
func TestCheckerCatchesStaleReads(t *testing.T) {
	if os.Getenv(envRuns) != "" {
		t.Skip("self-test: not part of a soak")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "synod-chaos-selftest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c, err := StartInProcess(t, ctx, dir, 3, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mix := DefaultMix
	mix.Serializable = true
	mix.Get, mix.Range = 40, 20
	var isolate []Fault
	for _, f := range c.Faults() {
		if f.Name == "partition" {
			isolate = append(isolate, f)
		}
	}
	rep, err := Run(ctx, c, Config{
		Name: "selftest", Seed: 1, Duration: 4 * time.Second, Clients: 6, Keys: 3, Mix: mix, OpTimeout: time.Second,
		Faults: isolate, FaultGap: [2]time.Duration{200 * time.Millisecond, 300 * time.Millisecond}, FaultHold: [2]time.Duration{time.Second, 1500 * time.Millisecond},
		ArtifactsDir: dir, // evidence of the expected failure goes away with dir
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	if rep.Check != porcupine.Illegal {
		t.Fatalf("stale serializable reads under partitions were not detected (linearizability %s)", rep.Check)
	}
}

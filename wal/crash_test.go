package wal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// The crash test runs a child process that appends to a WAL on the real
// file system and reports each entry the WAL acknowledged as durable, kills
// it with SIGKILL at a random moment, and checks the WAL in the parent;
// then starts the next child on the same directory.

const (
	// crashDirEnv tells the test binary it is a crash child and where its
	// WAL is.
	crashDirEnv = "SYNOD_WAL_CRASH_DIR"
	// crashRunEnv numbers the child, for the entries' contents.
	crashRunEnv = "SYNOD_WAL_CRASH_RUN"
	// crashRunsEnv sets how many children TestCrash kills.
	crashRunsEnv = "SYNOD_WAL_CRASH_RUNS"
	// crashSeedEnv sets TestCrash's seed.
	crashSeedEnv = "SYNOD_WAL_CRASH_SEED"
	// crashWriters is how many goroutines of the child save concurrently.
	crashWriters = 4
	// crashChildLifetime bounds a child the parent failed to kill.
	crashChildLifetime = 60 * time.Second
)

func crashOpts() Options {
	return Options{SegmentSize: 16 << 10, MaxSegments: -1, Logger: quiet()}
}

// crashData is the contents of the entry at idx written by child run: a
// header naming both, then filler determined by idx.
func crashData(run int, idx uint64, writer int) []byte {
	data := fmt.Appendf(nil, "run=%d idx=%d writer=%d ", run, idx, writer)
	return append(data, bytes.Repeat([]byte{byte('a' + idx%26)}, int(idx%300))...)
}

// parseCrashData checks an entry's contents and returns the run that wrote
// it.
func parseCrashData(e pb.Entry) (int, error) {
	var run, writer int
	var idx uint64
	if _, err := fmt.Sscanf(string(e.Data), "run=%d idx=%d writer=%d ", &run, &idx, &writer); err != nil {
		return 0, fmt.Errorf("entry %d holds %.60q: %v", e.Index, e.Data, err)
	}
	if idx != e.Index || !bytes.Equal(e.Data, crashData(run, idx, writer)) {
		return 0, fmt.Errorf("entry %d holds the data of entry %d or damaged data: %.60q", e.Index, idx, e.Data)
	}
	return run, nil
}

// TestCrashChild is not a test of its own: TestCrash runs the test binary
// with only this test selected and SYNOD_WAL_CRASH_DIR set, and it then
// appends to the WAL there until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("a helper process of TestCrash")
	}
	run, err := strconv.Atoi(os.Getenv(crashRunEnv))
	if err != nil {
		crashChildFail(err)
	}
	crashChild(dir, run)
}

func crashChildFail(err error) {
	fmt.Fprintln(os.Stderr, "crash child:", err)
	os.Exit(2)
}

// crashChild opens (or creates) the WAL and has crashWriters goroutines
// append one entry at a time with group commit. Each takes the next index
// and saves its entry without sync under a mutex, so that entries reach
// the WAL in index order, then waits for a sync covering it (an empty
// synced Save) and prints the index. It never returns.
func crashChild(dir string, run int) {
	// Never outlive a parent that failed to kill us.
	time.AfterFunc(crashChildLifetime, func() { crashChildFail(errors.New("not killed in time")) })
	w, rp, err := Open(dir, Marker{}, crashOpts())
	if errors.Is(err, ErrNotFound) {
		w, err = Create(dir, []byte("crash"), crashOpts())
		rp = &Replay{}
	}
	if err != nil {
		crashChildFail(err)
	}
	var mu sync.Mutex
	next := uint64(len(rp.Entries)) + 1
	for g := range crashWriters {
		go func() {
			for {
				mu.Lock()
				idx := next
				next++
				e := pb.Entry{Index: idx, Term: 1, Data: crashData(run, idx, g)}
				err := w.Save(pb.HardState{Term: 1, Commit: idx}, []pb.Entry{e}, false)
				mu.Unlock()
				if err == nil {
					err = w.Save(pb.HardState{}, nil, true)
				}
				if err != nil {
					crashChildFail(err)
				}
				// One write(2) per line: a kill cannot split it.
				if _, err := fmt.Fprintf(os.Stdout, "%d\n", idx); err != nil {
					crashChildFail(err)
				}
			}
		}()
	}
	select {}
}

// crashSeed returns the seed of TestCrash.
func crashSeed(t *testing.T) uint64 {
	if s := os.Getenv(crashSeedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		mustT(t, err)
		return seed
	}
	return 20261125
}

// TestCrash kills a process appending to a WAL with group commit at random
// moments (after a random number of acknowledged entries, or a random
// delay that may land in Open or Create), many times over the same
// directory, and checks after each kill that every entry acknowledged as
// durable is replayed with its data, that the entries are contiguous and
// those seen before are unchanged, and that the hard state covers the
// acknowledged entries. SYNOD_WAL_CRASH_RUNS sets the number of kills (20
// by default, 5 with -short).
func TestCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in a crash child")
	}
	runs := 20
	if testing.Short() {
		runs = 5
	}
	if s := os.Getenv(crashRunsEnv); s != "" {
		var err error
		runs, err = strconv.Atoi(s)
		mustT(t, err)
	}
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	acked := map[uint64]int{} // index → the run that acknowledged it
	var seen []pb.Entry
	total := 0
	for run := range runs {
		acks, err := crashRun(dir, run, rng)
		if err != nil {
			t.Fatalf("seed %d run %d (rerun with %s=%d): %v", seed, run, crashSeedEnv, seed, err)
		}
		for _, idx := range acks {
			if prev, ok := acked[idx]; ok {
				t.Fatalf("seed %d run %d: entry %d acknowledged again, first by run %d", seed, run, idx, prev)
			}
			acked[idx] = run
		}
		total += len(acks)
		seen, err = checkCrashWAL(dir, acked, seen)
		if err != nil {
			t.Fatalf("seed %d (rerun with %s=%d), after killing run %d: %v", seed, crashSeedEnv, seed, run, err)
		}
	}
	t.Logf("%d kills, %d entries acknowledged, %d in the WAL", runs, total, len(seen))
}

// crashRun starts a child, kills it at a random moment, and returns the
// indexes it acknowledged.
func crashRun(dir string, run int, rng *rand.Rand) (acks []uint64, err error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRunEnv+"="+strconv.Itoa(run))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Kill after this many acknowledgements, or after the delay.
	killAfter := 1 + rng.IntN(400)
	var delay <-chan time.Time
	if rng.IntN(3) == 0 {
		killAfter = -1
		delay = time.After(time.Duration(rng.IntN(150)) * time.Millisecond)
	}
	enough := make(chan struct{})
	done := make(chan struct{})
	var readErr error
	go func() {
		defer close(done)
		br := bufio.NewReader(stdout)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				// EOF once the child is dead; a partial line cannot be
				// an acknowledgement.
				return
			}
			idx, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
			if err != nil {
				readErr = fmt.Errorf("child printed %q", line)
				return
			}
			acks = append(acks, idx)
			if len(acks) == killAfter {
				close(enough)
			}
		}
	}()
	exited := false
	select {
	case <-enough:
	case <-delay:
	case <-done:
		exited = true
	case <-time.After(20 * time.Second):
		err = errors.New("the child acknowledged nothing for 20s")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	werr := cmd.Wait()
	if readErr != nil {
		return nil, readErr
	}
	if err != nil {
		return nil, err
	}
	if strings.Contains(stderr.String(), "DATA RACE") {
		return nil, fmt.Errorf("the child reported a data race:\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if exited || !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return nil, fmt.Errorf("the child ended on its own (%v):\n%s", werr, stderr.String())
	}
	return acks, nil
}

// checkCrashWAL opens the WAL after a kill and checks it against what was
// acknowledged and what it held after the previous kill; it returns the
// entries it holds now.
func checkCrashWAL(dir string, acked map[uint64]int, seen []pb.Entry) ([]pb.Entry, error) {
	w, rp, err := Open(dir, Marker{}, crashOpts())
	if errors.Is(err, ErrNotFound) && len(acked) == 0 {
		// Killed before Create finished.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reopening: %w", err)
	}
	defer w.Close()
	ents := rp.Entries
	var maxAcked uint64
	for idx := range acked {
		maxAcked = max(maxAcked, idx)
	}
	for i, e := range ents {
		if e.Index != uint64(i+1) || e.Term != 1 {
			return nil, fmt.Errorf("entry %d of the replay has index %d term %d", i, e.Index, e.Term)
		}
		run, err := parseCrashData(e)
		if err != nil {
			return nil, err
		}
		if r, ok := acked[e.Index]; ok && r != run {
			return nil, fmt.Errorf("entry %d was acknowledged by run %d but holds run %d's data", e.Index, r, run)
		}
		if i < len(seen) && !bytes.Equal(e.Data, seen[i].Data) {
			return nil, fmt.Errorf("entry %d changed since the previous kill: %.60q, was %.60q", e.Index, e.Data, seen[i].Data)
		}
	}
	if uint64(len(ents)) < maxAcked {
		return nil, fmt.Errorf("the WAL holds %d entries, but entry %d was acknowledged", len(ents), maxAcked)
	}
	if len(ents) < len(seen) {
		return nil, fmt.Errorf("the WAL holds %d entries, %d before", len(ents), len(seen))
	}
	if hs := rp.HardState; maxAcked > 0 && (hs.Term != 1 || hs.Commit < maxAcked || hs.Commit > uint64(len(ents))) {
		return nil, fmt.Errorf("hard state %+v with %d entries, %d acknowledged", hs, len(ents), maxAcked)
	}
	return ents, w.Close()
}

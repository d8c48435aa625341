//go:build linux

package chaos

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-db/synod/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The environment of TestLaggingMemberCatchesUp.
const (
	// envCatchUpValues sets how many 100 KiB values are written while a
	// member is down (default: enough to overflow the leader's log cache,
	// so that the catch-up reads the WAL files).
	envCatchUpValues = "SYNOD_CATCHUP_VALUES"
	// envCatchUpBin runs the same steps on another binary with etcd's
	// flags, real etcd to compare with (default: synod, built here).
	envCatchUpBin = "SYNOD_CATCHUP_BIN"
)

// TestLaggingMemberCatchesUp is the way production fails when one member
// was down for a while: three members with etcd's default timing and
// snapshot count, the third killed with -9, hundreds of MB of large
// values written through the other two, then the third restarted while a
// client keeps writing. Every write during the catch-up must be answered
// within the usual request timeout, the leader must keep answering
// Status, the member must catch up within a bound, and SIGTERM must stop
// every member promptly afterwards.
func TestLaggingMemberCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	values := 1000
	if v := os.Getenv(envCatchUpValues); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", envCatchUpValues, v)
		}
		values = n
	}
	const valueSize = 100 << 10
	bin := os.Getenv(envCatchUpBin)
	if bin == "" {
		bin = synodBinary(t)
	}
	dir := t.TempDir()
	ctx := context.Background()
	c := startProcessesForTest(t, bin, dir, 3, "catchup",
		"--heartbeat-interval", "100", "--election-timeout", "1000", "--snapshot-count", "10000", "--logger", "zap")

	c.Kill(2)
	writers, err := framework.ClientFor([]string{c.ClientAddr(0), c.ClientAddr(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer writers.Close()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			val := make([]byte, valueSize)
			for {
				i := next.Add(1) - 1
				if i >= int64(values) {
					return
				}
				val[0], val[1] = byte(i), byte(w)
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := writers.Put(pctx, fmt.Sprintf("/big/%06d", i), string(val))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %d while the member was down: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	resp, err := writers.Get(ctx, "/big/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	target := resp.Header.Revision
	t.Logf("wrote %d values of %d KiB (%d MB) in %v with member 2 down; revision %d",
		values, valueSize>>10, values*valueSize>>20, time.Since(start).Round(time.Millisecond), target)

	// The usual latency of a small put, for comparison.
	var usual []time.Duration
	for k := range 10 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := time.Now()
		_, err := writers.Put(pctx, "/trickle", strconv.Itoa(-k))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		usual = append(usual, time.Since(t0))
		framework.Sleep(ctx, 50*time.Millisecond)
	}
	slices.Sort(usual)

	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	lagger, err := framework.ClientFor([]string{c.ClientAddr(2)})
	if err != nil {
		t.Fatal(err)
	}
	defer lagger.Close()
	const (
		putTimeout   = 5 * time.Second
		catchUpBound = 60 * time.Second
	)
	// One put every 200 ms, and Status of the two up-to-date members,
	// while the catch-up is watched on its own every 50 ms.
	var (
		mu     sync.Mutex
		lat    []time.Duration
		putErr error
	)
	stopPuts := make(chan struct{})
	putsDone := make(chan struct{})
	go func() {
		defer close(putsDone)
		for k := 0; ; k++ {
			pctx, cancel := context.WithTimeout(ctx, putTimeout)
			t0 := time.Now()
			_, err := writers.Put(pctx, "/trickle", strconv.Itoa(k))
			cancel()
			d := time.Since(t0)
			if err != nil {
				err = fmt.Errorf("put %d during the catch-up, %v after the restart: %w", k, time.Since(restarted).Round(time.Millisecond), err)
			}
			for _, ep := range []string{c.ClientAddr(0), c.ClientAddr(1)} {
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if _, serr := writers.Status(sctx, ep); serr != nil && err == nil {
					err = fmt.Errorf("status of %s during the catch-up: %w", ep, serr)
				}
				cancel()
			}
			mu.Lock()
			lat = append(lat, d)
			if err != nil && putErr == nil {
				putErr = err
			}
			mu.Unlock()
			select {
			case <-stopPuts:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var caughtUp time.Duration
	for caughtUp == 0 {
		if time.Since(restarted) > catchUpBound {
			t.Fatalf("member 2 did not catch up to revision %d within %v of its restart", target, catchUpBound)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := lagger.Status(sctx, c.ClientAddr(2))
		cancel()
		if err == nil && st.Header.Revision >= target {
			caughtUp = time.Since(restarted)
		}
		if err == nil && os.Getenv("TRACE") != "" {
			t.Logf("TRACE %v raft %d applied %d rev %d", time.Since(restarted).Round(time.Millisecond), st.RaftIndex, st.RaftAppliedIndex, st.Header.Revision)
		}
		framework.Sleep(ctx, 50*time.Millisecond)
	}
	close(stopPuts)
	<-putsDone
	if putErr != nil {
		t.Fatal(putErr)
	}
	slices.Sort(lat)
	t.Logf("member 2 caught up in %v; %d puts meanwhile: median %v, max %v (before the restart: median %v, max %v)",
		caughtUp.Round(time.Millisecond), len(lat), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond),
		usual[len(usual)/2].Round(time.Microsecond), usual[len(usual)-1].Round(time.Microsecond))

	// Down again, and stopped in the middle of its next catch-up, with
	// the other two: every member must stop cleanly and promptly.
	c.Kill(2)
	next.Store(0)
	values = max(values/4, 1)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			val := make([]byte, valueSize)
			for i := next.Add(1) - 1; i < int64(values); i = next.Add(1) - 1 {
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				writers.Put(pctx, fmt.Sprintf("/big2/%06d", i), string(val))
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := lagger.Status(sctx, c.ClientAddr(2))
		cancel()
		if err == nil && st.Header.Revision > target {
			break // catching up
		}
		if !framework.Sleep(ctx, 20*time.Millisecond) {
			t.Fatal(ctx.Err())
		}
	}
	var stops sync.WaitGroup
	for i := range 3 {
		stops.Add(1)
		go func() {
			defer stops.Done()
			if err := c.Terminate(i, 12*time.Second); err != nil {
				t.Error(err)
			}
		}()
	}
	stops.Wait()
}

//go:build linux

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/synod-db/synod/tests/framework"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// mountTmpfs mounts a tmpfs of size bytes at dir (created) for the test,
// or skips the test where mounting is not allowed (not root).
func mountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("a small file system is needed and mounting a tmpfs failed (run as root): %v: %s", err, bytes.TrimSpace(b))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// resizeTmpfs changes the size of the tmpfs at dir: space freed.
func resizeTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if b, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput(); err != nil {
		t.Fatalf("resizing the tmpfs at %s: %v: %s", dir, err, b)
	}
}

// startProcessesForTest starts n members (seed 1) for a test that drives
// them itself, stops them when the test ends, and keeps their logs in
// the artifacts directory, under name, if it failed.
func startProcessesForTest(t *testing.T, bin, dir string, n int, name string, args ...string) *Processes {
	t.Helper()
	c, err := StartProcesses(context.Background(), bin, dir, n, 1, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			keep := filepath.Join(artifactsDir(), name+"-logs")
			c.SaveLogs(keep)
			t.Logf("member logs kept in %s", keep)
		}
	})
	return c
}

// retriable reports whether a put failed because leadership moved (or
// was being elected), which a client retries.
func retriable(err error) bool {
	switch rpctypes.ErrorDesc(err) {
	case rpctypes.ErrorDesc(rpctypes.ErrLeaderChanged), rpctypes.ErrorDesc(rpctypes.ErrNoLeader),
		rpctypes.ErrorDesc(rpctypes.ErrTimeout), rpctypes.ErrorDesc(rpctypes.ErrTimeoutDueToLeaderFail):
		return true
	}
	return false
}

// logSince returns what member i logged after offset bytes, and the end.
func logSince(t *testing.T, c *Processes, i int, offset int64) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(c.LogPath(i))
	if err != nil {
		t.Fatal(err)
	}
	return string(b[min(offset, int64(len(b))):]), int64(len(b))
}

// checkNoSpaceLine checks that a member's log says, on one line, that the
// disk is full and names a file of its data directory.
func checkNoSpaceLine(t *testing.T, log, dataDir, when string) {
	t.Helper()
	for _, line := range bytes.Split([]byte(log), []byte("\n")) {
		if bytes.Contains(line, []byte("no space left on device")) && bytes.Contains(line, []byte(dataDir)) {
			return
		}
	}
	t.Fatalf("%s: no log line says 'no space left on device' and names a file in %s; the log:\n%s", when, dataDir, tail(log, 3000))
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// TestDiskFull fills the disk under one member of three with 100 KiB
// values (a 64 MiB tmpfs), while the other two keep serving:
//   - running: the member stops with a log line naming the file and "no
//     space left on device", every write is still acknowledged by the
//     other two;
//   - restarted on the still-full disk: it exits at once, with that line;
//   - restarted once space is freed: it catches up and holds every
//     acknowledged write.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	bin := synodBinary(t)
	dir := t.TempDir()
	const small = 64 << 20
	full := filepath.Join(dir, "p2.etcd")
	mountTmpfs(t, full, small)
	ctx := context.Background()
	c := startProcessesForTest(t, bin, dir, 3, "diskfull", "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap")
	cli, err := framework.ClientFor([]string{c.ClientAddr(0), c.ClientAddr(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	// Running: write until the small disk is full and its member stops.
	val := string(make([]byte, 100<<10))
	acked, retries := 0, 0
	var stoppedAt time.Time
	for ; acked < 2*small/len(val); acked++ {
		// When the full member was the leader, a put it held fails with
		// "leader changed", as etcd answers; it is retried (the same key
		// and value) while the others elect a new leader, and counts as
		// acknowledged once an attempt succeeds.
		var err error
		for start := time.Now(); time.Since(start) < 10*time.Second; {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = cli.Put(pctx, fmt.Sprintf("/full/%05d", acked), val)
			cancel()
			if err == nil || !retriable(err) {
				break
			}
			retries++
			framework.Sleep(ctx, 100*time.Millisecond)
		}
		if err != nil {
			t.Fatalf("put %d with one member's disk full: %v", acked, err)
		}
		if stoppedAt.IsZero() && !c.Running(2) {
			stoppedAt = time.Now()
		}
		if !stoppedAt.IsZero() && time.Since(stoppedAt) > time.Second {
			break
		}
	}
	code, err := c.WaitExit(2, 10*time.Second)
	if err != nil {
		t.Fatalf("the member whose disk filled did not stop: %v", err)
	}
	log, off := logSince(t, c, 2, 0)
	if code == 0 {
		t.Fatalf("the member whose disk filled exited with status 0")
	}
	checkNoSpaceLine(t, log, full, "disk filled while running")
	t.Logf("%d puts of 100 KiB acknowledged (%d attempts retried while leadership moved); the member on the %d MiB disk stopped (status %d)", acked, retries, small>>20, code)

	// Restarted while the disk is still full: an immediate, clear exit.
	start := time.Now()
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	if code, err = c.WaitExit(2, 15*time.Second); err != nil {
		t.Fatalf("restarted on a full disk: %v", err)
	}
	log, _ = logSince(t, c, 2, off)
	if code == 0 {
		t.Fatalf("restarted on a full disk, it exited with status 0")
	}
	checkNoSpaceLine(t, log, full, "restarted on a full disk")
	t.Logf("restarted on the full disk, it exited in %v (status %d)", time.Since(start).Round(time.Millisecond), code)

	// Space freed: it rejoins and holds every acknowledged write.
	resizeTmpfs(t, full, 8*small)
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	m2, err := framework.ClientFor([]string{c.ClientAddr(2)})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	for {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := m2.Get(gctx, "/full/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		cancel()
		if err == nil && resp.Count >= int64(acked) {
			break
		}
		if !c.Running(2) {
			l, _ := logSince(t, c, 2, off)
			t.Fatalf("after space was freed the member exited again:\n%s", tail(l, 3000))
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("after space was freed the member did not catch up within a minute (count %v, err %v)", resp, err)
		}
		framework.Sleep(ctx, 100*time.Millisecond)
	}
	for k := range acked {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := m2.Get(gctx, fmt.Sprintf("/full/%05d", k), clientv3.WithSerializable())
		cancel()
		if err != nil || len(resp.Kvs) != 1 || len(resp.Kvs[0].Value) != len(val) {
			t.Fatalf("acknowledged put %d is not on the member after it rejoined: %v %v", k, resp, err)
		}
	}
	t.Logf("after space was freed the member caught up in %v with all %d acknowledged writes", time.Since(start).Round(time.Millisecond), acked)
}

// TestDiskFullAlone fills the disk under a single member: it stops with
// a clear line, and once space is freed every write it acknowledged is
// there.
func TestDiskFullAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	bin := synodBinary(t)
	dir := t.TempDir()
	const small = 48 << 20
	full := filepath.Join(dir, "p0.etcd")
	mountTmpfs(t, full, small)
	ctx := context.Background()
	c := startProcessesForTest(t, bin, dir, 1, "diskfull-alone", "--logger", "zap")
	cli, err := framework.ClientFor([]string{c.ClientAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	val := string(make([]byte, 100<<10))
	acked := 0
	for ; acked < 2*small/len(val); acked++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.Put(pctx, fmt.Sprintf("/full/%05d", acked), val)
		cancel()
		if err != nil {
			break
		}
	}
	cli.Close()
	code, err := c.WaitExit(0, 15*time.Second)
	if err != nil {
		t.Fatalf("the member did not stop on a full disk: %v", err)
	}
	log, _ := logSince(t, c, 0, 0)
	if code == 0 {
		t.Fatal("the member exited with status 0 on a full disk")
	}
	checkNoSpaceLine(t, log, full, "disk filled while running")
	resizeTmpfs(t, full, 4*small)
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	cli, err = framework.ClientFor([]string{c.ClientAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var resp *clientv3.GetResponse
	for start := time.Now(); ; {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err = cli.Get(gctx, "/full/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		if err == nil || time.Since(start) > 30*time.Second {
			break
		}
		framework.Sleep(ctx, 100*time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after space was freed: %v", err)
	}
	if len(resp.Kvs) < acked {
		t.Fatalf("after space was freed %d keys are there; %d puts were acknowledged", len(resp.Kvs), acked)
	}
	for k := range acked {
		if want := fmt.Sprintf("/full/%05d", k); string(resp.Kvs[k].Key) != want {
			t.Fatalf("acknowledged key %s is missing (found %s)", want, resp.Kvs[k].Key)
		}
	}
	t.Logf("%d puts of 100 KiB acknowledged on a %d MiB disk; all there after space was freed", acked, small>>20)
}

package compat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestWatchLease runs etcdctl's long-running commands (watch, lock, elect)
// as background processes, and its lease commands, against one 3-member
// cluster.
func TestWatchLease(t *testing.T) {
	c := newCluster(t, 3)
	t.Run("WatchKey", func(t *testing.T) { testWatchKey(c.on(t)) })
	t.Run("WatchHistory", func(t *testing.T) { testWatchHistory(c.on(t)) })
	t.Run("WatchPrefixRange", func(t *testing.T) { testWatchPrefixRange(c.on(t)) })
	t.Run("WatchFollower", func(t *testing.T) { testWatchFollower(c.on(t)) })
	t.Run("WatchCompacted", func(t *testing.T) { testWatchCompacted(c.on(t)) })
	t.Run("Lease", func(t *testing.T) { testLease(c.on(t)) })
	t.Run("LeaseExpiry", func(t *testing.T) { testLeaseExpiry(c.on(t)) })
	t.Run("Lock", func(t *testing.T) { testLock(c.on(t)) })
	t.Run("Elect", func(t *testing.T) { testElect(c.on(t)) })
}

// lineBuf collects a process's output and tells waiters when it grows.
type lineBuf struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at every write
}

func newLineBuf() *lineBuf { return &lineBuf{changed: make(chan struct{})} }

func (b *lineBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// lines returns the complete lines written so far, and a channel closed
// at the next write.
func (b *lineBuf) lines() ([]string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return nil, b.changed
	}
	return strings.Split(s[:i], "\n"), b.changed
}

func (b *lineBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bgCtl is an etcdctl process running in the background; the test reads
// its standard output line by line.
type bgCtl struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	stdout *lineBuf
	stderr *lineBuf
	done   chan struct{} // closed once the process has exited and been reaped
	err    error         // the result of Wait; read only after done is closed
	read   int           // lines of stdout consumed by next and expect
}

// startCtl starts etcdctl with args against eps (all running members if
// nil) in the background. It is killed, if still running, when the test
// ends.
func (c *cluster) startCtl(eps []string, args ...string) *bgCtl {
	t := c.t
	t.Helper()
	if eps == nil {
		eps = c.endpoints()
	}
	args = append([]string{"--endpoints=" + strings.Join(eps, ",")}, args...)
	b := &bgCtl{t: t, args: args, stdout: newLineBuf(), stderr: newLineBuf(), done: make(chan struct{})}
	b.cmd = exec.Command(etcdctlBin, args...)
	b.cmd.Env = cleanEnv()
	b.cmd.Stdout, b.cmd.Stderr = b.stdout, b.stderr
	dieWithParent(b.cmd)
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting etcdctl %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		if !b.exited() {
			if err := b.cmd.Process.Kill(); err != nil {
				t.Errorf("killing etcdctl (pid %d): %v", b.cmd.Process.Pid, err)
			}
		}
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			t.Errorf("etcdctl %s (pid %d) is still running 10s after SIGKILL", strings.Join(b.args, " "), b.cmd.Process.Pid)
		}
	})
	return b
}

func (b *bgCtl) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// String describes the process and all its output, for failure messages.
func (b *bgCtl) String() string {
	st := "running"
	if b.exited() {
		st = fmt.Sprintf("exited: %v", b.err)
		if b.err == nil {
			st = "exited: status 0"
		}
	}
	return fmt.Sprintf("$ etcdctl %s &\n[%s; %d stdout lines consumed]\n[stdout]\n%s[stderr]\n%s",
		strings.Join(b.args, " "), st, b.read, b.stdout, b.stderr)
}

// waitLines waits until stdout has at least n complete lines; it returns
// false if the process exits or timeout passes first.
func (b *bgCtl) waitLines(n int, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		ls, changed := b.stdout.lines()
		if len(ls) >= n {
			return true
		}
		select {
		case <-changed:
		case <-b.done:
			// Wait has returned, so all of the output has been copied.
			ls, _ := b.stdout.lines()
			return len(ls) >= n
		case <-timer.C:
			return false
		}
	}
}

// next returns the next n lines of stdout, failing the test if they do
// not come within settleTimeout.
func (b *bgCtl) next(n int) []string {
	b.t.Helper()
	if !b.waitLines(b.read+n, settleTimeout) {
		b.t.Fatalf("want %d more lines of output (waited at most %v, or until the process exited):\n%v", n, settleTimeout, b)
	}
	ls, _ := b.stdout.lines()
	got := ls[b.read : b.read+n]
	b.read += n
	return got
}

// expect requires that the next lines of stdout are want.
func (b *bgCtl) expect(want ...string) {
	b.t.Helper()
	start := b.read
	if got := b.next(len(want)); !slices.Equal(got, want) {
		b.t.Fatalf("stdout lines %d.. are %q, want %q:\n%v", start+1, got, want, b)
	}
}

// quiet requires that the process is still running and has printed
// nothing beyond the lines consumed.
func (b *bgCtl) quiet() {
	b.t.Helper()
	if ls, _ := b.stdout.lines(); len(ls) != b.read || b.exited() {
		b.t.Fatalf("want a running process with no new output:\n%v", b)
	}
}

// stop sends sig and requires that the process exits with status code
// and no further output on stdout.
func (b *bgCtl) stop(sig os.Signal, code int) {
	b.t.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil && !b.exited() {
		b.t.Fatalf("signalling etcdctl: %v", err)
	}
	b.waitExit(code)
}

// waitExit waits for the process to exit by itself and requires status
// code and no unread output on stdout.
func (b *bgCtl) waitExit(code int) {
	b.t.Helper()
	select {
	case <-b.done:
	case <-time.After(settleTimeout):
		b.t.Fatalf("etcdctl did not exit within %v:\n%v", settleTimeout, b)
	}
	got := 0
	var ee *exec.ExitError
	switch {
	case b.err == nil:
	case errors.As(b.err, &ee):
		got = ee.ExitCode()
	default:
		b.t.Fatalf("waiting for etcdctl: %v", b.err)
	}
	if got != code {
		b.t.Fatalf("exit status %d, want %d:\n%v", got, code, b)
	}
	if ls, _ := b.stdout.lines(); len(ls) != b.read {
		b.t.Fatalf("unexpected output after line %d:\n%v", b.read, b)
	}
	b.t.Logf("%v", b)
}

// watchEvent renders one event the way `etcdctl watch` prints it: the
// type, then (with --prev-kv, if there was one) the previous key and
// value, then the key and value (empty for a deletion).
func watchEvent(typ string, kvs ...string) []string {
	return append([]string{typ}, kvs...)
}

// events concatenates rendered events.
func events(evs ...[]string) []string { return slices.Concat(evs...) }

// curRev returns the cluster's current revision.
func (c *cluster) curRev() int64 {
	c.t.Helper()
	return c.getJSON(nil, "no-such-key/for-the-revision").Header.Revision
}

func testWatchKey(c *cluster) {
	t := c.t
	c.must(nil, "put", "w/plain", "before")

	// Without --rev the watch starts at the revision current when the
	// server registers it, which the test cannot observe: it writes sync
	// values until one of them shows up. The first event must be one of
	// them, never the older value.
	w := c.startCtl(nil, "watch", "w/plain")
	for i, synced := 0, false; !synced; i++ {
		if i == 50 {
			t.Fatalf("no event after 50 puts to the watched key:\n%v", w)
		}
		c.must(nil, "put", "w/plain", fmt.Sprintf("sync-%d", i))
		if !w.waitLines(3, 300*time.Millisecond) {
			continue
		}
		first := w.next(3)
		if first[0] != "PUT" || first[1] != "w/plain" || !strings.HasPrefix(first[2], "sync-") {
			t.Fatalf("first event of a watch without --rev: got %q, want a PUT of w/plain with a sync-N value:\n%v", first, w)
		}
		j, err := strconv.Atoi(strings.TrimPrefix(first[2], "sync-"))
		if err != nil || j > i {
			t.Fatalf("first event %q is none of the sync values sync-0..sync-%d:\n%v", first, i, w)
		}
		// The puts after the first one seen follow in order.
		for j++; j <= i; j++ {
			w.expect(watchEvent("PUT", "w/plain", fmt.Sprintf("sync-%d", j))...)
		}
		synced = true
	}

	c.mustEqual(nil, "OK\n", "put", "w/plain", "v1")
	c.mustEqual(nil, "OK\n", "put", "w/plain-other", "x") // another key: not watched
	c.mustEqual(nil, "OK\n", "put", "w/plain", "value with spaces")
	c.mustEqual(nil, "1\n", "del", "w/plain")
	c.mustEqual(nil, "OK\n", "put", "w/plain", "v2")
	c.mustInEqual(nil, "\nput w/plain v3\nput w/plain-other y\n\n\n", "SUCCESS\n\nOK\n\nOK\n", "txn")
	c.mustEqual(nil, "OK\n", "put", "w/plain", "end")
	w.expect(events(
		watchEvent("PUT", "w/plain", "v1"),
		watchEvent("PUT", "w/plain", "value with spaces"),
		watchEvent("DELETE", "w/plain", ""),
		watchEvent("PUT", "w/plain", "v2"),
		watchEvent("PUT", "w/plain", "v3"),
		watchEvent("PUT", "w/plain", "end"),
	)...)
	w.quiet()
	// etcdctl watch does not handle SIGINT: it dies of it.
	w.stop(syscall.SIGINT, -1)
}

func testWatchHistory(c *cluster) {
	r1 := c.putRev("w/h", "h1")
	r2 := c.putRev("w/h", "h2")
	var d deleteResp
	c.mustJSON(nil, &d, "del", "w/h")
	r3 := d.Header.Revision
	if r3 != r2+1 {
		c.t.Fatalf("del w/h: revision %d, want %d", r3, r2+1)
	}

	// --rev in the past replays the history from that revision, then
	// goes on with new events.
	w := c.startCtl(nil, "watch", "w/h", "--rev", itoa(r1))
	w.expect(events(
		watchEvent("PUT", "w/h", "h1"),
		watchEvent("PUT", "w/h", "h2"),
		watchEvent("DELETE", "w/h", ""),
	)...)
	// The same from r2, with the previous key-value pairs: the put of
	// h2 replaced h1, the deletion removed h2, and the re-creation
	// after the deletion has none.
	wp := c.startCtl(nil, "watch", "w/h", "--rev", itoa(r2), "--prev-kv")
	wp.expect(events(
		watchEvent("PUT", "w/h", "h1", "w/h", "h2"),
		watchEvent("DELETE", "w/h", "h2", "w/h", ""),
	)...)

	c.mustEqual(nil, "OK\n", "put", "w/h", "h3")
	c.mustEqual(nil, "OK\n", "put", "w/h", "h4")
	w.expect(events(
		watchEvent("PUT", "w/h", "h3"),
		watchEvent("PUT", "w/h", "h4"),
	)...)
	wp.expect(events(
		watchEvent("PUT", "w/h", "h3"),
		watchEvent("PUT", "w/h", "h3", "w/h", "h4"),
	)...)
	w.quiet()
	wp.quiet()
	w.stop(syscall.SIGINT, -1)
	wp.stop(syscall.SIGINT, -1)
}

func testWatchPrefixRange(c *cluster) {
	from := itoa(c.curRev() + 1)
	// Starting at the next revision, the watches see every later event
	// whenever the server registers them.
	wp := c.startCtl(nil, "watch", "w/p/", "--prefix", "--rev", from)
	wr := c.startCtl(nil, "watch", "w/p/b", "w/p/d", "--rev", from) // [w/p/b, w/p/d)

	c.must(nil, "put", "w/p/a", "1")
	c.must(nil, "put", "w/p/b", "2")
	c.must(nil, "put", "w/pX", "not in the prefix")
	c.must(nil, "put", "w/p/c", "3")
	c.must(nil, "put", "w/p/d", "4")
	c.must(nil, "put", "w/p/b", "5")
	// One revision deleting several keys: one event per key, in key order.
	c.mustEqual(nil, "4\n", "del", "w/p/", "--prefix")
	c.must(nil, "put", "w/p/e", "6")
	c.must(nil, "put", "w/p/bz", "end") // in both: nothing else came before it

	wp.expect(events(
		watchEvent("PUT", "w/p/a", "1"),
		watchEvent("PUT", "w/p/b", "2"),
		watchEvent("PUT", "w/p/c", "3"),
		watchEvent("PUT", "w/p/d", "4"),
		watchEvent("PUT", "w/p/b", "5"),
		watchEvent("DELETE", "w/p/a", ""),
		watchEvent("DELETE", "w/p/b", ""),
		watchEvent("DELETE", "w/p/c", ""),
		watchEvent("DELETE", "w/p/d", ""),
		watchEvent("PUT", "w/p/e", "6"),
		watchEvent("PUT", "w/p/bz", "end"),
	)...)
	wr.expect(events(
		watchEvent("PUT", "w/p/b", "2"),
		watchEvent("PUT", "w/p/c", "3"),
		watchEvent("PUT", "w/p/b", "5"),
		watchEvent("DELETE", "w/p/b", ""),
		watchEvent("DELETE", "w/p/c", ""),
		watchEvent("PUT", "w/p/bz", "end"),
	)...)
	wp.quiet()
	wr.quiet()
	wp.stop(syscall.SIGINT, -1)
	wr.stop(syscall.SIGINT, -1)
}

func testWatchFollower(c *cluster) {
	t := c.t
	eps := c.endpoints()
	lead := c.leader(eps).Endpoint
	var followers []string
	for _, ep := range eps {
		if ep != lead {
			followers = append(followers, ep)
		}
	}
	if len(followers) != 2 {
		t.Fatalf("leader %s among %v: want 2 followers", lead, eps)
	}
	from := itoa(c.curRev() + 1)
	wf := c.startCtl(one(followers[0]), "watch", "w/f/", "--prefix", "--rev", from, "--prev-kv")
	wl := c.startCtl(one(lead), "watch", "w/f/", "--prefix", "--rev", from, "--prev-kv")

	// Writes through the leader and through both followers.
	c.must(one(lead), "put", "w/f/1", "a")
	c.must(one(followers[0]), "put", "w/f/1", "b")
	c.must(one(followers[1]), "put", "w/f/2", "c")
	c.must(one(followers[1]), "del", "w/f/1")
	want := events(
		watchEvent("PUT", "w/f/1", "a"),
		watchEvent("PUT", "w/f/1", "a", "w/f/1", "b"),
		watchEvent("PUT", "w/f/2", "c"),
		watchEvent("DELETE", "w/f/1", "b", "w/f/1", ""),
	)
	wf.expect(want...)
	wl.expect(want...)
	wf.quiet()
	wf.stop(syscall.SIGINT, -1)
	wl.stop(syscall.SIGINT, -1)
}

func testWatchCompacted(c *cluster) {
	ra := c.putRev("w/c", "c1")
	rb := c.putRev("w/c", "c2")
	c.mustEqual(nil, fmt.Sprintf("compacted revision %d\n", rb), "compaction", itoa(rb))

	// A watch from before the compacted revision is canceled by the
	// server: etcdctl reports it and exits with its "interrupted" status.
	for _, ep := range c.endpoints() {
		r := c.ctl(one(ep), "", "watch", "w/c", "--rev", itoa(ra))
		if r.code != 5 || r.stdout != "" ||
			!hasLine(r.stderr, "watch was canceled (etcdserver: mvcc: required revision has been compacted)") ||
			!hasLine(r.stderr, "Error: watch is canceled by the server") {
			c.t.Fatalf("watch from compacted revision %d on %s: want exit status 5 and the compaction message on stderr, got:\n%v", ra, ep, r)
		}
		c.t.Logf("%v", r)
	}

	// From the compacted revision itself the history is still there, as
	// for get --rev: etcd refuses only start revisions below it.
	w := c.startCtl(nil, "watch", "w/c", "--rev", itoa(rb))
	if !w.waitLines(3, settleTimeout) {
		c.t.Fatalf("watch from the compacted revision %d: want the PUT at %d, as etcd replays it:\n%v", rb, rb, w)
	}
	w.expect(watchEvent("PUT", "w/c", "c2")...)
	c.must(nil, "put", "w/c", "c3")
	w.expect(watchEvent("PUT", "w/c", "c3")...)
	w.stop(syscall.SIGINT, -1)
}

var (
	grantRE = regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n$`)
	ttlRE   = regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\), remaining\((-?\d+)s\)(?:, attached keys\(\[(.*)\]\))?\n$`)
)

// grant runs `etcdctl lease grant ttl` and returns the lease ID in hex, as
// etcdctl prints and parses it.
func (c *cluster) grant(ttl int) string {
	c.t.Helper()
	out := c.must(nil, "lease", "grant", strconv.Itoa(ttl))
	m := grantRE.FindStringSubmatch(out)
	if m == nil || m[2] != strconv.Itoa(ttl) {
		c.t.Fatalf("lease grant %d: got %q, want \"lease <16 hex digits> granted with TTL(%ds)\"", ttl, out, ttl)
	}
	if m[1] == "0000000000000000" {
		c.t.Fatalf("lease grant %d: lease ID 0", ttl)
	}
	return m[1]
}

// leaseList runs `etcdctl lease list` against eps and returns the IDs.
func (c *cluster) leaseList(eps []string) []string {
	c.t.Helper()
	out := c.must(eps, "lease", "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if want := fmt.Sprintf("found %d leases", len(lines)-1); lines[0] != want {
		c.t.Fatalf("lease list: first line %q, want %q:\n%s", lines[0], want, out)
	}
	return lines[1:]
}

func testLease(c *cluster) {
	t := c.t
	id := c.grant(10)
	idNum, _ := strconv.ParseInt(id, 16, 64)
	c.mustEqual(nil, "OK\n", "put", "l/a", "1", "--lease="+id)
	c.mustEqual(nil, "OK\n", "put", "l/b", "2", "--lease="+id)
	c.mustEqual(nil, "OK\n", "put", "l/c", "3") // no lease
	r := c.getJSON(nil, "l/", "--prefix")
	if kvString(r.Kvs) != "l/a=1,l/b=2,l/c=3" || r.Kvs[0].Lease != idNum || r.Kvs[1].Lease != idNum || r.Kvs[2].Lease != 0 {
		t.Fatalf("get l/ --prefix: want l/a and l/b with lease %d and l/c without, got %+v", idNum, r.Kvs)
	}

	// Every member answers timetolive, list and keep-alive (followers
	// ask the leader).
	for _, ep := range c.endpoints() {
		out := c.must(one(ep), "lease", "timetolive", id, "--keys")
		m := ttlRE.FindStringSubmatch(out)
		if m == nil || m[1] != id || m[2] != "10" || m[4] != "l/a l/b" {
			t.Fatalf("lease timetolive %s --keys on %s: got %q, want TTL 10 and attached keys [l/a l/b]", id, ep, out)
		}
		if rem, _ := strconv.Atoi(m[3]); rem < 1 || rem > 10 {
			t.Fatalf("lease timetolive on %s: remaining %ds, want 1..10", ep, rem)
		}
		out = c.must(one(ep), "lease", "timetolive", id)
		if m := ttlRE.FindStringSubmatch(out); m == nil || m[1] != id || m[4] != "" || strings.Contains(out, "attached keys") {
			t.Fatalf("lease timetolive %s on %s: got %q, want no attached keys", id, ep, out)
		}
		if ids := c.leaseList(one(ep)); !slices.Contains(ids, id) {
			t.Fatalf("lease list on %s: %v lacks %s", ep, ids, id)
		}
		c.mustEqual(one(ep), fmt.Sprintf("lease %s keepalived with TTL(10)\n", id), "lease", "keep-alive", "--once", id)
	}

	// Revoking the lease deletes its keys, in one revision.
	before := c.curRev()
	c.mustEqual(nil, fmt.Sprintf("lease %s revoked\n", id), "lease", "revoke", id)
	c.mustEqual(nil, "l/c\n3\n", "get", "l/", "--prefix")
	c.mustEqual(nil, "", "get", "l/a")
	if rev := c.curRev(); rev != before+1 {
		t.Fatalf("revoking a lease with two keys: revision %d -> %d, want one revision", before, rev)
	}
	c.everyMemberEventually("l/c\n3\n", "get", "l/", "--prefix")
	for _, ep := range c.endpoints() {
		c.mustEqual(one(ep), fmt.Sprintf("lease %s already expired\n", id), "lease", "timetolive", id, "--keys")
		if ids := c.leaseList(one(ep)); slices.Contains(ids, id) {
			t.Fatalf("lease list on %s after revoke: %v still has %s", ep, ids, id)
		}
	}

	// Errors.
	const notFound = "etcdserver: requested lease not found"
	c.mustFail(nil, "failed to revoke lease ("+notFound+")", "lease", "revoke", id)
	c.mustFail(nil, "failed to revoke lease ("+notFound+")", "lease", "revoke", "1234abcd")
	c.mustFail(nil, notFound, "put", "l/d", "4", "--lease="+id)
	c.mustEqual(nil, "", "get", "l/d")
	kr := c.ctl(nil, "", "lease", "keep-alive", "--once", id)
	if kr.code != 2 || !hasLine(kr.stderr, "Error: "+notFound) {
		t.Fatalf("keep-alive --once of a revoked lease: want exit status 2 and %q, got:\n%v", "Error: "+notFound, kr)
	}
	c.mustFail(nil, "failed to grant lease (etcdserver: too large lease TTL)", "lease", "grant", "9000000001")
}

func testLeaseExpiry(c *cluster) {
	t := c.t
	start := time.Now()
	id := c.grant(3)
	c.mustEqual(nil, "OK\n", "put", "l/short", "v", "--lease="+id)
	out := c.must(nil, "lease", "timetolive", id, "--keys")
	if m := ttlRE.FindStringSubmatch(out); m == nil || m[2] != "3" || m[4] != "l/short" {
		t.Fatalf("lease timetolive %s --keys: got %q, want TTL 3 and the key l/short", id, out)
	}
	w := c.startCtl(nil, "watch", "l/short", "--rev", itoa(c.curRev()+1))

	// Nobody keeps the lease alive: the leader revokes it after its TTL,
	// which deletes the key.
	eventually(t, 3*time.Second+settleTimeout, "key of an expired lease deleted", func() error {
		r := c.ctl(nil, "", "get", "l/short")
		if r.code != 0 || r.stdout != "" {
			return fmt.Errorf("want no key:\n%v", r)
		}
		return nil
	})
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("a lease granted with TTL 3s expired after %v", took)
	}
	w.expect(watchEvent("DELETE", "l/short", "")...)
	w.stop(syscall.SIGINT, -1)
	c.mustEqual(nil, fmt.Sprintf("lease %s already expired\n", id), "lease", "timetolive", id)
	if ids := c.leaseList(nil); slices.Contains(ids, id) {
		t.Fatalf("lease list after expiry: %v still has %s", ids, id)
	}
	c.everyMemberEventually("", "get", "l/short")
}

// lockKeyRE matches the key etcdctl lock prints: the lock name, a slash and
// the session's lease ID in hex.
var lockKeyRE = regexp.MustCompile(`^mylock/[0-9a-f]+$`)

// waitKeys waits until `get prefix --prefix --keys-only` lists n keys and
// returns them, oldest first.
func (c *cluster) waitKeys(prefix string, n int) []string {
	c.t.Helper()
	var keys []string
	eventually(c.t, settleTimeout, fmt.Sprintf("%d keys under %s", n, prefix), func() error {
		r := c.getJSON(nil, prefix, "--prefix", "--keys-only", "--sort-by=CREATE")
		keys = nil
		for _, kv := range r.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if len(keys) != n {
			return fmt.Errorf("keys %q, want %d", keys, n)
		}
		return nil
	})
	return keys
}

func testLock(c *cluster) {
	t := c.t
	// The holder prints the lock's key (and its empty value) once it
	// holds the lock, then holds it until signalled.
	holder := c.startCtl(nil, "lock", "mylock")
	hk := holder.next(2)
	if !lockKeyRE.MatchString(hk[0]) || hk[1] != "" {
		t.Fatalf("lock printed %q, want the lock key and an empty value:\n%v", hk, holder)
	}
	if keys := c.waitKeys("mylock/", 1); keys[0] != hk[0] {
		t.Fatalf("lock keys %q, want the holder's %s", keys, hk[0])
	}

	// A second lock runs a command once it holds the lock: etcdctl
	// listing the lock's keys, which then must be its own key only.
	waiter := c.startCtl(nil, "lock", "mylock", "--",
		etcdctlBin, "--endpoints="+strings.Join(c.endpoints(), ","), "get", "mylock/", "--prefix", "--keys-only")
	keys := c.waitKeys("mylock/", 2)
	if keys[0] != hk[0] || !lockKeyRE.MatchString(keys[1]) {
		t.Fatalf("lock keys %q, want the holder's %s and the waiter's", keys, hk[0])
	}
	wk := keys[1]
	c.mustEqual(nil, hk[0]+"\n\n", "get", "mylock/", "--prefix", "--limit=1", "--sort-by=CREATE")
	waiter.quiet()
	holder.quiet()

	// SIGTERM: the holder unlocks (deletes its key) and exits 0; the
	// waiter acquires, runs its command and unlocks.
	holder.stop(syscall.SIGTERM, 0)
	waiter.expect(wk, "")
	waiter.waitExit(0)
	c.mustEqual(nil, "", "get", "mylock/", "--prefix")

	// A holder killed outright keeps the lock until its session's lease
	// expires (--ttl seconds without keep-alives).
	holder = c.startCtl(nil, "lock", "mylock", "--ttl", "2")
	hk = holder.next(2)
	if !lockKeyRE.MatchString(hk[0]) || hk[1] != "" {
		t.Fatalf("lock --ttl 2 printed %q, want the lock key and an empty value:\n%v", hk, holder)
	}
	waiter = c.startCtl(nil, "lock", "mylock")
	keys = c.waitKeys("mylock/", 2)
	if keys[0] != hk[0] {
		t.Fatalf("lock keys %q, want the holder's %s first", keys, hk[0])
	}
	waiter.quiet()
	holder.stop(syscall.SIGKILL, -1)
	waiter.expect(keys[1], "")
	c.mustEqual(nil, keys[1]+"\n\n", "get", "mylock/", "--prefix")
	waiter.stop(syscall.SIGTERM, 0)
	c.mustEqual(nil, "", "get", "mylock/", "--prefix")
}

// electKeyRE matches an election's proposal key: the election name, a
// slash and the campaigner's lease ID in hex.
var electKeyRE = regexp.MustCompile(`^myelection/[0-9a-f]+$`)

func testElect(c *cluster) {
	t := c.t
	// A campaigner that wins prints its proposal's key and value, then
	// leads until signalled.
	p1 := c.startCtl(nil, "elect", "myelection", "p1")
	k1 := p1.next(2)
	if !electKeyRE.MatchString(k1[0]) || k1[1] != "p1" {
		t.Fatalf("elect myelection p1 printed %q, want the proposal key and p1:\n%v", k1, p1)
	}

	// An observer prints the current leader's proposal, then every new
	// leader's. It runs on a follower.
	lead := c.leader(c.endpoints()).Endpoint
	var follower string
	for _, ep := range c.endpoints() {
		if ep != lead {
			follower = ep
			break
		}
	}
	obs := c.startCtl(one(follower), "elect", "-l", "myelection")
	obs.expect(k1[0], "p1")

	// A second campaigner waits behind the first.
	p2 := c.startCtl(nil, "elect", "myelection", "p2")
	keys := c.waitKeys("myelection/", 2)
	if keys[0] != k1[0] || !electKeyRE.MatchString(keys[1]) {
		t.Fatalf("election keys %q, want p1's %s and p2's", keys, k1[0])
	}
	p2.quiet()
	obs.quiet()

	// SIGTERM: p1 resigns and exits 0; p2 takes over and the observer
	// reports it.
	p1.stop(syscall.SIGTERM, 0)
	p2.expect(keys[1], "p2")
	obs.expect(keys[1], "p2")
	c.mustEqual(nil, keys[1]+"\np2\n", "get", "myelection/", "--prefix")

	p2.stop(syscall.SIGTERM, 0)
	c.mustEqual(nil, "", "get", "myelection/", "--prefix")
	obs.quiet()
	obs.stop(syscall.SIGTERM, 0)
}

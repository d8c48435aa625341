package embed

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-db/synod/server"
)

// testMember is one member of a test cluster with its fixed addresses,
// so that it can be stopped and restarted on the same URLs.
type testMember struct {
	name       string
	dir        string
	peerURL    string
	clientAddr string
	m          *Member
}

// testCluster is a cluster of members in this process on loopback TCP.
type testCluster struct {
	t       testing.TB
	members []*testMember
	tune    func(*server.Config)
}

// handedOut remembers every address freeAddr returned in this test
// process: the kernel may give a closed port out again at once, and two
// members of one cluster on the same port make an invalid configuration.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// freeAddr returns a loopback address that was free a moment ago and that
// no earlier call in this process returned.
func freeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SYNOD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestCluster starts n members; tune adjusts every member's config.
func newTestCluster(t testing.TB, n int, tune func(*server.Config)) *testCluster {
	t.Helper()
	before := runtime.NumGoroutine()
	c := &testCluster{t: t, tune: tune}
	var initial []string
	for i := range n {
		tm := &testMember{
			name:       fmt.Sprintf("m%d", i),
			dir:        filepath.Join(t.TempDir(), fmt.Sprintf("m%d", i)),
			peerURL:    "http://" + freeAddr(t),
			clientAddr: freeAddr(t),
		}
		c.members = append(c.members, tm)
		initial = append(initial, tm.name+"="+tm.peerURL)
	}
	ic, err := server.ParseInitialCluster(strings.Join(initial, ","))
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range c.members {
		c.start(tm, ic, "new")
	}
	t.Cleanup(func() {
		for _, tm := range c.members {
			if tm.m != nil {
				tm.m.Kill()
			}
		}
		checkNoLeak(t, before)
	})
	c.waitLeader()
	return c
}

// checkNoLeak fails if goroutines started by the test outlive it.
func checkNoLeak(t testing.TB, before int) {
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 { // the HTTP client's idle conns may linger briefly
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *testCluster) config(tm *testMember, ic map[string][]string, state string) Config {
	cfg := server.Config{
		Name:                tm.name,
		DataDir:             tm.dir,
		HeartbeatInterval:   10 * time.Millisecond,
		ElectionTimeout:     100 * time.Millisecond,
		PreVote:             true,
		PeerURLs:            []string{tm.peerURL},
		ClientURLs:          []string{"http://" + tm.clientAddr},
		InitialCluster:      ic,
		InitialClusterState: state,
		Logger:              testLogger(c.t).With("m", tm.name),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return Config{Config: cfg}
}

// start (re)starts tm on its URLs.
func (c *testCluster) start(tm *testMember, ic map[string][]string, state string) {
	c.t.Helper()
	cfg := c.config(tm, ic, state)
	var err error
	// The ports were free a moment ago; another test may have taken one,
	// or the previous incarnation's sockets may linger: retry briefly.
	for range 50 {
		var peerLn, clientLn net.Listener
		peerLn, err = net.Listen("tcp", strings.TrimPrefix(tm.peerURL, "http://"))
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		clientLn, err = net.Listen("tcp", tm.clientAddr)
		if err != nil {
			peerLn.Close()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		cfg.PeerListener, cfg.ClientListeners = peerLn, []net.Listener{clientLn}
		tm.m, err = Start(cfg)
		break
	}
	if err != nil {
		c.t.Fatalf("start %s: %v", tm.name, err)
	}
}

func (c *testCluster) stop(i int) {
	c.members[i].m.Kill()
	c.members[i].m = nil
}

func (c *testCluster) restart(i int) {
	c.start(c.members[i], nil, "new")
}

// waitLeader waits until every running member knows the same leader.
func (c *testCluster) waitLeader() uint64 {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var lead uint64
		agree := true
		for _, tm := range c.members {
			if tm.m == nil {
				continue
			}
			l := tm.m.Server.Leader()
			if l == 0 || (lead != 0 && l != lead) {
				agree = false
				break
			}
			lead = l
		}
		if agree && lead != 0 {
			return lead
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected within 20s")
	return 0
}

func (c *testCluster) leaderIndex() int {
	lead := c.waitLeader()
	for i, tm := range c.members {
		if tm.m != nil && tm.m.Server.ID() == lead {
			return i
		}
	}
	c.t.Fatal("leader is not a running member")
	return -1
}

// client returns a client of the given members (all running if none).
func (c *testCluster) client(idx ...int) *clientv3.Client {
	c.t.Helper()
	var eps []string
	if len(idx) == 0 {
		for i, tm := range c.members {
			if tm.m != nil {
				idx = append(idx, i)
			}
		}
	}
	for _, i := range idx {
		eps = append(eps, c.members[i].clientAddr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

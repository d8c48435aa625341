package framework

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// handedOut remembers every address FreeAddr returned in this process:
// the kernel may give a closed port out again at once, and two members
// on one port make an invalid cluster.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// FreeAddr returns a loopback address that was free a moment ago and that
// no earlier call in this process returned.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeLoopbackAddr is FreeAddr for code without a testing.TB (harnesses
// that report errors).
func FreeLoopbackAddr() (string, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr, nil
		}
	}
}

// WaitTimeout bounds every WaitFor.
const WaitTimeout = 20 * time.Second

// WaitFor polls cond until it holds, failing the test after WaitTimeout.
// It is how tests wait: never a fixed sleep standing in for a condition.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Context returns a context that ends with the test or after 30s.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Logger is the logger of test members: silent unless SYNOD_TEST_LOG is
// set.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("SYNOD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Seed returns the seed of a randomized test: SYNOD_<NAME>_SEED if set
// (replaying a failure), else def, so that every run is the same unless
// asked otherwise. It logs the seed and how to replay it.
func Seed(t testing.TB, name string, def int64) int64 {
	t.Helper()
	env := "SYNOD_" + strings.ToUpper(name) + "_SEED"
	seed := def
	if v := os.Getenv(env); v != "" {
		s, err := strconv.ParseInt(strings.Split(v, ",")[0], 10, 64)
		if err != nil {
			t.Fatalf("%s=%q is not a number", env, v)
		}
		seed = s
	}
	t.Logf("seed %d (replay: %s=%d go test -run '^%s$')", seed, env, seed, t.Name())
	return seed
}

// ClientFor returns a client of eps that gives up on a dead endpoint
// quickly and logs nothing, for harnesses that reconnect as members come
// and go.
func ClientFor(eps []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
}

// Sleep waits for d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

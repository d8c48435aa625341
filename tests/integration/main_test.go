// Package integration holds the integration tests of whole synod clusters
// (in this process, over loopback TCP, driven by the real etcd client):
// reads and writes on every member, failures, restarts, catch-up,
// membership, every etcd error, watches, leases, the concurrency recipes,
// and members as processes killed with SIGKILL. Clusters come from
// tests/framework; independent tests run in parallel.
package integration

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs a member instead of the tests when started as a child
// (see TestKill9), and otherwise checks that no goroutine outlives the
// tests: every member, client and stream they started must be stopped.
func TestMain(m *testing.M) {
	if raw := os.Getenv(childEnv); raw != "" {
		runChild(raw)
		return
	}
	flag.Parse()
	if !flagSet("test.parallel") {
		// Cluster tests mostly wait (for elections, TTLs, timeouts), so
		// more of them than cores can run at once.
		_ = flag.Set("test.parallel", strconv.Itoa(max(4, runtime.GOMAXPROCS(0))))
	}
	goleak.VerifyTestMain(m)
}

// flagSet reports whether the command line set flag name.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

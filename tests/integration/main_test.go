// Package integration holds the integration tests of whole synod clusters
// (in this process, over loopback TCP, driven by the real etcd client):
// reads and writes on every member, failures, restarts, catch-up,
// membership, every etcd error, watches, leases, the concurrency recipes,
// and members as processes killed with SIGKILL. Clusters come from
// tests/framework; independent tests run in parallel (as many at
// once as -parallel, GOMAXPROCS by default: more starve the members'
// heartbeats on a small machine and cause spurious elections).
package integration

import (
	"os"
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
	goleak.VerifyTestMain(m)
}

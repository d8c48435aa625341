package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

// startMember starts a one-member synod in the test process and returns
// its client endpoint.
func startMember(t *testing.T) string {
	t.Helper()
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerURL, clientURL := "http://"+peer.Addr().String(), "http://"+client.Addr().String()
	ic, err := server.ParseInitialCluster("m0=" + peerURL)
	if err != nil {
		t.Fatal(err)
	}
	m, err := embed.Start(embed.Config{
		Config: server.Config{
			Name: "m0", DataDir: filepath.Join(t.TempDir(), "m0"),
			HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
			PeerURLs: []string{peerURL}, ClientURLs: []string{clientURL},
			InitialCluster: ic, InitialClusterState: "new",
		},
		PeerListener: peer, ClientListeners: []net.Listener{client},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(5 * time.Second) })
	return strings.TrimPrefix(clientURL, "http://")
}

// TestWatchLatencyMeasuresEveryPut runs the workload against a real
// member: every put gets its event's latency, no error, and the latency
// covers at least the put itself.
func TestWatchLatencyMeasuresEveryPut(t *testing.T) {
	ep := startMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := Workload{Name: "watch-latency-leader", Kind: kindWatchLatency, Conns: 1, Clients: 1, Total: 50, KeySize: 8, ValSize: 16, WatchOn: "leader"}
	r, err := runWorkload(ctx, []string{ep, ep}, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats.Requests != 50 || r.Stats.Errors != 0 || len(r.ErrorLog) != 0 {
		t.Fatalf("want 50 measured puts and no errors: %+v %v", r.Stats, r.ErrorLog)
	}
	if r.Stats.Fastest <= 0 || r.Stats.P99 < r.Stats.P50 || r.Stats.Slowest > eventTimeout {
		t.Fatalf("implausible latencies: %+v", r.Stats)
	}
	if _, err := runWorkload(ctx, []string{ep}, w, nil); err == nil {
		t.Fatal("a watch-latency run with one endpoint should be refused")
	}
	w.WatchOn = "elsewhere"
	if err := w.validate(); err == nil {
		t.Fatal("a watcher placed neither on the leader nor on a follower should be refused")
	}
}

// TestKeepAliveWorkload renews leases against a real member: every
// request is a successful renewal of its client's own lease.
func TestKeepAliveWorkload(t *testing.T) {
	ep := startMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := Workload{Name: "lease-keepalive-c4", Kind: kindKeepAlive, Conns: 2, Clients: 4, Total: 40, KeySize: 1}
	if err := w.validate(); err != nil {
		t.Fatal(err)
	}
	r, err := runWorkload(ctx, []string{ep}, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats.Requests != 40 || r.Stats.Errors != 0 || len(r.ErrorLog) != 0 || r.Stats.Fastest <= 0 {
		t.Fatalf("want 40 renewals and no errors: %+v %v", r.Stats, r.ErrorLog)
	}
}

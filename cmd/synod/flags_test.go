package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestDefaults checks that no flags give a single member on localhost
// with etcd's defaults.
func TestDefaults(t *testing.T) {
	cfg, _, err := parseFlags(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "default" || cfg.DataDir != "default.etcd" {
		t.Errorf("name %q data dir %q", cfg.Name, cfg.DataDir)
	}
	if got := cfg.InitialCluster["default"]; len(got) != 1 || got[0] != "http://localhost:2380" {
		t.Errorf("initial cluster %v", cfg.InitialCluster)
	}
	if cfg.ListenClientURLs[0] != "http://localhost:2379" || cfg.ClientURLs[0] != "http://localhost:2379" || cfg.ListenPeerURLs[0] != "http://localhost:2380" {
		t.Errorf("urls %v %v %v", cfg.ListenClientURLs, cfg.ClientURLs, cfg.ListenPeerURLs)
	}
	if cfg.HeartbeatInterval != 100*time.Millisecond || cfg.ElectionTimeout != time.Second || !cfg.PreVote || cfg.SnapshotCount != 10000 {
		t.Errorf("raft settings %+v", cfg.Config)
	}
	if cfg.MaxTxnOps != 128 || cfg.MaxRequestBytes != 1536*1024 || cfg.InitialClusterState != "new" || cfg.InitialClusterToken != "etcd-cluster" {
		t.Errorf("limits %+v", cfg.Config)
	}
}

// TestEnvironment checks ETCD_* and SYNOD_* variables and that flags win.
func TestEnvironment(t *testing.T) {
	cfg, _, err := parseFlags([]string{"--snapshot-count", "7"}, env(map[string]string{
		"ETCD_NAME":           "infra1",
		"ETCD_SNAPSHOT_COUNT": "99",
		"SYNOD_DATA_DIR":      "/tmp/x",
		"ETCD_DATA_DIR":       "/tmp/y",
		"ETCD_PRE_VOTE":       "false",
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "infra1" || cfg.SnapshotCount != 7 || cfg.DataDir != "/tmp/x" || cfg.PreVote {
		t.Errorf("got name %q count %d dir %q prevote %v", cfg.Name, cfg.SnapshotCount, cfg.DataDir, cfg.PreVote)
	}
	if got := cfg.InitialCluster["infra1"]; len(got) != 1 {
		t.Errorf("default initial cluster follows the name: %v", cfg.InitialCluster)
	}
}

// TestBadFlags checks that every invalid flag is refused with a message
// naming it.
func TestBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"--initial-cluster-state", "old"}, nil, "initial-cluster-state"},
		{[]string{"--election-timeout", "100"}, nil, "election-timeout"},
		{[]string{"--heartbeat-interval", "0"}, nil, "heartbeat-interval"},
		{[]string{"--snapshot-count", "-1"}, nil, "snapshot-count"},
		{[]string{"--initial-cluster", "a"}, nil, "initial-cluster"},
		{[]string{"--initial-cluster", "default=ftp://x:1"}, nil, "initial-cluster"},
		{[]string{"--auto-compaction-mode", "daily"}, nil, "auto-compaction-mode"},
		{[]string{"--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"}, nil, "auto-compaction-retention"},
		{[]string{"--log-level", "loud"}, nil, "log-level"},
		{[]string{"--logger", "capnslog"}, nil, "logger"},
		{[]string{"--max-request-bytes", "999999999"}, nil, "max-request-bytes"},
		{nil, map[string]string{"ETCD_SNAPSHOT_COUNT": "many"}, "ETCD_SNAPSHOT_COUNT"},
		{[]string{"stray"}, nil, "stray"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		code := run(c.args, env(c.env), io.Discard, &stderr)
		if code != 2 {
			t.Errorf("%v: exit code %d, want 2", c.args, code)
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: message %q does not mention %q", c.args, stderr.String(), c.want)
		}
	}
}

// TestLeaseCheckpointFlags checks that checkpointing is off by default
// and takes its interval when enabled.
func TestLeaseCheckpointFlags(t *testing.T) {
	cfg, _, err := parseFlags(nil, env(nil), &bytes.Buffer{})
	if err != nil || cfg.Lease.CheckpointInterval != 0 {
		t.Fatalf("default: %v %v", cfg.Lease, err)
	}
	cfg, _, err = parseFlags([]string{"--experimental-enable-lease-checkpoint", "--experimental-lease-checkpoint-interval", "30s"}, env(nil), &bytes.Buffer{})
	if err != nil || cfg.Lease.CheckpointInterval != 30*time.Second {
		t.Fatalf("enabled: %v %v", cfg.Lease, err)
	}
}

// TestRetention checks both auto compaction modes.
func TestRetention(t *testing.T) {
	ac, err := parseRetention("periodic", "1")
	if err != nil || ac.Period != time.Hour {
		t.Errorf("periodic 1: %+v %v", ac, err)
	}
	ac, err = parseRetention("periodic", "30m")
	if err != nil || ac.Period != 30*time.Minute {
		t.Errorf("periodic 30m: %+v %v", ac, err)
	}
	ac, err = parseRetention("revision", "1000")
	if err != nil || ac.Revisions != 1000 {
		t.Errorf("revision 1000: %+v %v", ac, err)
	}
}

// TestStopIsBounded checks that a stop that hangs does not keep the
// process alive past its grace, that a second signal ends it at once,
// and that a stop that finishes reports success.
func TestStopIsBounded(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	hang := make(chan struct{})
	defer close(hang)
	start := time.Now()
	if code := stopBounded(lg, func() { <-hang }, 50*time.Millisecond, nil); code != 1 {
		t.Fatalf("a hung stop returned %d, want 1", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a hung stop returned after %v, grace 50ms", d)
	}
	sigs := make(chan os.Signal, 1)
	sigs <- os.Interrupt
	if code := stopBounded(lg, func() { <-hang }, time.Hour, sigs); code != 1 {
		t.Fatalf("a second signal returned %d, want 1", code)
	}
	if code := stopBounded(lg, func() {}, time.Hour, nil); code != 0 {
		t.Fatalf("a clean stop returned %d, want 0", code)
	}
}

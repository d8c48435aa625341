package main

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

// startMember runs a one-member synod in the test process and returns its
// client address.
func startMember(t *testing.T) string {
	t.Helper()
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clientLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerURL := "http://" + peerLn.Addr().String()
	m, err := embed.Start(embed.Config{
		Config: server.Config{
			Name: "live", DataDir: filepath.Join(t.TempDir(), "live.etcd"),
			HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
			PeerURLs: []string{peerURL}, ClientURLs: []string{"http://" + clientLn.Addr().String()},
			InitialCluster: map[string][]string{"live": {peerURL}},
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
		PeerListener:    peerLn,
		ClientListeners: []net.Listener{clientLn},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	deadline := time.Now().Add(10 * time.Second)
	for m.Server.Leader() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return clientLn.Addr().String()
}

// TestLiveServer runs the everyday commands against a real member.
func TestLiveServer(t *testing.T) {
	addr := startMember(t)
	check := func(r result, want string) {
		t.Helper()
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("exit %d, stdout %q, stderr %q; want %q in stdout", r.code, r.stdout, r.stderr, want)
		}
	}
	check(runReal(t, addr, "", "put", "greeting", "hello"), "OK")
	check(runReal(t, addr, "", "get", "greeting"), "greeting\nhello\n")
	check(runReal(t, addr, "", "put", "greeting", "again", "--prev-kv"), "hello")
	check(runReal(t, addr, "value(\"greeting\") = \"again\"\n\nput result yes\n\nput result no\n", "txn"), "SUCCESS")
	check(runReal(t, addr, "", "get", "result", "--print-value-only"), "yes")
	check(runReal(t, addr, "", "get", "", "--from-key", "--keys-only", "-w", "json"), "\"count\":2")
	check(runReal(t, addr, "", "del", "result"), "1")
	check(runReal(t, addr, "", "member", "list", "-w", "table"), "live")
	check(runReal(t, addr, "", "endpoint", "status", "-w", "table"), addr)
	check(runReal(t, addr, "", "endpoint", "health"), "is healthy")
	check(runReal(t, addr, "", "compaction", "2", "--physical"), "compacted revision 2")
	check(runReal(t, addr, "", "defrag"), "Finished defragmenting")
	check(runReal(t, addr, "", "alarm", "list"), "")
	if r := runReal(t, addr, "", "get", "greeting", "--rev", "1"); r.code == 0 || !strings.Contains(r.stderr, "compacted") {
		t.Fatalf("get at a compacted revision: %+v", r)
	}

	// snapshot save, then restore into a new data directory that a member
	// can start from.
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	check(runReal(t, addr, "", "snapshot", "save", file), "Snapshot saved")
	restored := filepath.Join(dir, "restored.etcd")
	check(runReal(t, addr, "", "snapshot", "restore", file, "--name", "r1", "--data-dir", restored,
		"--initial-cluster", "r1=http://127.0.0.1:1", "--initial-advertise-peer-urls", "http://127.0.0.1:1"), "Restored")
	if _, err := os.Stat(filepath.Join(restored, "member", "wal")); err != nil {
		t.Fatalf("restored data directory has no WAL: %v", err)
	}
	if r := runReal(t, addr, "", "snapshot", "restore", file, "--name", "r1", "--data-dir", restored,
		"--initial-cluster", "r1=http://127.0.0.1:1", "--initial-advertise-peer-urls", "http://127.0.0.1:1"); r.code == 0 {
		t.Fatal("restore over an existing directory succeeded")
	}
}

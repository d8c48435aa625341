package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

// synodctlBin is the synodctl binary the tests run: etcdctl's commands
// print to the process's stdout and exit on errors, so they are tested
// as the program users run.
var synodctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "synodctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	synodctlBin = filepath.Join(dir, "synodctl")
	if out, err := exec.Command("go", "build", "-o", synodctlBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build synodctl: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of synodctl printed and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

// run runs synodctl against the member at addr with stdin and args.
func run(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, synodctlBin, append([]string{"--endpoints", addr}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run synodctl %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// startMember runs a one-member synod in the test process on peerLn
// (a new listener if nil) and returns its client address. dataDir, if
// not empty, is the data directory to start from.
func startMember(t *testing.T, name, dataDir string, peerLn net.Listener) (string, *embed.Member) {
	t.Helper()
	var err error
	if peerLn == nil {
		if peerLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	clientLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if dataDir == "" {
		dataDir = filepath.Join(t.TempDir(), name+".etcd")
	}
	peerURL := "http://" + peerLn.Addr().String()
	m, err := embed.Start(embed.Config{
		Config: server.Config{
			Name: name, DataDir: dataDir,
			HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
			PeerURLs: []string{peerURL}, ClientURLs: []string{"http://" + clientLn.Addr().String()},
			InitialCluster: map[string][]string{name: {peerURL}},
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
		PeerListener:    peerLn,
		ClientListeners: []net.Listener{clientLn},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	for deadline := time.Now().Add(10 * time.Second); m.Server.Leader() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 10s")
		}
		select {
		case <-m.Server.LeaderChanged():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return clientLn.Addr().String(), m
}

func check(t *testing.T, r result, want string) {
	t.Helper()
	if r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %q in stdout", r.code, r.stdout, r.stderr, want)
	}
}

// TestEverydayCommands runs etcdctl's everyday commands, through
// synodctl, against a real member.
func TestEverydayCommands(t *testing.T) {
	addr, _ := startMember(t, "live", "", nil)
	check(t, run(t, addr, "", "put", "greeting", "hello"), "OK")
	check(t, run(t, addr, "", "get", "greeting"), "greeting\nhello\n")
	check(t, run(t, addr, "", "put", "greeting", "again", "--prev-kv"), "hello")
	check(t, run(t, addr, "value(\"greeting\") = \"again\"\n\nput result yes\n\nput result no\n\n", "txn"), "SUCCESS")
	check(t, run(t, addr, "", "get", "result", "--print-value-only"), "yes")
	check(t, run(t, addr, "", "get", "", "--from-key", "--keys-only", "-w", "json"), "\"count\":2")
	check(t, run(t, addr, "", "del", "result"), "1")
	check(t, run(t, addr, "", "member", "list", "-w", "table"), "live")
	check(t, run(t, addr, "", "endpoint", "status", "-w", "table"), addr)
	check(t, run(t, addr, "", "endpoint", "health"), "is healthy")
	check(t, run(t, addr, "", "lease", "grant", "60"), "granted with TTL(60s)")
	check(t, run(t, addr, "", "compaction", "2", "--physical"), "compacted revision 2")
	check(t, run(t, addr, "", "defrag"), "Finished defragmenting")
	check(t, run(t, addr, "", "alarm", "list"), "")
	check(t, run(t, addr, "", "version"), "API version: 3.")
	if r := run(t, addr, "", "get", "greeting", "--rev", "1"); r.code != 1 || !strings.Contains(r.stderr, "required revision has been compacted") {
		t.Fatalf("get at a compacted revision: %+v, want etcd's error and exit code 1", r)
	}
	if r := run(t, addr, "", "get"); r.code == 0 || !strings.Contains(r.stderr, "get command needs one argument") {
		t.Fatalf("get without a key: %+v, want etcdctl's usage error", r)
	}
}

// TestSnapshotSaveAndRestore saves a member's snapshot with etcdctl's
// `snapshot save`, restores it with synod's `snapshot restore`, and
// starts a member from the restored directory, which serves the keys.
func TestSnapshotSaveAndRestore(t *testing.T) {
	addr, _ := startMember(t, "origin", "", nil)
	for i := range 20 {
		check(t, run(t, addr, "", "put", fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)), "OK")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	check(t, run(t, addr, "", "snapshot", "save", file), "Snapshot saved")

	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerURL := "http://" + peerLn.Addr().String()
	restored := filepath.Join(dir, "restored.etcd")
	restore := []string{"snapshot", "restore", file, "--name", "r1", "--data-dir", restored,
		"--initial-cluster", "r1=" + peerURL, "--initial-advertise-peer-urls", peerURL}
	check(t, run(t, addr, "", restore...), "Restored")
	if r := run(t, addr, "", restore...); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("restore over an existing directory: %+v, want an error", r)
	}
	if r := run(t, addr, "", "snapshot", "restore"); r.code == 0 {
		t.Fatalf("restore without a file: %+v", r)
	}

	raddr, _ := startMember(t, "r1", restored, peerLn)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{raddr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 20 || string(resp.Kvs[7].Value) != "v7" {
		t.Fatalf("restored member holds %d keys (k07=%q), want the 20 saved", len(resp.Kvs), resp.Kvs)
	}
}

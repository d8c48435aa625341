package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseStatusField(t *testing.T) {
	status := []byte("Name:\tsynod\nVmPeak:\t  900000 kB\nVmHWM:\t   123456 kB\nVmRSS:\t  100000 kB\n")
	v, err := parseStatusField(status, "VmHWM")
	if err != nil || v != 123456*1024 {
		t.Errorf("VmHWM = %d, %v", v, err)
	}
	if _, err := parseStatusField(status, "VmSwap"); err == nil {
		t.Errorf("missing field: no error")
	}
	if _, err := parseStatusField([]byte("VmHWM: lots\n"), "VmHWM"); err == nil {
		t.Errorf("bad field: no error")
	}
	// Our own process has a peak RSS.
	if v, err := peakRSS(os.Getpid()); err != nil || v <= 0 {
		t.Errorf("peakRSS(self) = %d, %v", v, err)
	}
}

func TestClusterLayout(t *testing.T) {
	dir := t.TempDir()
	o := ClusterOptions{Size: 3, BasePort: 40000, SnapshotCount: 10000, HeartbeatInterval: 100, ElectionTimeout: 1000, LogLevel: "info"}
	c, err := newCluster("synod", "/bin/false", dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Members) != 3 || c.Members[2].ClientURL != "http://127.0.0.1:40020" || c.Members[2].PeerURL != "http://127.0.0.1:40021" {
		t.Fatalf("layout: %+v", c.Members[2])
	}
	args := c.Members[1].args
	flagVal := func(name string) string {
		i := slices.Index(args, name)
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("no %s in %v", name, args)
		}
		return args[i+1]
	}
	if flagVal("--name") != "synod-2" || flagVal("--initial-cluster") != "synod-1=http://127.0.0.1:40001,synod-2=http://127.0.0.1:40011,synod-3=http://127.0.0.1:40021" {
		t.Errorf("args: %v", args)
	}
	if flagVal("--heartbeat-interval") != "100" || flagVal("--election-timeout") != "1000" || flagVal("--snapshot-count") != "10000" || flagVal("--initial-cluster-state") != "new" {
		t.Errorf("args: %v", args)
	}
	if flagVal("--data-dir") != filepath.Join(dir, "synod-2.data") {
		t.Errorf("data dir %s", flagVal("--data-dir"))
	}
	// Both systems get the same flags but for names.
	e, _ := newCluster("etcd", "/bin/false", dir, o)
	a := strings.ReplaceAll(strings.Join(e.Members[0].args, " "), "etcd-", "X-")
	b := strings.ReplaceAll(strings.Join(c.Members[0].args, " "), "synod-", "X-")
	a = a[:strings.Index(a, "--initial-cluster-token")]
	b = b[:strings.Index(b, "--initial-cluster-token")]
	if a != b {
		t.Errorf("flags differ:\n%s\n%s", a, b)
	}
	if _, err := newCluster("x", "/bin/false", dir, ClusterOptions{Size: 3, BasePort: 80}); err == nil {
		t.Errorf("privileged base port accepted")
	}
}

func TestPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	err = checkPortFree(port)
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(port)) || !strings.Contains(err.Error(), "-base-port") {
		t.Errorf("taken port: %v", err)
	}
}

func TestMemberFailsToStart(t *testing.T) {
	// A "server" that writes a line and exits: the error names the
	// member and carries the tail of its log.
	dir := t.TempDir()
	script := filepath.Join(dir, "fake")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"bind: address already in use\" >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := &Member{Name: "fake-1", ClientURL: "http://127.0.0.1:1", LogPath: filepath.Join(dir, "fake-1.log")}
	if err := m.start(script); err != nil {
		t.Fatal(err)
	}
	_, err := m.waitServing(t.Context(), 10e9)
	if err == nil || !strings.Contains(err.Error(), "fake-1 exited") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error: %v", err)
	}
}

func TestTailFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	os.WriteFile(p, []byte(b.String()), 0o644)
	got := tailFile(p, 3)
	if got != "    line 97\n    line 98\n    line 99" {
		t.Errorf("tail: %q", got)
	}
	if !strings.Contains(tailFile(p+".nope", 3), "no such file") {
		t.Errorf("missing file")
	}
}

package endpoint

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:2379":    "127.0.0.1:2379",
		"http://[::1]:2379/":       "[::1]:2379",
		"unix://localhost:2379":    "unix:localhost:2379",
		"unix:localhost:2379":      "unix:localhost:2379",
		"unix:///run/synod.sock":   "unix:/run/synod.sock",
		"unix://":                  "",
		"https://127.0.0.1:2379":   "",
		"unixs://localhost:2379":   "",
		"http://127.0.0.1":         "",
		"http://127.0.0.1:0":       "",
		"http://127.0.0.1:2379/v3": "",
		"http://u:p@127.0.0.1:80":  "",
		"tcp://127.0.0.1:2379":     "",
		"127.0.0.1:2379":           "",
	} {
		got, err := Parse(in)
		if want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) = %q, %v; want ErrInvalid", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"https://127.0.0.1:2379", "unixs://localhost:2379"} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), "TLS") {
			t.Errorf("Parse(%q): %v, want an error naming TLS", in, err)
		}
	}
}

// TestListenUnix: a socket file left behind by a crashed process does not
// stop the next one from listening, the socket answers Dial, and Close
// removes the file.
func TestListenUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "localhost:2379")
	if err := os.WriteFile(path, nil, 0o600); err != nil { // a stale file
		t.Fatal(err)
	}
	ln, err := Listen("unix://"+path, Socket{})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := Parse("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := Dial(context.Background(), &net.Dialer{}, addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
}

// TestListenReusePort: with ReusePort, two listeners bind one address at
// once (without, the second fails: the address is in use).
func TestListenReusePort(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + probe.Addr().String()
	probe.Close()
	first, err := Listen(url, Socket{ReusePort: true, ReuseAddress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := Listen(url, Socket{ReusePort: true})
	if err != nil {
		t.Fatalf("second listener with SO_REUSEPORT: %v", err)
	}
	second.Close()
	if l, err := Listen(url, Socket{}); err == nil {
		l.Close()
		t.Fatal("a listener without SO_REUSEPORT bound a used address")
	}
}

// TestMerge: a merged listener accepts the connections of each listener
// it merges, and closing it closes them all.
func TestMerge(t *testing.T) {
	var lns []net.Listener
	for range 3 {
		ln, err := Listen("http://127.0.0.1:0", Socket{})
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	m := Merge(lns...)
	if m.Addr() != lns[0].Addr() {
		t.Errorf("address %v, want the first listener's %v", m.Addr(), lns[0].Addr())
	}
	for _, ln := range lns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got.LocalAddr().String() != ln.Addr().String() {
			t.Errorf("accepted a connection to %v, dialled %v", got.LocalAddr(), ln.Addr())
		}
		got.Close()
		c.Close()
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	for _, ln := range lns {
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Errorf("%v still accepts after Close", ln.Addr())
		}
	}
}

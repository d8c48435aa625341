package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
)

const waitTimeout = 15 * time.Second

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkLeaks fails the test if, once every cleanup registered after it has
// run (they run first), more goroutines exist than when it was called.
func checkLeaks(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(waitTimeout)
		for {
			n := runtime.NumGoroutine()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutine leak: %d goroutines after the test, %d before\n%s", n, base, buf)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
}

// logBuf collects a transport's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) contains(s ...string) bool {
	out := l.String()
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, x := range s {
			if !strings.Contains(line, x) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

type snapReport struct {
	id     uint64
	status raft.SnapshotStatus
}

// testHandler records what the transport delivers.
type testHandler struct {
	mu          sync.Mutex
	got         map[uint64][]raftpb.Message // by sender
	removed     map[uint64]bool
	unreachable map[uint64]int
	snapData    map[uint64][]byte // by snapshot index, for OpenSnapshot
	openErr     error
	open        func(raftpb.SnapshotMetadata) (io.ReadCloser, error) // overrides snapData
	received    map[uint64][]byte                                    // by snapshot index, from ReceiveSnapshot
	receiveErr  error
	info        []byte
	block       chan struct{} // when set, Process waits for it to close

	processed   atomic.Int64
	snapReports chan snapReport
}

func newTestHandler() *testHandler {
	return &testHandler{
		got:         make(map[uint64][]raftpb.Message),
		removed:     make(map[uint64]bool),
		unreachable: make(map[uint64]int),
		snapData:    make(map[uint64][]byte),
		received:    make(map[uint64][]byte),
		snapReports: make(chan snapReport, 16),
	}
}

func (h *testHandler) Process(ctx context.Context, m raftpb.Message) error {
	h.mu.Lock()
	block := h.block
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	h.got[m.From] = append(h.got[m.From], m)
	h.mu.Unlock()
	h.processed.Add(1)
	return nil
}

func (h *testHandler) IsRemoved(id uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.removed[id]
}

func (h *testHandler) ReportUnreachable(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreachable[id]++
}

func (h *testHandler) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	h.snapReports <- snapReport{id, status}
}

func (h *testHandler) OpenSnapshot(meta raftpb.SnapshotMetadata) (io.ReadCloser, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.openErr != nil {
		return nil, h.openErr
	}
	if h.open != nil {
		return h.open(meta)
	}
	data, ok := h.snapData[meta.Index]
	if !ok {
		return nil, fmt.Errorf("no snapshot at index %d", meta.Index)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (h *testHandler) ReceiveSnapshot(meta raftpb.SnapshotMetadata, data io.Reader) error {
	h.mu.Lock()
	rerr := h.receiveErr
	h.mu.Unlock()
	if rerr != nil {
		return rerr
	}
	b, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.received[meta.Index] = b
	h.mu.Unlock()
	return nil
}

func (h *testHandler) ClusterInfo() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info
}

func (h *testHandler) messages(from uint64) []raftpb.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]raftpb.Message(nil), h.got[from]...)
}

func (h *testHandler) count(from uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got[from])
}

func (h *testHandler) unreachableCount(id uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unreachable[id]
}

// member is one transport serving on a loopback listener.
type member struct {
	t        *testing.T
	id       uint64
	cluster  uint64
	tr       *Transport
	h        *testHandler
	logs     *logBuf
	addr     string
	url      string
	serveErr chan error
	stopOnce sync.Once
}

type option func(*Config)

// startMember starts a transport on addr ("" for any free port).
func startMember(t *testing.T, id, cluster uint64, addr string, opts ...option) *member {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{t: t, id: id, cluster: cluster, h: newTestHandler(), logs: &logBuf{}, serveErr: make(chan error, 1)}
	cfg := Config{
		ClusterID: cluster,
		ID:        id,
		Handler:   m.h,
		Logger:    slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	m.tr, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	m.url = "http://" + m.addr
	go func() { m.serveErr <- m.tr.Serve(ln) }()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			t.Logf("logs of member %x:\n%s", id, m.logs.String())
		}
	})
	return m
}

func (m *member) stop() {
	m.stopOnce.Do(func() {
		m.tr.Stop()
		if err := <-m.serveErr; !errors.Is(err, ErrStopped) {
			m.t.Errorf("Serve of member %x returned %v, want ErrStopped", m.id, err)
		}
	})
}

// connect makes every member a peer of every other and waits until all
// streams are up.
func connect(t *testing.T, ms ...*member) {
	t.Helper()
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				if err := a.tr.AddPeer(b.id, []string{b.url}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				waitFor(t, fmt.Sprintf("stream %x -> %x", a.id, b.id), func() bool { return !a.tr.ActiveSince(b.id).IsZero() })
			}
		}
	}
}

func app(from, to, index uint64, data []byte) raftpb.Message {
	return raftpb.Message{
		Type: raftpb.MsgApp, From: from, To: to, Term: 3, LogTerm: 3, Index: index, Commit: index,
		Entries: []raftpb.Entry{{Term: 3, Index: index + 1, Data: data}},
	}
}

// countingConn counts writes and can hold them at a gate.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
	gate   *gate
}

// Write counts and gates every write but keepalives, whose timing depends
// on the clock.
func (c countingConn) Write(p []byte) (int, error) {
	if bytes.Equal(p, keepaliveFrame) {
		return c.Conn.Write(p)
	}
	c.writes.Add(1)
	if c.gate != nil {
		c.gate.pass()
	}
	return c.Conn.Write(p)
}

// gate blocks writes once armed, until opened.
type gate struct {
	armed   atomic.Bool
	once    sync.Once
	blocked chan struct{} // closed when the first write reached the armed gate
	open    chan struct{}
}

func newGate() *gate { return &gate{blocked: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) pass() {
	if !g.armed.Load() {
		return
	}
	g.once.Do(func() { close(g.blocked) })
	<-g.open
}

// rawPeer is a fake member that completes handshakes by hand and then does
// nothing more: it neither reads nor sends keepalives, like a member that
// hangs.
type rawPeer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	hs    chan handshake
}

func startRawPeer(t *testing.T, cluster, id uint64) *rawPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rawPeer{ln: ln, hs: make(chan handshake, 100)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hs, err := readHandshake(c)
			if err != nil {
				c.Close()
				continue
			}
			select {
			case r.hs <- hs:
			default:
			}
			c.Write(appendResponse(nil, response{version: protocolVersion, code: codeAccept, clusterID: cluster, memberID: id, keepalive: time.Second}))
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *rawPeer) url() string { return "http://" + r.ln.Addr().String() }

func (r *rawPeer) close() {
	r.ln.Close()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// rawDial connects to m and sends a handshake; it returns the connection
// and the response.
func rawDial(t *testing.T, m *member, hs handshake) (net.Conn, response) {
	t.Helper()
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write(appendHandshake(nil, hs)); err != nil {
		t.Fatal(err)
	}
	resp, err := readResponse(c)
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	return c, resp
}

// expectClosed reads from c until the remote closes it, and fails if that
// does not happen before the deadline.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v: %v", waitTimeout, err)
	}
}

// gatedReader holds reads until its gate is closed.
type gatedReader struct {
	r    io.Reader
	gate chan struct{}
}

func (g gatedReader) Read(p []byte) (int, error) {
	<-g.gate
	return g.r.Read(p)
}

func (g gatedReader) Close() error { return nil }

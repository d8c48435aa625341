package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
)

func TestDeliveryInOrderAmongThree(t *testing.T) {
	checkLeaks(t)
	ms := []*member{
		startMember(t, 1, 7, ""),
		startMember(t, 2, 7, ""),
		startMember(t, 3, 7, ""),
	}
	connect(t, ms...)

	// A message with every field set survives the trip unchanged.
	full := raftpb.Message{
		Type: raftpb.MsgApp, To: 2, From: 1, Term: 9, LogTerm: 8, Index: 77, Commit: 70,
		Entries:    []raftpb.Entry{{Term: 8, Index: 78, Type: raftpb.EntryNormal, Data: []byte("x")}, {Term: 9, Index: 79, Type: raftpb.EntryConfChange, Data: []byte("cc")}},
		Reject:     true,
		RejectHint: 5,
		Context:    []byte("ctx"),
	}
	ms[0].tr.Send([]raftpb.Message{full})
	waitFor(t, "the full message", func() bool { return ms[1].h.count(1) == 1 })
	if got := ms[1].h.messages(1)[0]; !reflect.DeepEqual(got, full) {
		t.Fatalf("received %+v, sent %+v", got, full)
	}

	const n = 1500
	done := make(chan struct{})
	for _, a := range ms {
		go func() {
			defer func() { done <- struct{}{} }()
			batch := make([]raftpb.Message, 0, 2*30)
			for i := 1; i <= n; i++ {
				for _, b := range ms {
					if b != a {
						batch = append(batch, app(a.id, b.id, uint64(i), fmt.Appendf(nil, "%d->%d #%d", a.id, b.id, i)))
					}
				}
				if len(batch) == cap(batch) || i == n {
					a.tr.Send(batch)
					batch = batch[:0]
				}
			}
		}()
	}
	for range ms {
		<-done
	}
	for _, b := range ms {
		for _, a := range ms {
			if a == b {
				continue
			}
			want := n
			if a.id == 1 && b.id == 2 {
				want++ // the full message
			}
			waitFor(t, fmt.Sprintf("%d messages %x -> %x", want, a.id, b.id), func() bool { return b.h.count(a.id) >= want })
			got := b.h.messages(a.id)
			if a.id == 1 && b.id == 2 {
				got = got[1:]
			}
			if len(got) != n {
				t.Fatalf("%x -> %x: %d messages, want %d", a.id, b.id, len(got), n)
			}
			for i, m := range got {
				wantData := fmt.Sprintf("%d->%d #%d", a.id, b.id, i+1)
				if m.Index != uint64(i+1) || m.From != a.id || m.To != b.id || string(m.Entries[0].Data) != wantData {
					t.Fatalf("%x -> %x: message %d is index %d %q, want index %d %q", a.id, b.id, i, m.Index, m.Entries[0].Data, i+1, wantData)
				}
			}
		}
	}
	for _, a := range ms {
		for _, b := range ms {
			if n := a.h.unreachableCount(b.id); a != b && n != 0 {
				t.Errorf("%x reported %x unreachable %d times on a healthy network", a.id, b.id, n)
			}
		}
	}
}

// TestBatching holds the writer inside its first write while 999 more
// messages queue up, and checks that they go out in a handful of writes.
func TestBatching(t *testing.T) {
	checkLeaks(t)
	var writes atomic.Int64
	g := newGate()
	a := startMember(t, 1, 7, "", func(c *Config) {
		c.wrapConn = func(c net.Conn) net.Conn { return countingConn{Conn: c, writes: &writes, gate: g} }
	})
	b := startMember(t, 2, 7, "")
	connect(t, a, b)

	g.armed.Store(true)
	before := writes.Load()
	a.tr.Send([]raftpb.Message{app(1, 2, 1, []byte("first"))})
	<-g.blocked // the writer is inside a write: everything sent now queues
	const n = 1000
	msgs := make([]raftpb.Message, 0, n-1)
	for i := 2; i <= n; i++ {
		msgs = append(msgs, app(1, 2, uint64(i), bytes.Repeat([]byte{'x'}, 100)))
	}
	a.tr.Send(msgs)
	close(g.open)
	waitFor(t, "all messages", func() bool { return b.h.count(1) == n })
	w := writes.Load() - before
	// The blocked write, then 999 messages of ~140 bytes fit one batch.
	if w > 3 {
		t.Fatalf("%d messages took %d writes; they were not batched", n, w)
	}
	for i, m := range b.h.messages(1) {
		if m.Index != uint64(i+1) {
			t.Fatalf("message %d has index %d", i, m.Index)
		}
	}
	t.Logf("%d messages in %d writes", n, w)
}

// TestStuckPeerDoesNotBlockOthers connects a member to a healthy peer and
// to one that accepted the stream but never reads (with an IdleTimeout
// long enough that it is not declared dead during the test). Sends must
// not block, the healthy peer must get everything, and the stuck one is
// reported unreachable.
func TestStuckPeerDoesNotBlockOthers(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "", func(c *Config) {
		c.QueueSize = 16
		c.IdleTimeout = time.Minute
	})
	b := startMember(t, 2, 7, "")
	stuck := startRawPeer(t, 7, 3)
	connect(t, a, b)
	if err := a.tr.AddPeer(3, []string{stuck.url()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream to the stuck peer", func() bool { return !a.tr.ActiveSince(3).IsZero() })

	const n = 400 // 400 x 64 KiB overflows the stuck peer's socket buffers and queue
	data := make([]byte, 64<<10)
	sent := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			a.tr.Send([]raftpb.Message{app(1, 3, uint64(i), data), app(1, 2, uint64(i), data)})
			// Pace to the healthy peer so that its own queue never overflows.
			deadline := time.Now().Add(waitTimeout)
			for b.h.count(1) < i-8 {
				if time.Now().After(deadline) {
					sent <- fmt.Errorf("healthy peer stalled at %d of %d messages", b.h.count(1), i)
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		sent <- nil
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Send blocked on a stuck peer")
	}
	waitFor(t, "all messages at the healthy peer", func() bool { return b.h.count(1) == n })
	for i, m := range b.h.messages(1) {
		if m.Index != uint64(i+1) {
			t.Fatalf("healthy peer: message %d has index %d", i, m.Index)
		}
	}
	waitFor(t, "the stuck peer reported unreachable", func() bool { return a.h.unreachableCount(3) > 0 })
	if n := a.h.unreachableCount(2); n != 0 {
		t.Fatalf("healthy peer reported unreachable %d times", n)
	}
	if a.tr.ActiveSince(3).IsZero() {
		t.Fatal("stuck stream closed although IdleTimeout has not passed")
	}
	a.stop() // must not hang on the stuck write
}

// TestHungPeerDetected connects to a peer that completes the handshake and
// then goes silent, holding the connection open: without keepalives and
// the idle timeout the stream would look up forever.
func TestHungPeerDetected(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "", func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	hung := startRawPeer(t, 7, 3)
	if err := a.tr.AddPeer(3, []string{hung.url()}); err != nil {
		t.Fatal(err)
	}
	hs := <-hung.hs
	if hs.kind != kindMessages || hs.keepalive != 75*time.Millisecond {
		t.Fatalf("handshake %+v: want a message stream asking for keepalives every 75ms", hs)
	}
	waitFor(t, "the hung stream declared dead", func() bool {
		return a.logs.contains("peer stream lost", "peer=3", "no keepalive")
	})
	// It keeps redialling (the raw peer accepts again).
	<-hung.hs
}

func TestSendToDownPeerReportsUnreachable(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	if err := a.tr.AddPeer(2, []string{downURL}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for i := range 100 {
			a.tr.Send([]raftpb.Message{app(1, 2, uint64(i), nil)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Send blocked on a peer that is down")
	}
	waitFor(t, "unreachable report", func() bool { return a.h.unreachableCount(2) > 0 })
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("ActiveSince of a down peer is not zero")
	}
	// Unknown peers are dropped quietly, without a report.
	a.tr.Send([]raftpb.Message{app(1, 42, 1, nil)})
	if !a.logs.contains("dropping message to unknown peer", "peer=2a") {
		t.Fatal("no debug log for a message to an unknown peer")
	}
}

func TestReconnectAfterRestart(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	connect(t, a, b)
	a.tr.Send([]raftpb.Message{app(1, 2, 1, nil)})
	waitFor(t, "first message", func() bool { return b.h.count(1) == 1 })
	first := a.tr.ActiveSince(2)

	b.stop()
	waitFor(t, "stream seen down", func() bool { return a.tr.ActiveSince(2).IsZero() })
	a.tr.Send([]raftpb.Message{app(1, 2, 2, nil)})
	waitFor(t, "unreachable report while down", func() bool { return a.h.unreachableCount(2) > 0 })

	b2 := startMember(t, 2, 7, b.addr)
	waitFor(t, "stream back up", func() bool { return !a.tr.ActiveSince(2).IsZero() })
	if since := a.tr.ActiveSince(2); !since.After(first) {
		t.Fatalf("ActiveSince %v after reconnecting, not after the first connection at %v", since, first)
	}
	a.tr.Send([]raftpb.Message{app(1, 2, 3, nil)})
	waitFor(t, "message after restart", func() bool { return b2.h.count(1) == 1 })
	if m := b2.h.messages(1)[0]; m.Index != 3 {
		t.Fatalf("restarted member got index %d, want 3", m.Index)
	}
}

func TestClusterIDMismatchRejected(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 8, "") // another cluster
	if err := a.tr.AddPeer(2, []string{b.url}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal logged by the acceptor", func() bool {
		return b.logs.contains("refused peer connection", "belongs to cluster 8, not to cluster 7")
	})
	waitFor(t, "the refusal logged by the dialer", func() bool {
		return a.logs.contains("level=ERROR", "cannot connect to peer", "cluster ID mismatch")
	})
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("stream to a member of another cluster is up")
	}

	_, err := dial(context.Background(), time.Second, nil, b.url, b.addr, handshake{
		version: protocolVersion, kind: kindMessages, clusterID: 7, from: 1, to: 2,
	})
	if !errors.Is(err, ErrRejected) || !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("dial to another cluster: %v, want ErrRejected and ErrClusterMismatch", err)
	}

	// Addressed to the wrong member ID.
	_, err = dial(context.Background(), time.Second, nil, b.url, b.addr, handshake{
		version: protocolVersion, kind: kindMessages, clusterID: 8, from: 1, to: 5,
	})
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "this is member 2, not member 5") {
		t.Fatalf("dial to the wrong member: %v", err)
	}
	// An unknown protocol version.
	_, err = dial(context.Background(), time.Second, nil, b.url, b.addr, handshake{
		version: 9, kind: kindMessages, clusterID: 8, from: 1, to: 2,
	})
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "version") {
		t.Fatalf("dial with protocol version 9: %v", err)
	}
	if b.h.processed.Load() != 0 {
		t.Fatal("messages were processed from rejected connections")
	}
}

func TestRemovedMemberRejected(t *testing.T) {
	checkLeaks(t)
	removed := make(chan struct{})
	a := startMember(t, 1, 7, "", func(c *Config) { c.OnRemoved = func() { close(removed) } })
	b := startMember(t, 2, 7, "")
	b.h.mu.Lock()
	b.h.removed[1] = true
	b.h.mu.Unlock()
	if err := a.tr.AddPeer(2, []string{b.url}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal logged by the acceptor", func() bool {
		return b.logs.contains("refused peer connection", "member 1 was removed")
	})
	waitFor(t, "the refusal logged by the dialer", func() bool {
		return a.logs.contains("level=ERROR", "removed from the cluster")
	})
	select { // OnRemoved tells the member, exactly once (a second close panics)
	case <-removed:
	case <-time.After(10 * time.Second):
		t.Fatal("OnRemoved not called")
	}
	for _, kind := range []streamKind{kindMessages, kindSnapshot} {
		_, err := dial(context.Background(), time.Second, nil, b.url, b.addr, handshake{
			version: protocolVersion, kind: kind, clusterID: 7, from: 1, to: 2,
		})
		if !errors.Is(err, ErrRejected) || !errors.Is(err, ErrMemberRemoved) {
			t.Fatalf("%s dial from a removed member: %v, want ErrMemberRemoved", kind, err)
		}
	}
	_, _, err := FetchCluster(context.Background(), []string{b.url}, 1)
	if !errors.Is(err, ErrMemberRemoved) {
		t.Fatalf("FetchCluster by a removed member: %v, want ErrMemberRemoved", err)
	}
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("stream from a removed member is up")
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func snapMsg(from, to, index uint64) raftpb.Message {
	return raftpb.Message{
		Type: raftpb.MsgSnap, From: from, To: to, Term: 4,
		Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{
			Index: index, Term: 4, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}},
		}},
	}
}

func expectReport(t *testing.T, h *testHandler, id uint64, status raft.SnapshotStatus) {
	t.Helper()
	select {
	case r := <-h.snapReports:
		if r.id != id || r.status != status {
			t.Fatalf("snapshot report %+v, want peer %x status %v", r, id, status)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no snapshot report within %v", waitTimeout)
	}
}

func TestSnapshotStreaming(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	connect(t, a, b)
	data := randomBytes(t, 5<<20+12345) // several chunks and a partial one
	a.h.mu.Lock()
	a.h.snapData[100] = data
	a.h.mu.Unlock()

	m := snapMsg(1, 2, 100)
	// Appends keep flowing around the snapshot.
	a.tr.Send([]raftpb.Message{app(1, 2, 1, nil), m, app(1, 2, 2, nil)})
	expectReport(t, a.h, 2, raft.SnapshotFinish)

	b.h.mu.Lock()
	got := b.h.received[100]
	b.h.mu.Unlock()
	if !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes of snapshot data, not the %d sent (or different)", len(got), len(data))
	}
	waitFor(t, "MsgSnap and the appends processed", func() bool { return b.h.count(1) == 3 })
	var snaps []raftpb.Message
	for _, x := range b.h.messages(1) {
		if x.Type == raftpb.MsgSnap {
			snaps = append(snaps, x)
		}
	}
	if len(snaps) != 1 || !reflect.DeepEqual(snaps[0].Snapshot.Metadata, m.Snapshot.Metadata) || snaps[0].Term != 4 {
		t.Fatalf("processed MsgSnaps %+v, want one with metadata %+v", snaps, m.Snapshot.Metadata)
	}

	// A snapshot with inline data (as raft's MemoryStorage makes them) is
	// streamed the same way, without OpenSnapshot.
	inline := snapMsg(1, 2, 200)
	inline.Snapshot.Data = randomBytes(t, 3<<20)
	a.tr.Send([]raftpb.Message{inline})
	expectReport(t, a.h, 2, raft.SnapshotFinish)
	b.h.mu.Lock()
	got = b.h.received[200]
	b.h.mu.Unlock()
	if !bytes.Equal(got, inline.Snapshot.Data) {
		t.Fatal("inline snapshot data differs")
	}
	if len(inline.Snapshot.Data) != 3<<20 {
		t.Fatal("Send modified the caller's snapshot")
	}
}

func TestOneSnapshotInFlightPerPeer(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	connect(t, a, b)
	data := randomBytes(t, 100<<10)
	gate := make(chan struct{})
	var opens atomic.Int32
	a.h.mu.Lock()
	a.h.open = func(raftpb.SnapshotMetadata) (io.ReadCloser, error) {
		opens.Add(1)
		return gatedReader{bytes.NewReader(data), gate}, nil
	}
	a.h.mu.Unlock()

	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 100)})
	waitFor(t, "the first snapshot opened", func() bool { return opens.Load() == 1 })
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 101)})
	waitFor(t, "the second snapshot dropped", func() bool { return a.logs.contains("snapshot already being sent", "index=101") })
	close(gate)
	expectReport(t, a.h, 2, raft.SnapshotFinish)
	// The next one, after the first finished, goes out.
	gate = make(chan struct{})
	close(gate)
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 102)})
	expectReport(t, a.h, 2, raft.SnapshotFinish)
	if n := opens.Load(); n != 2 {
		t.Fatalf("%d snapshots opened, want 2", n)
	}
	select {
	case r := <-a.h.snapReports:
		t.Fatalf("unexpected snapshot report %+v", r)
	default:
	}
	b.h.mu.Lock()
	_, got100 := b.h.received[100]
	_, got101 := b.h.received[101]
	_, got102 := b.h.received[102]
	b.h.mu.Unlock()
	if !got100 || got101 || !got102 {
		t.Fatalf("received snapshots 100: %v, 101: %v, 102: %v; want 100 and 102", got100, got101, got102)
	}
}

func TestSnapshotFailureReported(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	connect(t, a, b)
	a.h.mu.Lock()
	a.h.snapData[100] = randomBytes(t, 8<<20) // more than the socket buffers hold
	a.h.mu.Unlock()

	t.Run("receiver fails", func(t *testing.T) {
		b.h.mu.Lock()
		b.h.receiveErr = errors.New("disk full")
		b.h.mu.Unlock()
		a.tr.Send([]raftpb.Message{snapMsg(1, 2, 100)})
		expectReport(t, a.h, 2, raft.SnapshotFailure)
		waitFor(t, "unreachable report", func() bool { return a.h.unreachableCount(2) > 0 })
		waitFor(t, "the sender's log naming the receiver's reason", func() bool {
			return a.logs.contains("sending snapshot failed", "disk full")
		})
		if b.h.count(1) != 0 {
			t.Fatal("the MsgSnap of a failed snapshot was processed")
		}
		b.h.mu.Lock()
		b.h.receiveErr = nil
		b.h.mu.Unlock()
	})
	t.Run("sender cannot open the data", func(t *testing.T) {
		a.h.mu.Lock()
		a.h.openErr = errors.New("snapshot file gone")
		a.h.mu.Unlock()
		a.tr.Send([]raftpb.Message{snapMsg(1, 2, 100)})
		expectReport(t, a.h, 2, raft.SnapshotFailure)
		a.h.mu.Lock()
		a.h.openErr = nil
		a.h.mu.Unlock()
	})
	t.Run("succeeds afterwards", func(t *testing.T) {
		a.tr.Send([]raftpb.Message{snapMsg(1, 2, 100)})
		expectReport(t, a.h, 2, raft.SnapshotFinish)
	})
	t.Run("receiver down", func(t *testing.T) {
		b.stop()
		a.tr.Send([]raftpb.Message{snapMsg(1, 2, 100)})
		expectReport(t, a.h, 2, raft.SnapshotFailure)
	})
}

// TestSnapshotCorruptedOnTheWire sends a snapshot by hand with a damaged
// chunk: the receiver's handler must see a read error, raft must not see
// the MsgSnap, and the sender must get a refusal.
func TestSnapshotCorruptedOnTheWire(t *testing.T) {
	checkLeaks(t)
	b := startMember(t, 2, 7, "")
	for _, tc := range []struct {
		name   string
		damage func(stream []byte) []byte
		want   string
	}{
		{"bit flip", func(s []byte) []byte { s[len(s)/2] ^= 0x10; return s }, "checksum mismatch"},
		{"short count", func(s []byte) []byte {
			end := appendFrame(nil, frameSnapEnd, binary.BigEndian.AppendUint64(nil, 1))
			return append(s[:len(s)-len(end)], appendFrame(nil, frameSnapEnd, binary.BigEndian.AppendUint64(nil, 99999))...)
		}, "arrived"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp := rawDial(t, b, handshake{version: protocolVersion, kind: kindSnapshot, clusterID: 7, from: 1, to: 2})
			if resp.code != codeAccept {
				t.Fatalf("refused: %s", resp.reason)
			}
			m := snapMsg(1, 2, 100)
			stream := appendMessageFrame(nil, &m, raftpb.MessageSize(&m))
			msgLen := len(stream)
			data := randomBytes(t, 3000)
			stream = appendFrame(stream, frameSnapChunk, data[:1000])
			stream = appendFrame(stream, frameSnapChunk, data[1000:])
			stream = appendFrame(stream, frameSnapEnd, binary.BigEndian.AppendUint64(nil, 3000))
			stream = append(stream[:msgLen], tc.damage(stream[msgLen:])...)
			if _, err := c.Write(stream); err != nil {
				t.Fatal(err)
			}
			err := readAck(&frameReader{r: c, max: 4096})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ack: %v, want a refusal mentioning %q", err, tc.want)
			}
			if b.h.count(1) != 0 {
				t.Fatal("MsgSnap processed despite damaged data")
			}
		})
	}
}

// TestGarbageClosesConnection feeds malformed bytes to a member. Each
// connection must be closed (not hang, not panic), nothing processed, and
// the member must keep serving good peers.
func TestGarbageClosesConnection(t *testing.T) {
	checkLeaks(t)
	b := startMember(t, 2, 7, "", func(c *Config) { c.MaxFrameBytes = 1 << 20; c.IdleTimeout = 500 * time.Millisecond })
	good := handshake{version: protocolVersion, kind: kindMessages, clusterID: 7, from: 1, to: 2}
	msgFrame := func(m raftpb.Message) []byte { return appendMessageFrame(nil, &m, raftpb.MessageSize(&m)) }
	hdr := func(t frameType, n uint32) []byte {
		b := []byte{byte(t), 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], n)
		return b
	}
	badCRC := msgFrame(app(1, 2, 1, []byte("hello")))
	badCRC[len(badCRC)-1] ^= 1

	t.Run("before handshake", func(t *testing.T) {
		for name, in := range map[string][]byte{
			"http":    []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			"random":  randomBytes(t, 4096),
			"zeros":   make([]byte, requestLen),
			"bad crc": func() []byte { h := appendHandshake(nil, good); h[20] ^= 1; return h }(),
		} {
			t.Run(name, func(t *testing.T) {
				c, err := net.Dial("tcp", b.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write(in)
				expectClosed(t, c)
			})
		}
	})
	t.Run("after handshake", func(t *testing.T) {
		for name, in := range map[string][]byte{
			"random":            randomBytes(t, 4096),
			"unknown type":      append(hdr(99, 0), 0),
			"oversized":         hdr(frameMessage, 1<<20+1),
			"huge length":       hdr(frameMessage, 0xffffffff),
			"truncated":         append(hdr(frameMessage, 100), 1, 2, 3),
			"bad crc":           badCRC,
			"undecodable":       appendFrame(nil, frameMessage, []byte{1, 2, 3, 4, 5}),
			"empty message":     appendFrame(nil, frameMessage, nil),
			"wrong sender":      msgFrame(app(3, 2, 1, nil)),
			"wrong receiver":    msgFrame(app(1, 3, 1, nil)),
			"local type":        msgFrame(raftpb.Message{Type: raftpb.MsgHup, From: 1, To: 2}),
			"snapshot inline":   msgFrame(snapMsg(1, 2, 5)),
			"ack on stream":     appendAck(nil, nil),
			"chunk on a stream": appendFrame(nil, frameSnapChunk, []byte("data")),
		} {
			t.Run(name, func(t *testing.T) {
				c, resp := rawDial(t, b, good)
				if resp.code != codeAccept {
					t.Fatalf("refused: %s", resp.reason)
				}
				c.Write(in)
				expectClosed(t, c)
			})
		}
	})
	if n := b.h.processed.Load(); n != 0 {
		t.Fatalf("%d messages processed from garbage", n)
	}
	if !b.logs.contains("protocol error", "peer=1") {
		t.Fatal("no log line naming the peer for a protocol error")
	}
	// Still serving.
	a := startMember(t, 1, 7, "")
	connect(t, a, b)
	a.tr.Send([]raftpb.Message{app(1, 2, 1, nil)})
	waitFor(t, "a good message after the garbage", func() bool { return b.h.count(1) == 1 })
}

func TestFetchCluster(t *testing.T) {
	checkLeaks(t)
	b := startMember(t, 2, 0xabc, "")
	b.h.mu.Lock()
	b.h.info = []byte(`{"members":[...]}`)
	b.h.mu.Unlock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()

	id, info, err := FetchCluster(context.Background(), []string{deadURL, b.url}, 9)
	if err != nil {
		t.Fatal(err)
	}
	if id != 0xabc || string(info) != `{"members":[...]}` {
		t.Fatalf("got cluster %x info %q", id, info)
	}

	_, _, err = FetchCluster(context.Background(), []string{deadURL}, 9)
	if err == nil || !strings.Contains(err.Error(), deadURL[len("http://"):]) {
		t.Fatalf("FetchCluster with no member up: %v", err)
	}
	_, _, err = FetchCluster(context.Background(), []string{"https://" + b.addr}, 9)
	if !errors.Is(err, ErrInvalidURL) {
		t.Fatalf("FetchCluster over https: %v, want ErrInvalidURL", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := FetchCluster(ctx, []string{b.url}, 9); !errors.Is(err, context.Canceled) {
		t.Fatalf("FetchCluster with a cancelled context: %v", err)
	}
}

func TestUpdateAndRemovePeer(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wrongURL := "http://" + ln.Addr().String()
	ln.Close()
	if err := a.tr.AddPeer(2, []string{wrongURL}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed dial", func() bool { return a.logs.contains("cannot connect to peer") })
	if err := a.tr.UpdatePeer(2, []string{b.url}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream to the new URL", func() bool { return !a.tr.ActiveSince(2).IsZero() })
	a.tr.Send([]raftpb.Message{app(1, 2, 1, nil)})
	waitFor(t, "delivery", func() bool { return b.h.count(1) == 1 })

	a.tr.RemovePeer(2)
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("ActiveSince of a removed peer is not zero")
	}
	waitFor(t, "the remote seeing the stream close", func() bool { return b.logs.contains("peer closed its stream", "peer=1") })
	a.tr.Send([]raftpb.Message{app(1, 2, 2, nil)})
	if err := a.tr.UpdatePeer(2, []string{b.url}); err == nil {
		t.Fatal("UpdatePeer of a removed peer succeeded")
	}

	// The other direction: removing a member closes its incoming stream.
	if err := b.tr.AddPeer(1, []string{a.url}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream 2 -> 1", func() bool { return !b.tr.ActiveSince(1).IsZero() })
	a.tr.RemovePeer(2)
	waitFor(t, "b's stream to a closed by a's RemovePeer", func() bool {
		return b.logs.contains("peer stream lost", "peer=1")
	})
	if b.h.count(1) != 1 {
		t.Fatal("message to a removed peer was delivered")
	}
}

func TestConfigAndURLValidation(t *testing.T) {
	h := newTestHandler()
	for _, cfg := range []Config{
		{ID: 1, Handler: h},
		{ClusterID: 1, Handler: h},
		{ClusterID: 1, ID: 1},
		{ClusterID: 1, ID: 1, Handler: h, MaxFrameBytes: 100},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:2380":  "127.0.0.1:2380",
		"http://[::1]:2380/":     "[::1]:2380",
		"http://node-a.lan:2380": "node-a.lan:2380",
		"https://10.0.0.1:2380":  "",
		"http://10.0.0.1":        "",
		"http://10.0.0.1:0":      "",
		"http://10.0.0.1:99999":  "",
		"unix:///tmp/sock":       "unix:/tmp/sock",
		"unix://localhost:2380":  "unix:localhost:2380",
		"unixs://localhost:2380": "",
		"ftp://10.0.0.1:2380":    "",
		"10.0.0.1:2380":          "",
		"http://10.0.0.1:2380/x": "",
		"http://u:p@10.0.0.1:80": "",
		"::":                     "",
	} {
		got, err := parseURL(in)
		if want == "" {
			if !errors.Is(err, ErrInvalidURL) {
				t.Errorf("parseURL(%q) = %q, %v; want ErrInvalidURL", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parseURL("https://10.0.0.1:2380"); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("https error does not explain itself: %v", err)
	}

	checkLeaks(t)
	tr, err := New(Config{ClusterID: 1, ID: 1, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.AddPeer(2, []string{"https://10.0.0.1:2380"}); !errors.Is(err, ErrInvalidURL) {
		t.Fatalf("AddPeer with https: %v", err)
	}
	if err := tr.AddPeer(1, []string{"http://10.0.0.1:2380"}); err == nil {
		t.Fatal("AddPeer of the local ID succeeded")
	}
	tr.Stop()
	tr.Stop()
	if err := tr.AddPeer(2, []string{"http://10.0.0.1:2380"}); !errors.Is(err, ErrStopped) {
		t.Fatalf("AddPeer after Stop: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Serve(ln); !errors.Is(err, ErrStopped) {
		t.Fatalf("Serve after Stop: %v", err)
	}
	tr.Send([]raftpb.Message{app(1, 2, 1, nil)}) // no panic, no effect
}

// TestStopWithEverythingBusy stops members while streams are loaded, a
// snapshot is in flight and a handler is blocked, and checks that Stop
// returns and leaves no goroutine behind (checkLeaks).
func TestStopWithEverythingBusy(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	b := startMember(t, 2, 7, "")
	c := startMember(t, 3, 7, "")
	connect(t, a, b, c)
	a.h.mu.Lock()
	a.h.snapData[50] = randomBytes(t, 32<<20)
	a.h.mu.Unlock()
	c.h.mu.Lock()
	c.h.block = make(chan struct{}) // never closed: Process waits for ctx
	c.h.mu.Unlock()
	for i := range 200 {
		a.tr.Send([]raftpb.Message{app(1, 2, uint64(i), make([]byte, 1000)), app(1, 3, uint64(i), make([]byte, 1000))})
	}
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 50)})
	waitFor(t, "snapshot transfer started", func() bool { return b.logs.contains("receiving snapshot") })
	done := make(chan struct{})
	go func() {
		c.stop()
		b.stop()
		a.stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Stop did not return")
	}
}

// TestSendPathDoesNotAllocate checks the per-message cost of Send and of
// the writer's encoding.
func TestSendPathDoesNotAllocate(t *testing.T) {
	tr := &Transport{cfg: Config{MaxFrameBytes: defaultMaxFrameBytes}, unreach: map[uint64]struct{}{}, unreachSig: make(chan struct{}, 1)}
	tr.peers = map[uint64]*peer{2: {t: tr, id: 2, queue: make(chan raftpb.Message, 1)}}
	tr.peers[2].connected.Store(true)
	msgs := []raftpb.Message{app(1, 2, 1, make([]byte, 100))}
	if n := testing.AllocsPerRun(1000, func() {
		tr.Send(msgs)
		<-tr.peers[2].queue
	}); n != 0 {
		t.Errorf("Send allocates %v times per message", n)
	}
	p := tr.peers[2]
	var buf []byte
	m := msgs[0]
	if n := testing.AllocsPerRun(1000, func() {
		buf = p.appendMessage(buf[:0], &m)
	}); n != 0 {
		t.Errorf("encoding allocates %v times per message", n)
	}
}

// TestPeerThatDialsInEndsBackoff checks that when a peer that was down
// connects to this member, the stream to it comes up at once instead of
// after the backoff this member had reached retrying it.
func TestPeerThatDialsInEndsBackoff(t *testing.T) {
	checkLeaks(t)
	a := startMember(t, 1, 7, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bAddr := ln.Addr().String()
	ln.Close() // nobody listens: a's dials fail and its backoff grows
	if err := a.tr.AddPeer(2, []string{"http://" + bAddr}); err != nil {
		t.Fatal(err)
	}
	long := regexp.MustCompile(`backoff=[12](\.[0-9]+)?s `)
	waitFor(t, "a backoff of a second or more", func() bool { return long.MatchString(a.logs.String()) })
	b := startMember(t, 2, 7, bAddr)
	if err := b.tr.AddPeer(1, []string{a.url}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "stream a -> b", func() bool { return !a.tr.ActiveSince(2).IsZero() })
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("stream to the peer that dialled in came up after %v, not at once", d)
	}
}

package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
)

// countHandler counts processed messages and wakes the sender when the
// number in flight falls low.
type countHandler struct {
	inflight atomic.Int64
	low      int64
	wake     chan struct{}
}

func (h *countHandler) Process(ctx context.Context, m raftpb.Message) error {
	if h.inflight.Add(-1) <= h.low {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	return nil
}
func (h *countHandler) IsRemoved(uint64) bool                      { return false }
func (h *countHandler) ReportUnreachable(uint64)                   {}
func (h *countHandler) ReportSnapshot(uint64, raft.SnapshotStatus) {}
func (h *countHandler) OpenSnapshot(raftpb.SnapshotMetadata) (io.ReadCloser, error) {
	return nil, io.EOF
}
func (h *countHandler) ReceiveSnapshot(raftpb.SnapshotMetadata, io.Reader) error { return nil }
func (h *countHandler) ClusterInfo() []byte                                      { return nil }

// BenchmarkSendLoopback pushes MsgApp messages from one transport to
// another over a real loopback TCP connection, Send calls of 64 messages
// at a time, keeping at most half a queue in flight so that nothing is
// dropped. It reports messages per second and messages per write.
func BenchmarkSendLoopback(b *testing.B) {
	for _, size := range []int{0, 128, 4096} {
		b.Run(fmt.Sprintf("entry=%dB", size), func(b *testing.B) { benchSend(b, size) })
	}
}

func benchSend(b *testing.B, entrySize int) {
	const queue, batch = 4096, 64
	h := &countHandler{low: queue / 4, wake: make(chan struct{}, 1)}
	quiet := slog.New(slog.DiscardHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	recv, err := New(Config{ClusterID: 1, ID: 2, Handler: h, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	go recv.Serve(ln)
	defer recv.Stop()
	var writes atomic.Int64
	send, err := New(Config{ClusterID: 1, ID: 1, Handler: h, Logger: quiet, QueueSize: queue,
		wrapConn: func(c net.Conn) net.Conn { return countingConn{Conn: c, writes: &writes} }})
	if err != nil {
		b.Fatal(err)
	}
	defer send.Stop()
	if err := send.AddPeer(2, []string{"http://" + ln.Addr().String()}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "stream up", func() bool { return !send.ActiveSince(2).IsZero() })

	m := app(1, 2, 1, make([]byte, entrySize))
	msgs := make([]raftpb.Message, batch)
	for i := range msgs {
		msgs[i] = m
	}
	b.SetBytes(int64(raftpb.MessageSize(&m) + frameHeaderLen))
	b.ReportAllocs()
	w0 := writes.Load()
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		n := min(batch, b.N-sent)
		for h.inflight.Load()+int64(n) > queue/2 {
			select {
			case <-h.wake:
			case <-time.After(10 * time.Second):
				b.Fatalf("stalled with %d in flight", h.inflight.Load())
			}
		}
		h.inflight.Add(int64(n))
		send.Send(msgs[:n])
		sent += n
	}
	for h.inflight.Load() > 0 {
		select {
		case <-h.wake:
		case <-time.After(10 * time.Second):
			b.Fatalf("stalled with %d in flight", h.inflight.Load())
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if w := writes.Load() - w0; w > 0 {
		b.ReportMetric(float64(b.N)/float64(w), "msgs/write")
	}
}

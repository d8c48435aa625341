package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
)

// refusalGrace is how long a sender whose write failed waits for the
// receiver's refusal to surface.
const refusalGrace = 200 * time.Millisecond

// startSnapshot starts the goroutine that sends the snapshot of m, unless
// one is already sending to this peer. The caller holds t.mu (read) and
// has checked that the transport is not stopped.
func (p *peer) startSnapshot(m raftpb.Message) {
	if !p.snapshotting.CompareAndSwap(false, true) {
		// The running one has not reported yet (the flag is cleared
		// before its report) and its report moves raft's progress on;
		// failing this one would only make raft send yet another.
		p.t.log.Info("snapshot already being sent to peer; dropping the newer one",
			idAttr("peer", p.id), slog.Uint64("index", snapIndex(&m)))
		return
	}
	p.t.wg.Add(1)
	go p.sendSnapshot(m)
}

func snapIndex(m *raftpb.Message) uint64 {
	if m.Snapshot == nil {
		return 0
	}
	return m.Snapshot.Metadata.Index
}

// sendSnapshot streams one snapshot and reports the outcome to raft.
func (p *peer) sendSnapshot(m raftpb.Message) {
	defer p.t.wg.Done()
	log := p.t.log.With(idAttr("peer", p.id), slog.Uint64("index", snapIndex(&m)))
	start := time.Now()
	n, err := p.streamSnapshot(m)
	// Clear the flag before reporting: raft may answer the report with a
	// new MsgSnap at once, and dropping that one (with no transfer left to
	// report on it) would leave raft waiting for a report forever.
	p.snapshotting.Store(false)
	if p.ctx.Err() != nil {
		// Stopping, or the peer was removed: nobody wants the report.
		log.Info("snapshot send abandoned", slog.Any("error", err))
		return
	}
	if err != nil {
		log.Warn("sending snapshot failed", slog.Int64("bytes_sent", n), slog.Any("error", err))
		p.t.markUnreachable(p.id)
		p.t.h.ReportSnapshot(p.id, raft.SnapshotFailure)
		return
	}
	log.Info("snapshot sent", slog.Int64("bytes", n), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	p.t.h.ReportSnapshot(p.id, raft.SnapshotFinish)
}

// streamSnapshot sends m and its data on a new connection and waits for
// the receiver's ack. It returns the number of data bytes sent.
func (p *peer) streamSnapshot(m raftpb.Message) (int64, error) {
	t := p.t
	if m.Snapshot == nil || m.Snapshot.IsEmpty() {
		return 0, errors.New("MsgSnap without snapshot metadata (a raft bug); not sent")
	}
	// The data travels as chunks: inline data (raft's MemoryStorage puts
	// it there) is streamed from memory, otherwise the handler opens it.
	snap := *m.Snapshot
	var src io.Reader
	if len(snap.Data) > 0 {
		src = bytes.NewReader(snap.Data)
		snap.Data = nil
		m.Snapshot = &snap
	} else {
		rc, err := t.h.OpenSnapshot(snap.Metadata)
		if err != nil {
			return 0, fmt.Errorf("open the snapshot data: %w", err)
		}
		defer rc.Close()
		src = rc
	}

	url, addr := p.address()
	c, err := dial(p.ctx, t.cfg.DialTimeout, t.cfg.wrapConn, url, addr, handshake{
		version: protocolVersion, kind: kindSnapshot, clusterID: t.cfg.ClusterID, from: t.cfg.ID, to: p.id,
		keepalive: t.keepalive,
	})
	if err != nil {
		return 0, err
	}
	release := closeOnCancel(p.ctx, c)
	defer release()

	// The receiver may refuse at any time (its handler failed); reading
	// its ack concurrently turns that into an immediate, explained
	// failure instead of a write blocked until the timeout.
	ackc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := readAck(&frameReader{r: c, max: maxReasonLen + 1})
		ackc <- err // before closing, so the writer finds the reason
		if err != nil {
			c.Close() // a refusal aborts the transfer at once
		}
	}()
	defer func() {
		c.Close()
		wg.Wait()
	}()

	n, err := p.writeSnapshot(c, &m, src)
	if err != nil {
		// A refusal that arrived before the connection broke explains the
		// failure better than the write error (usually "connection reset").
		// It is already in the socket buffer if it was sent; a short
		// deadline is enough to collect it.
		// (SetReadDeadline fails only if c is closed, and then the reader
		// has returned or is about to.)
		_ = c.SetReadDeadline(time.Now().Add(refusalGrace))
		if aerr := <-ackc; errors.Is(aerr, errRefused) {
			return n, aerr
		}
		return n, err
	}
	// The receiver now stores the snapshot and hands the MsgSnap to raft.
	if err := c.SetReadDeadline(time.Now().Add(t.cfg.SnapshotTimeout)); err != nil {
		return n, err
	}
	if err := <-ackc; err != nil {
		return n, err
	}
	return n, nil
}

// writeSnapshot writes the message frame, the data chunks and the end
// frame, and returns the number of data bytes written.
func (p *peer) writeSnapshot(c net.Conn, m *raftpb.Message, src io.Reader) (int64, error) {
	size := raftpb.MessageSize(m)
	if size > p.t.cfg.MaxFrameBytes {
		return 0, fmt.Errorf("MsgSnap of %d bytes exceeds MaxFrameBytes %d", size, p.t.cfg.MaxFrameBytes)
	}
	buf := appendMessageFrame(make([]byte, 0, max(frameHeaderLen+size, frameHeaderLen+snapshotChunkSize)), m, size)
	if err := p.writeTimed(c, buf); err != nil {
		return 0, err
	}
	var total int64
	for {
		buf = appendFrameHeader(buf[:0])
		k, rerr := io.ReadFull(src, buf[frameHeaderLen:frameHeaderLen+snapshotChunkSize])
		if k > 0 {
			buf = buf[:frameHeaderLen+k]
			finishFrame(buf, 0, frameSnapChunk)
			if err := p.writeTimed(c, buf); err != nil {
				return total, err
			}
			total += int64(k)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return total, fmt.Errorf("read the snapshot data after %d bytes: %w", total, rerr)
		}
	}
	end := appendFrame(buf[:0], frameSnapEnd, binary.BigEndian.AppendUint64(nil, uint64(total)))
	return total, p.writeTimed(c, end)
}

func (p *peer) writeTimed(c net.Conn, b []byte) error {
	if err := c.SetWriteDeadline(time.Now().Add(p.t.cfg.SnapshotTimeout)); err != nil {
		return err
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// readAck waits for the receiver's ack and returns nil if it installed the
// snapshot.
func readAck(fr *frameReader) error {
	t, payload, err := fr.next(nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("no acknowledgement from the receiver within SnapshotTimeout: %w", err)
		}
		return fmt.Errorf("read the receiver's acknowledgement: %w", noEOF(err))
	}
	if t != frameSnapAck {
		return fmt.Errorf("%w: %s frame where a snapshot ack was expected", ErrProtocol, t)
	}
	return parseAck(payload)
}

package transport

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/synod-db/synod/raft/raftpb"
)

// handleConn serves one accepted connection: it checks the handshake and
// runs the kind of stream the dialer asked for.
func (t *Transport) handleConn(c net.Conn) {
	defer t.wg.Done()
	release := closeOnCancel(t.ctx, c)
	defer release()
	defer c.Close()
	log := t.log.With(slog.String("remote", c.RemoteAddr().String()))

	if err := c.SetDeadline(time.Now().Add(t.cfg.IdleTimeout)); err != nil {
		return
	}
	hs, err := readHandshake(c)
	if err != nil {
		if t.ctx.Err() == nil {
			log.Warn("closing peer connection: bad handshake", slog.Any("error", err))
		}
		return
	}
	log = log.With(idAttr("peer", hs.from), slog.String("kind", hs.kind.String()))
	code, reason := t.check(hs)
	resp := response{version: protocolVersion, code: code, clusterID: t.cfg.ClusterID, memberID: t.cfg.ID, keepalive: t.keepalive, reason: reason}
	var buf [responseHeaderLen + maxReasonLen + 4]byte
	if _, err := c.Write(appendResponse(buf[:0], resp)); err != nil {
		log.Warn("closing peer connection: cannot answer the handshake", slog.Any("error", err))
		return
	}
	if code != codeAccept {
		log.Warn("refused peer connection", slog.String("reason", reason))
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return
	}
	switch hs.kind {
	case kindMessages:
		t.serveMessages(c, hs, log)
	case kindSnapshot:
		t.serveSnapshot(c, hs, log)
	case kindClusterInfo:
		t.serveClusterInfo(c, log)
	}
}

// check decides whether to accept a handshake, and why not.
func (t *Transport) check(hs handshake) (rejectCode, string) {
	info := hs.kind == kindClusterInfo // a joining member knows neither cluster nor receiver
	switch {
	case t.ctx.Err() != nil:
		return codeStopping, fmt.Sprintf("member %x is shutting down", t.cfg.ID)
	case hs.version != protocolVersion:
		return codeBadVersion, fmt.Sprintf("member %x speaks peer protocol version %d, not %d; run compatible synod versions on all members",
			t.cfg.ID, protocolVersion, hs.version)
	case hs.kind != kindMessages && hs.kind != kindSnapshot && !info:
		return codeBadKind, fmt.Sprintf("member %x does not know connection kind %d", t.cfg.ID, uint8(hs.kind))
	case hs.clusterID != t.cfg.ClusterID && !(info && hs.clusterID == 0):
		return codeClusterMismatch, fmt.Sprintf("member %x belongs to cluster %x, not to cluster %x; check the peer URLs and that all members use the same --initial-cluster-token and --initial-cluster",
			t.cfg.ID, t.cfg.ClusterID, hs.clusterID)
	case hs.to != t.cfg.ID && !(info && hs.to == 0):
		return codeWrongMember, fmt.Sprintf("this is member %x, not member %x; member %x has a wrong peer URL for %x",
			t.cfg.ID, hs.to, hs.from, hs.to)
	case (hs.from == 0 && !info) || hs.from == t.cfg.ID:
		return codeBadSender, fmt.Sprintf("sender ID %x is invalid here (zero, or member %x's own ID): two members share an ID", hs.from, t.cfg.ID)
	case hs.from != 0 && t.h.IsRemoved(hs.from):
		return codeRemoved, fmt.Sprintf("member %x was removed from cluster %x and must not rejoin with its old identity; remove its data directory and add it as a new member",
			hs.from, t.cfg.ClusterID)
	}
	return codeAccept, ""
}

// serveMessages reads a message stream and passes its messages to
// Handler.Process in order, while a helper goroutine sends keepalives back.
func (t *Transport) serveMessages(c net.Conn, hs handshake, log *slog.Logger) {
	// One stream per member: a newer one means the member redialled, and
	// the old one is dead or about to be.
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	old := t.inbound[hs.from]
	t.inbound[hs.from] = c
	t.mu.Unlock()
	if old != nil {
		old.Close()
	}
	defer func() {
		t.mu.Lock()
		if t.inbound[hs.from] == c {
			delete(t.inbound, hs.from)
		}
		t.mu.Unlock()
	}()

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.sendKeepalives(c, hs.keepalive, done)
	}()
	defer func() {
		close(done)
		c.Close()
		wg.Wait()
	}()

	log.Info("accepted peer stream")
	t.dialBackSoon(hs.from)
	fr := newFrameReader(c, t.cfg.IdleTimeout, t.cfg.MaxFrameBytes)
	var received uint64
	for {
		typ, payload, err := fr.next(nil)
		if err != nil {
			t.logStreamEnd(log, err, received)
			return
		}
		switch typ {
		case frameKeepalive:
			continue
		case frameMessage:
		default:
			log.Warn("closing peer stream: protocol error", slog.Any("error",
				fmt.Errorf("%w: %s frame on a message stream", ErrProtocol, typ)))
			return
		}
		var m raftpb.Message
		if err := decodeMessage(payload, hs.from, t.cfg.ID, false, &m); err != nil {
			log.Warn("closing peer stream: protocol error", slog.Uint64("message", received), slog.Any("error", err))
			return
		}
		received++
		if err := t.h.Process(t.ctx, m); err != nil {
			if t.ctx.Err() != nil {
				return
			}
			if log.Enabled(t.ctx, slog.LevelDebug) {
				log.Debug("processing a peer message failed", slog.String("type", m.Type.String()), slog.Any("error", err))
			}
		}
	}
}

func (t *Transport) logStreamEnd(log *slog.Logger, err error, received uint64) {
	if t.ctx.Err() != nil {
		return
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		log.Info("peer closed its stream", slog.Uint64("messages", received))
	case errors.Is(err, net.ErrClosed):
		log.Info("peer stream closed (replaced by a newer one, or the peer was removed)", slog.Uint64("messages", received))
	case errors.Is(err, ErrProtocol):
		log.Warn("closing peer stream: protocol error", slog.Uint64("messages", received), slog.Any("error", err))
	case errors.As(err, &ne) && ne.Timeout():
		log.Warn("closing peer stream: nothing received, not even keepalives, within IdleTimeout; the peer or the network path is down",
			slog.Duration("idle_timeout", t.cfg.IdleTimeout), slog.Uint64("messages", received))
	default:
		log.Warn("peer stream failed", slog.Uint64("messages", received), slog.Any("error", err))
	}
}

// sendKeepalives writes a keepalive frame every interval (as the dialer
// asked) until done is closed or a write fails, which closes c.
func (t *Transport) sendKeepalives(c net.Conn, interval time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if err := c.SetWriteDeadline(time.Now().Add(t.cfg.IdleTimeout)); err != nil {
			c.Close()
			return
		}
		if _, err := c.Write(keepaliveFrame); err != nil {
			c.Close()
			return
		}
	}
}

// serveSnapshot receives one snapshot: its MsgSnap, then its data through
// Handler.ReceiveSnapshot, then Process, then the ack.
func (t *Transport) serveSnapshot(c net.Conn, hs handshake, log *slog.Logger) {
	start := time.Now()
	fr := newFrameReader(c, t.cfg.SnapshotTimeout, t.cfg.MaxFrameBytes)
	typ, payload, err := fr.next(nil)
	if err == nil && typ != frameMessage {
		err = fmt.Errorf("%w: %s frame where the MsgSnap was expected", ErrProtocol, typ)
	}
	var m raftpb.Message
	if err == nil {
		err = decodeMessage(payload, hs.from, t.cfg.ID, true, &m)
	}
	if err != nil {
		if t.ctx.Err() == nil {
			log.Warn("closing snapshot connection", slog.Any("error", err))
		}
		return
	}
	meta := m.Snapshot.Metadata
	log = log.With(slog.Uint64("index", meta.Index), slog.Uint64("term", meta.Term))
	log.Info("receiving snapshot")

	sr := &snapshotReader{fr: fr}
	err = t.h.ReceiveSnapshot(meta, sr)
	if err != nil {
		err = fmt.Errorf("storing the snapshot failed: %w", err)
	} else if err = sr.drain(); err != nil {
		err = fmt.Errorf("the snapshot data was not intact: %w", err)
	} else if err = t.h.Process(t.ctx, m); err != nil {
		err = fmt.Errorf("raft did not accept the snapshot: %w", err)
	}
	if t.ctx.Err() != nil {
		return
	}
	if err != nil {
		log.Warn("refusing snapshot", slog.Uint64("bytes_received", sr.total), slog.Any("error", err))
	} else {
		log.Info("received snapshot", slog.Uint64("bytes", sr.total), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	}
	if werr := c.SetWriteDeadline(time.Now().Add(t.cfg.IdleTimeout)); werr != nil {
		return
	}
	if _, werr := c.Write(appendAck(nil, err)); werr != nil && err == nil {
		// The sender will report a failure and send it again.
		log.Warn("cannot acknowledge the received snapshot", slog.Any("error", werr))
	}
}

// serveClusterInfo answers a FetchCluster request.
func (t *Transport) serveClusterInfo(c net.Conn, log *slog.Logger) {
	info := t.h.ClusterInfo()
	if len(info) > t.cfg.MaxFrameBytes {
		log.Error("cannot answer a cluster info request: the info exceeds MaxFrameBytes", slog.Int("bytes", len(info)))
		return
	}
	if err := c.SetWriteDeadline(time.Now().Add(t.cfg.IdleTimeout)); err != nil {
		return
	}
	if _, err := c.Write(appendFrame(nil, frameClusterInfo, info)); err != nil {
		log.Warn("cannot answer a cluster info request", slog.Any("error", err))
		return
	}
	log.Info("sent cluster info to a joining member", slog.Int("bytes", len(info)))
}

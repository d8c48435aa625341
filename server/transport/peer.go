package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/synod-db/synod/internal/endpoint"
	"github.com/synod-db/synod/raft/raftpb"
)

// peer is the sending side towards one member. Its run goroutine owns the
// message stream and everything used to write it (buf, the address
// rotation); Send only touches the queue and the atomics; mu guards what
// UpdatePeer and ActiveSince share with run.
type peer struct {
	t      *Transport
	id     uint64
	ctx    context.Context // cancelled by RemovePeer and Stop
	cancel context.CancelFunc

	queue  chan raftpb.Message
	redial chan struct{} // capacity 1: the URLs changed, reconnect
	wake   chan struct{} // capacity 1: end the backoff (the peer is up)

	connected    atomic.Bool // the stream is up: Send may queue
	snapshotting atomic.Bool // a snapshot goroutine runs
	dropped      atomic.Int64
	lastDropLog  atomic.Int64 // unix nanos

	mu    sync.Mutex
	urls  []string
	addrs []string
	next  int // index into addrs of the address to dial next
	since time.Time

	buf []byte // run's batch buffer
}

func newPeer(t *Transport, id uint64, urls, addrs []string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:      t,
		id:     id,
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan raftpb.Message, t.cfg.QueueSize),
		redial: make(chan struct{}, 1),
		wake:   make(chan struct{}, 1),
		urls:   slices.Clone(urls),
		addrs:  addrs,
	}
}

// dialBackSoon ends the backoff of the stream to member id if it is down:
// id just connected to this member, so it is up, and messages to it (a
// follower's answers, proposals it should order) need not wait for the
// next retry.
func (t *Transport) dialBackSoon(id uint64) {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil || p.connected.Load() {
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *peer) setURLs(urls, addrs []string) {
	p.mu.Lock()
	changed := !slices.Equal(p.addrs, addrs)
	if changed {
		p.urls, p.addrs, p.next = slices.Clone(urls), addrs, 0
	}
	p.mu.Unlock()
	if changed {
		p.t.log.Info("peer URLs changed; reconnecting", idAttr("peer", p.id), slog.Any("urls", urls))
		select {
		case p.redial <- struct{}{}:
		default:
		}
	}
}

// address returns the URL and address to dial next.
func (p *peer) address() (url, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.next % len(p.addrs)
	return p.urls[i], p.addrs[i]
}

// failed moves on to the next address after addr failed.
func (p *peer) failed(addr string) {
	p.mu.Lock()
	if p.addrs[p.next%len(p.addrs)] == addr {
		p.next = (p.next + 1) % len(p.addrs)
	}
	p.mu.Unlock()
}

func (p *peer) activeSince() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.since
}

func (p *peer) setActive(since time.Time) {
	p.mu.Lock()
	p.since = since
	p.mu.Unlock()
	p.connected.Store(!since.IsZero())
}

// send queues m without blocking, or drops it and reports the peer
// unreachable.
func (p *peer) send(m *raftpb.Message) {
	if !p.connected.Load() {
		p.t.markUnreachable(p.id)
		return
	}
	select {
	case p.queue <- *m:
	default:
		p.t.markUnreachable(p.id)
		p.noteDrop()
	}
}

// noteDrop counts a message dropped for a full queue and logs the count at
// most once a second.
func (p *peer) noteDrop() {
	n := p.dropped.Add(1)
	now := time.Now().UnixNano()
	last := p.lastDropLog.Load()
	if now-last < int64(time.Second) || !p.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	p.dropped.Add(-n)
	p.t.log.Warn("dropping messages: the peer's send queue is full (the peer or the network is slower than this member sends)",
		idAttr("peer", p.id), slog.Int64("dropped", n), slog.Int("queue_size", p.t.cfg.QueueSize))
}

// dropQueued empties the queue of a peer whose stream is down.
func (p *peer) dropQueued() {
	n := 0
	for {
		select {
		case <-p.queue:
			n++
		default:
			if n > 0 {
				p.t.markUnreachable(p.id)
			}
			return
		}
	}
}

// errRedial ends a stream whose peer URLs changed.
var errRedial = errors.New("peer URLs changed")

// run keeps a message stream to the peer open until the peer is removed or
// the transport stops.
func (p *peer) run() {
	defer p.t.wg.Done()
	log := p.t.log.With(idAttr("peer", p.id))
	var backoff time.Duration
	lastErr := "" // the kind of the last dial error logged above debug level
	for p.ctx.Err() == nil {
		url, addr := p.address()
		c, resp, err := dialResponse(p.ctx, p.t.cfg.DialTimeout, p.t.cfg.wrapConn, url, addr, handshake{
			version: protocolVersion, kind: kindMessages, clusterID: p.t.cfg.ClusterID, from: p.t.cfg.ID, to: p.id,
			keepalive: p.t.keepalive,
		})
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrMemberRemoved) && p.t.cfg.OnRemoved != nil {
				p.t.removedOnce.Do(p.t.cfg.OnRemoved)
			}
			p.failed(addr)
			p.dropQueued()
			backoff = nextBackoff(backoff)
			// Log a failure once (and again when it changes), not on every
			// retry of a peer that is down for a long time.
			level := slog.LevelDebug
			if kind := errKind(err); kind != lastErr {
				lastErr = kind
				level = slog.LevelWarn
				if errors.Is(err, ErrRejected) {
					level = slog.LevelError
				}
			}
			log.Log(p.ctx, level, "cannot connect to peer; retrying", slog.String("url", url),
				slog.Duration("backoff", backoff), slog.Any("error", err))
			if !p.wait(backoff, &backoff) {
				return
			}
			continue
		}
		lastErr = ""
		start := time.Now()
		p.setActive(start)
		log.Info("peer stream connected", slog.String("url", url))
		err = p.stream(c, resp.keepalive)
		p.setActive(time.Time{})
		p.dropQueued()
		if p.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errRedial) {
			continue
		}
		log.Warn("peer stream lost; reconnecting", slog.String("url", url),
			slog.Duration("was_up", time.Since(start).Round(time.Millisecond)), slog.Any("error", err))
		if time.Since(start) >= maxBackoff {
			backoff = 0 // it was up for a while: retry quickly
		}
		backoff = nextBackoff(backoff)
		if !p.wait(backoff, &backoff) {
			return
		}
	}
}

// errKind classifies dial errors, so that a peer that stays down is logged
// once per kind of failure rather than once per retry (the texts differ in
// ephemeral port numbers).
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, ErrRejected):
		return err.Error() // URL and reason: stable across retries
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

// wait sleeps for d. It returns false if the peer is going away. A change
// of URLs cuts the wait short and resets the backoff.
func (p *peer) wait(d time.Duration, backoff *time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-p.redial:
		*backoff = 0
		return true
	case <-p.wake:
		*backoff = 0
		return true
	case <-p.ctx.Done():
		return false
	}
}

// nextBackoff doubles the previous backoff within [minBackoff, maxBackoff]
// and returns a value jittered to [d/2, d], so that members that lost a
// peer at the same moment do not redial it in lockstep.
func nextBackoff(prev time.Duration) time.Duration {
	d := min(max(2*prev, minBackoff), maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// stream writes queued messages to c until c fails, the peer goes away or
// its URLs change. keepalive is the interval the acceptor asked for.
func (p *peer) stream(c net.Conn, keepalive time.Duration) error {
	release := closeOnCancel(p.ctx, c)
	defer release()

	// The acceptor sends keepalives; hearing none for IdleTimeout means
	// the peer or the path to it is dead even if writes still succeed
	// (they only fill the socket buffer).
	dead := make(chan struct{})
	var deadErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadErr = p.readKeepalives(c)
		close(dead)
	}()
	defer func() {
		c.Close()
		wg.Wait()
	}()

	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	quiet := true // nothing written since the last tick
	for {
		select {
		case m := <-p.queue:
			p.buf = p.appendMessage(p.buf[:0], &m)
		batch:
			for len(p.buf) < maxBatchBytes {
				select {
				case m := <-p.queue:
					p.buf = p.appendMessage(p.buf, &m)
				default:
					break batch
				}
			}
			if len(p.buf) == 0 {
				continue
			}
			err := p.write(c, p.buf)
			if cap(p.buf) > maxRetainedBuf {
				p.buf = nil
			}
			if err != nil {
				p.t.markUnreachable(p.id) // the batch is lost
				return err
			}
			quiet = false
		case <-tick.C:
			if quiet {
				if err := p.write(c, keepaliveFrame); err != nil {
					return err
				}
			}
			quiet = true
		case <-dead:
			return deadErr
		case <-p.redial:
			return errRedial
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
}

// appendMessage appends m's frame to buf, or drops m if it is too large
// for any peer to accept.
func (p *peer) appendMessage(buf []byte, m *raftpb.Message) []byte {
	size := raftpb.MessageSize(m)
	if size > p.t.cfg.MaxFrameBytes {
		p.t.log.Error("dropping message larger than MaxFrameBytes; lower raft's MaxSizePerMsg or raise MaxFrameBytes",
			idAttr("peer", p.id), slog.String("type", m.Type.String()), slog.Int("bytes", size),
			slog.Int("max_frame_bytes", p.t.cfg.MaxFrameBytes))
		p.t.markUnreachable(p.id)
		return buf
	}
	return appendMessageFrame(buf, m, size)
}

func (p *peer) write(c net.Conn, b []byte) error {
	if err := c.SetWriteDeadline(time.Now().Add(p.t.cfg.IdleTimeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if _, err := c.Write(b); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("writing %d bytes made no progress for %v; the peer stopped reading: %w", len(b), p.t.cfg.IdleTimeout, err)
		}
		return fmt.Errorf("write %d bytes: %w", len(b), err)
	}
	return nil
}

// readKeepalives reads the acceptor's keepalives until c fails or stays
// silent for IdleTimeout.
func (p *peer) readKeepalives(c net.Conn) error {
	fr := newFrameReader(c, p.t.cfg.IdleTimeout, 0)
	for {
		t, _, err := fr.next(nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("no keepalive from the peer for %v; the peer or the network path is down: %w", p.t.cfg.IdleTimeout, err)
			}
			return fmt.Errorf("read from peer: %w", err)
		}
		if t != frameKeepalive {
			return fmt.Errorf("%w: %s frame from the acceptor of a message stream", ErrProtocol, t)
		}
	}
}

// dial connects to a member and completes a handshake. wrap (for tests)
// wraps the connection.
func dial(ctx context.Context, timeout time.Duration, wrap func(net.Conn) net.Conn, url, addr string, hs handshake) (net.Conn, error) {
	c, _, err := dialResponse(ctx, timeout, wrap, url, addr, hs)
	return c, err
}

// dialResponse is dial that also returns the acceptor's response.
func dialResponse(ctx context.Context, timeout time.Duration, wrap func(net.Conn) net.Conn, url, addr string, hs handshake) (net.Conn, response, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := endpoint.Dial(ctx, &d, addr)
	if err != nil {
		return nil, response{}, fmt.Errorf("dial %s: %w", url, err)
	}
	if wrap != nil {
		c = wrap(c)
	}
	release := closeOnCancel(ctx, c)
	resp, err := handshakeConn(c, timeout, url, hs)
	release()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, response{}, err
	}
	return c, resp, nil
}

func handshakeConn(c net.Conn, timeout time.Duration, url string, hs handshake) (response, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return response{}, fmt.Errorf("handshake with %s: %w", url, err)
	}
	var buf [requestLen]byte
	if _, err := c.Write(appendHandshake(buf[:0], hs)); err != nil {
		return response{}, fmt.Errorf("handshake with %s: %w", url, err)
	}
	resp, err := readResponse(c)
	if err != nil {
		return response{}, fmt.Errorf("handshake with %s: %w", url, err)
	}
	if resp.code != codeAccept {
		return resp, resp.rejection(hs.kind, url)
	}
	// An acceptor that accepted must be the one we meant: it checked our
	// request, but a mismatch here would mean a broken peer.
	if resp.version != protocolVersion ||
		(hs.clusterID != 0 && resp.clusterID != hs.clusterID) || (hs.to != 0 && resp.memberID != hs.to) {
		return resp, fmt.Errorf("%w: %s accepted a %s connection as member %x of cluster %x (protocol %d), want member %x of cluster %x (protocol %d)",
			ErrProtocol, url, hs.kind, resp.memberID, resp.clusterID, resp.version, hs.to, hs.clusterID, protocolVersion)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return resp, fmt.Errorf("handshake with %s: %w", url, err)
	}
	return resp, nil
}

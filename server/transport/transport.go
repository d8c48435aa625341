package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/synod-db/synod/internal/endpoint"
	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
)

// Handler is what the transport needs from the server. Its methods are
// called from the transport's goroutines, several at a time, so they must
// be safe for concurrent use; none is called after Stop returns.
type Handler interface {
	// Process hands a message received from a peer to raft (usually
	// raft.Node.Step). Messages of one stream arrive in order, one call at
	// a time. It may block, which slows the sender down through TCP flow
	// control; ctx is cancelled when the transport stops. An error is
	// logged at debug level and the stream goes on.
	Process(ctx context.Context, m raftpb.Message) error
	// IsRemoved reports whether id was removed from the cluster. Such a
	// member must not take part any more (it might disrupt elections), so
	// its connections are refused.
	IsRemoved(id uint64) bool
	// ReportUnreachable tells raft that messages to id were lost (usually
	// raft.Node.ReportUnreachable), so that the leader stops streaming
	// appends and probes the follower. Reports are coalesced: one call may
	// stand for many lost messages. Calls come from one goroutine of the
	// transport, so a slow handler delays reports, never sends.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft how sending a snapshot to id ended
	// (usually raft.Node.ReportSnapshot): SnapshotFinish once the receiver
	// stored it and accepted the MsgSnap, SnapshotFailure otherwise.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
	// OpenSnapshot returns the application data of the snapshot described
	// by meta, which a MsgSnap from raft carries only as metadata. The
	// transport reads it to the end (or until the transfer fails) and
	// closes it. Reads should not block indefinitely: Stop waits for them.
	OpenSnapshot(meta raftpb.SnapshotMetadata) (io.ReadCloser, error)
	// ReceiveSnapshot stores the data of an incoming snapshot before its
	// MsgSnap is passed to Process. data returns io.EOF only after all of
	// it arrived intact; a checksum mismatch, a truncated transfer or a
	// broken connection make Read fail, and ReceiveSnapshot must then
	// return an error and not keep what it read. Bytes it leaves unread
	// are read and checked by the transport before the MsgSnap is
	// processed. Snapshots from different members may arrive at the same
	// time. Stop closes the connection, which makes Read fail, and waits
	// for ReceiveSnapshot to return.
	ReceiveSnapshot(meta raftpb.SnapshotMetadata, data io.Reader) error
	// ClusterInfo returns what FetchCluster callers receive: opaque bytes,
	// typically the encoded member list, for a member joining the cluster.
	ClusterInfo() []byte
}

// Config configures a Transport. ClusterID, ID and Handler are required;
// zero values of the other fields select the documented defaults.
type Config struct {
	// ClusterID is the cluster this member belongs to. Connections from
	// members of other clusters are refused, so that two clusters sharing
	// a network (or a stale member list) never mix their logs.
	ClusterID uint64
	// ID is this member's raft ID: the From of the messages it sends and
	// the To of those it accepts.
	ID uint64
	// Handler receives messages and reports; see Handler.
	Handler Handler
	// Logger receives the transport's logs; nil means slog.Default().
	Logger *slog.Logger
	// DialTimeout bounds connecting to a peer and completing the
	// handshake. Default 2s.
	DialTimeout time.Duration
	// IdleTimeout is how long a message stream may stay silent, or a
	// write may stay stuck, before the connection is considered dead and
	// closed. In the handshake this member asks the other side for
	// keepalives every min(IdleTimeout/4, 1s), so a healthy idle
	// connection never reaches it, whatever the other member's setting.
	// Default 5s.
	IdleTimeout time.Duration
	// SnapshotTimeout is how long a snapshot transfer may make no
	// progress: no data moving either way, or no acknowledgement after the
	// last byte while the receiver stores the snapshot. Default 1m.
	SnapshotTimeout time.Duration
	// QueueSize is the number of messages that may wait for each peer's
	// writer; more are dropped and reported unreachable. It bounds the
	// memory a slow peer can pin. Default 4096.
	QueueSize int
	// MaxFrameBytes is the largest frame accepted from a peer and the
	// largest encoded message sent to one (larger ones are dropped and
	// logged). It bounds the memory one frame can make this member
	// allocate. It should be the same on all members and well above raft's
	// MaxSizePerMsg. Default 64 MiB; at least 4 KiB.
	MaxFrameBytes int

	// OnRemoved, if set, is called once when a peer refuses this member
	// because it was removed from the cluster, so that the member can stop
	// instead of campaigning forever against members that ignore it.
	OnRemoved func()

	// wrapConn, when set (by tests), wraps every connection this transport
	// dials, e.g. to count writes.
	wrapConn func(net.Conn) net.Conn
}

const (
	defaultDialTimeout     = 2 * time.Second
	defaultIdleTimeout     = 5 * time.Second
	defaultSnapshotTimeout = time.Minute
	defaultQueueSize       = 4096
	defaultMaxFrameBytes   = 64 << 20
	minMaxFrameBytes       = 4 << 10
	maxMaxFrameBytes       = 1<<32 - 1
	maxKeepaliveInterval   = time.Second

	// maxBatchBytes is where the writer stops adding queued messages to a
	// batch and writes it. The limit is soft: a batch may exceed it by one
	// message.
	maxBatchBytes = 1 << 20
	// maxRetainedBuf is the largest batch buffer a writer keeps for the
	// next batch; a larger one (grown by a huge message) is released.
	maxRetainedBuf = 4 * maxBatchBytes
	// snapshotChunkSize is the size of the data chunks of a snapshot.
	snapshotChunkSize = 1 << 20

	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Errors the transport returns or wraps. Callers test for them with
// errors.Is.
var (
	// ErrStopped is returned by Serve after Stop, and by operations on a
	// stopped transport, so that a caller can tell a shutdown from a
	// failure.
	ErrStopped = errors.New("transport: stopped")
	// ErrInvalidURL is wrapped by AddPeer, UpdatePeer and FetchCluster
	// errors about peer URLs this transport cannot use (a scheme other
	// than http, a missing port), so that configuration mistakes surface
	// before any connection is tried.
	ErrInvalidURL = errors.New("transport: invalid peer URL")
	// ErrRejected is wrapped by dial errors when the remote member refused
	// the handshake; the error text carries its reason. It tells a
	// misconfiguration (which retrying does not fix) from a network fault.
	ErrRejected = errors.New("transport: connection refused by the remote member")
	// ErrMemberRemoved is wrapped, with ErrRejected, when the remote member
	// refused because this member was removed from the cluster: a removed
	// member must stop, not retry.
	ErrMemberRemoved = errors.New("transport: this member was removed from the cluster")
	// ErrClusterMismatch is wrapped, with ErrRejected, when the remote
	// member belongs to another cluster, which usually means a wrong peer
	// URL or a wrong cluster token.
	ErrClusterMismatch = errors.New("transport: cluster ID mismatch")
	// ErrProtocol is wrapped by errors about bytes that break the wire
	// format: bad magic, checksum mismatches, oversized or misplaced
	// frames, undecodable or misaddressed messages. Such connections are
	// closed; the data in them is never used.
	ErrProtocol = errors.New("transport: protocol error")
)

// Transport connects this member to its peers. Create it with New, start
// accepting with Serve, add peers with AddPeer, send with Send, and finish
// with Stop. All methods are safe for concurrent use.
type Transport struct {
	cfg       Config
	h         Handler
	log       *slog.Logger
	keepalive time.Duration

	// ctx is cancelled by Stop; everything the transport started watches
	// it, and wg counts everything it started.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	removedOnce sync.Once

	mu      sync.RWMutex
	stopped bool
	peers   map[uint64]*peer
	inbound map[uint64]net.Conn // the current message stream from each member

	// unreach holds the peers to report unreachable; the report loop
	// drains it, so that Send never calls into the handler.
	unreachMu  sync.Mutex
	unreach    map[uint64]struct{}
	unreachSig chan struct{}
}

// New validates cfg and returns a Transport with no peers that accepts no
// connections yet.
func New(cfg Config) (*Transport, error) {
	if cfg.ClusterID == 0 {
		return nil, errors.New("transport: Config.ClusterID is 0; the cluster ID must be known before the transport starts (a joining member learns it with FetchCluster)")
	}
	if cfg.ID == 0 {
		return nil, errors.New("transport: Config.ID is 0, which raft reserves for \"no member\"; set this member's ID")
	}
	if cfg.Handler == nil {
		return nil, errors.New("transport: Config.Handler is nil; the transport needs one to deliver messages")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if cfg.SnapshotTimeout <= 0 {
		cfg.SnapshotTimeout = defaultSnapshotTimeout
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = defaultQueueSize
	}
	switch {
	case cfg.MaxFrameBytes == 0:
		cfg.MaxFrameBytes = defaultMaxFrameBytes
	case cfg.MaxFrameBytes < minMaxFrameBytes || cfg.MaxFrameBytes > maxMaxFrameBytes:
		return nil, fmt.Errorf("transport: Config.MaxFrameBytes %d is out of range [%d, %d]", cfg.MaxFrameBytes, minMaxFrameBytes, int64(maxMaxFrameBytes))
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:        cfg,
		h:          cfg.Handler,
		log:        cfg.Logger.With(slog.String("component", "transport"), idAttr("local", cfg.ID)),
		keepalive:  min(cfg.IdleTimeout/4, maxKeepaliveInterval),
		ctx:        ctx,
		cancel:     cancel,
		peers:      make(map[uint64]*peer),
		inbound:    make(map[uint64]net.Conn),
		unreach:    make(map[uint64]struct{}),
		unreachSig: make(chan struct{}, 1),
	}
	t.wg.Add(1)
	go t.reportLoop()
	return t, nil
}

// Serve accepts peer connections on ln until Stop, and then returns
// ErrStopped; it returns another error only if ln fails for good. It
// closes ln when it returns. Several listeners may be served at once.
func (t *Transport) Serve(ln net.Listener) error {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		ln.Close()
		return ErrStopped
	}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	release := closeOnCancel(t.ctx, ln)
	defer release()
	defer ln.Close()

	t.log.Info("accepting peer connections", slog.String("address", ln.Addr().String()))
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return ErrStopped
			}
			if !temporary(err) {
				return fmt.Errorf("transport: accept peer connections on %s: %w", ln.Addr(), err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accepting a peer connection failed; retrying", slog.Duration("after", delay), slog.Any("error", err))
			if !sleep(t.ctx, delay) {
				return ErrStopped
			}
			continue
		}
		delay = 0
		t.wg.Add(1) // safe: this goroutine holds a count, so Stop's Wait cannot have returned
		go t.handleConn(c)
	}
}

// temporary reports whether an Accept error may go away by itself (a
// full file table, an aborted connection), as opposed to a closed or
// broken listener.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// Stop closes the listeners and all connections, stops every goroutine of
// the transport and waits for them. Messages still queued are dropped, and
// no Handler method is called once Stop has returned. Calling it again
// does nothing.
func (t *Transport) Stop() {
	t.mu.Lock()
	already := t.stopped
	t.stopped = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	if !already {
		t.log.Info("transport stopped")
	}
}

// AddPeer makes the transport keep a message stream open to member id at
// one of urls (tried in turn) and accept Send for it. Adding a known peer
// updates its URLs as UpdatePeer does. It returns an error wrapping
// ErrInvalidURL when no URL is usable and ErrStopped after Stop.
func (t *Transport) AddPeer(id uint64, urls []string) error {
	if id == 0 || id == t.cfg.ID {
		return fmt.Errorf("transport: cannot add peer %x: the ID is 0 or this member's own", id)
	}
	addrs, err := parseURLs(urls)
	if err != nil {
		return fmt.Errorf("transport: add peer %x: %w", id, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return ErrStopped
	}
	if p := t.peers[id]; p != nil {
		p.setURLs(urls, addrs)
		return nil
	}
	p := newPeer(t, id, urls, addrs)
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
	t.log.Info("added peer", idAttr("peer", id), slog.Any("urls", urls))
	return nil
}

// UpdatePeer replaces the URLs of peer id, for a member whose address
// changed. If the new URLs differ from the old, the stream is redialled
// at once.
func (t *Transport) UpdatePeer(id uint64, urls []string) error {
	addrs, err := parseURLs(urls)
	if err != nil {
		return fmt.Errorf("transport: update peer %x: %w", id, err)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		return ErrStopped
	}
	p := t.peers[id]
	if p == nil {
		return fmt.Errorf("transport: update peer %x: unknown peer; add it with AddPeer first", id)
	}
	p.setURLs(urls, addrs)
	return nil
}

// RemovePeer forgets member id: its stream and any snapshot being sent to
// it are closed, messages for it are dropped from now on, and its incoming
// stream is closed too. Its goroutines finish in the background (Stop waits
// for them). Removing an unknown peer does nothing.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	in := t.inbound[id]
	delete(t.inbound, id)
	t.mu.Unlock()
	if p != nil {
		p.cancel()
		t.log.Info("removed peer", idAttr("peer", id))
	}
	if in != nil {
		in.Close()
	}
}

// Send queues msgs for their recipients and returns without waiting for
// the network. A message that cannot be queued (the peer's stream is down
// or its queue is full) is dropped and its recipient reported unreachable,
// so raft retries; messages to unknown members are dropped. A MsgSnap is
// handed to a goroutine that streams the snapshot on its own connection
// and reports the outcome with Handler.ReportSnapshot.
//
// The messages (and the entries they point to) must not be modified after
// Send: they are encoded later, on the peers' goroutines.
func (t *Transport) Send(msgs []raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		return
	}
	for i := range msgs {
		m := &msgs[i]
		p := t.peers[m.To]
		if p == nil {
			if t.log.Enabled(context.Background(), slog.LevelDebug) {
				t.log.Debug("dropping message to unknown peer", idAttr("peer", m.To), slog.String("type", m.Type.String()))
			}
			continue
		}
		if m.Type == raftpb.MsgSnap {
			p.startSnapshot(*m) // safe under t.mu: Stop cannot be waiting yet
			continue
		}
		p.send(m)
	}
}

// HasPeer reports whether Send can reach member id (AddPeer was called
// for it and RemovePeer was not).
func (t *Transport) HasPeer(id uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.peers[id] != nil
}

// ActiveSince returns the time the message stream to peer id was last
// established, or the zero time if it is down or id is unknown. The
// server uses it to tell which members are reachable (for example before
// removing a member would lose quorum).
func (t *Transport) ActiveSince(id uint64) time.Time {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return time.Time{}
	}
	return p.activeSince()
}

// markUnreachable records that messages to id were lost. The report loop
// tells the handler; Send never calls it directly, because the handler
// (raft.Node) may block.
func (t *Transport) markUnreachable(id uint64) {
	t.unreachMu.Lock()
	if _, ok := t.unreach[id]; !ok {
		t.unreach[id] = struct{}{}
	}
	t.unreachMu.Unlock()
	select {
	case t.unreachSig <- struct{}{}:
	default:
	}
}

// reportLoop calls Handler.ReportUnreachable for the peers marked since
// its last round, once each, until Stop.
func (t *Transport) reportLoop() {
	defer t.wg.Done()
	var ids []uint64
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.unreachSig:
		}
		t.unreachMu.Lock()
		for id := range t.unreach {
			ids = append(ids, id)
			delete(t.unreach, id)
		}
		t.unreachMu.Unlock()
		slices.Sort(ids)
		for _, id := range ids {
			if t.ctx.Err() != nil {
				return
			}
			t.h.ReportUnreachable(id)
		}
		ids = ids[:0]
	}
}

// parseURLs checks peer URLs and returns their host:port addresses.
func parseURLs(urls []string) ([]string, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: no URLs given", ErrInvalidURL)
	}
	addrs := make([]string, len(urls))
	for i, s := range urls {
		a, err := parseURL(s)
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	return addrs, nil
}

// parseURL returns the address of a peer URL: http://host:port, or a
// unix socket (endpoint.Parse).
func parseURL(s string) (string, error) {
	addr, err := endpoint.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	return addr, nil
}

// closeOnCancel closes c when ctx is cancelled. The returned release
// stops that, or waits for the close if it already began, so that no
// goroutine of it outlives its caller.
func closeOnCancel(ctx context.Context, c io.Closer) (release func()) {
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		close(done)
	})
	return func() {
		if !stop() {
			<-done
		}
	}
}

// sleep waits for d or until ctx is cancelled, and reports whether the
// full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// idAttr formats a member ID in hex, as etcd's tools and synod's member
// list show them.
func idAttr(key string, id uint64) slog.Attr {
	return slog.String(key, strconv.FormatUint(id, 16))
}

package chaos

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synod-db/synod/raft/raftpb"
)

// LinkRule is what the proxies do to the traffic of one direction of a
// link between two members. The zero value forwards everything at once.
type LinkRule struct {
	// Blackhole discards everything: raft messages are dropped whole,
	// other bytes are swallowed (and the connection is closed once the
	// link heals, since its stream lost bytes), and new connections get
	// no answer to their handshake.
	Blackhole bool
	// Drop, Duplicate and Reorder are the probabilities that one raft
	// message is dropped, sent twice, or held back behind later messages.
	Drop, Duplicate, Reorder float64
	// DuplicateProposals lets Duplicate apply to MsgProp too (proposals a
	// follower forwards to the leader). Raft itself tolerates duplicated
	// messages, but a duplicated MsgProp is a client request appended
	// twice, which synod does not detect (see TestDuplicatedProposal);
	// the transport never duplicates, so by default neither do proxies.
	DuplicateProposals bool
	// Delay holds every message (or chunk of bytes) back this long, plus
	// a random part up to Jitter; order is kept.
	Delay, Jitter time.Duration
}

// Any is the wildcard member name in link rules.
const Any = "*"

// NetStats counts what the proxies did.
type NetStats struct {
	Conns, Refused, Resets                    int64
	Forwarded, Dropped, Duplicated, Reordered int64
}

// Network is a set of TCP proxies, one in front of each member's peer
// listener, that inject faults into the raft traffic between members. A
// member advertises its proxy's address as its peer URL and listens on
// another address, which the proxy forwards to. Because synod's peer
// protocol opens every connection with a handshake that names the dialer
// and the member it means to reach (see server/transport's package
// documentation), a proxy knows the link each connection belongs to and
// applies that link's LinkRule: on raft message streams frame by frame
// (drop, duplicate, reorder, delay, blackhole), on the other direction
// and on snapshot transfers as bytes (delay, blackhole).
type Network struct {
	lg *slog.Logger

	mu      sync.Mutex
	rng     *rand.Rand
	ids     map[uint64]string
	rules   map[[2]string]LinkRule
	conns   map[*pconn]struct{}
	proxies []*Proxy
	changed chan struct{} // closed and replaced whenever rules change
	closed  bool

	wg    sync.WaitGroup
	stats struct {
		conns, refused, resets                    atomic.Int64
		forwarded, dropped, duplicated, reordered atomic.Int64
	}
}

// NewNetwork returns an empty network whose random choices derive from
// seed.
func NewNetwork(seed uint64, lg *slog.Logger) *Network {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Network{
		lg:      lg,
		rng:     rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		ids:     map[uint64]string{},
		rules:   map[[2]string]LinkRule{},
		conns:   map[*pconn]struct{}{},
		changed: make(chan struct{}),
	}
}

// Proxy is the proxy in front of one member's peer listener.
type Proxy struct {
	n      *Network
	name   string
	ln     net.Listener
	target atomic.Pointer[string]
}

// AddProxy starts a proxy for the member called name, listening on a
// free loopback port and forwarding to target (the member's real peer
// address, which SetTarget may change when the member restarts).
func (n *Network) AddProxy(name, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{n: n, name: name, ln: ln}
	p.target.Store(&target)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ln.Close()
		return nil, errors.New("network closed")
	}
	n.proxies = append(n.proxies, p)
	n.wg.Add(1)
	n.mu.Unlock()
	go p.serve()
	return p, nil
}

// Addr is the proxy's address, to advertise as the member's peer URL.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where the proxy forwards new connections.
func (p *Proxy) SetTarget(addr string) { p.target.Store(&addr) }

// Front implements framework.PeerFront with a proxy of the network.
func (n *Network) Front(name, addr string) (string, func(string), error) {
	p, err := n.AddProxy(name, addr)
	if err != nil {
		return "", nil, err
	}
	return p.Addr(), p.SetTarget, nil
}

// Register names a member ID (the proxies also learn IDs by themselves
// from the handshakes they forward).
func (n *Network) Register(id uint64, name string) {
	n.mu.Lock()
	n.ids[id] = name
	n.mu.Unlock()
}

// SetRule sets the rule for traffic from one member to another; either
// may be Any.
func (n *Network) SetRule(from, to string, r LinkRule) {
	n.mu.Lock()
	if r == (LinkRule{}) {
		delete(n.rules, [2]string{from, to})
	} else {
		n.rules[[2]string{from, to}] = r
	}
	n.notifyLocked()
	n.mu.Unlock()
}

// Partition blackholes every link between members of different groups.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.rules[[2]string{a, b}] = LinkRule{Blackhole: true}
				}
			}
		}
	}
	n.notifyLocked()
	n.mu.Unlock()
}

// Isolate blackholes every link to and from name.
func (n *Network) Isolate(name string) {
	n.mu.Lock()
	n.rules[[2]string{name, Any}] = LinkRule{Blackhole: true}
	n.rules[[2]string{Any, name}] = LinkRule{Blackhole: true}
	n.notifyLocked()
	n.mu.Unlock()
}

// Heal removes every rule. Connections that lost bytes while
// blackholed are closed, so that the members dial afresh.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.rules)
	n.notifyLocked()
	for c := range n.conns {
		if c.tainted.Load() {
			c.close()
		}
	}
	n.mu.Unlock()
}

// Reset closes every connection to or from name (every connection if
// name is Any), as a crashed router would.
func (n *Network) Reset(name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for c := range n.conns {
		if name == Any || c.from == name || c.to == name {
			c.close()
			k++
		}
	}
	n.stats.resets.Add(int64(k))
	return k
}

// Stats returns the counters so far.
func (n *Network) Stats() NetStats {
	return NetStats{
		Conns: n.stats.conns.Load(), Refused: n.stats.refused.Load(), Resets: n.stats.resets.Load(),
		Forwarded: n.stats.forwarded.Load(), Dropped: n.stats.dropped.Load(),
		Duplicated: n.stats.duplicated.Load(), Reordered: n.stats.reordered.Load(),
	}
}

// Close stops every proxy and closes every connection, and waits for all
// of the network's goroutines.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	for _, p := range n.proxies {
		p.ln.Close()
	}
	for c := range n.conns {
		c.close()
	}
	n.notifyLocked()
	n.mu.Unlock()
	n.wg.Wait()
}

func (n *Network) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// rule returns the rule of the link from -> to.
func (n *Network) rule(from, to string) LinkRule {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range [][2]string{{from, to}, {Any, to}, {from, Any}, {Any, Any}} {
		if r, ok := n.rules[k]; ok {
			return r
		}
	}
	return LinkRule{}
}

func (n *Network) float() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64()
}

func (n *Network) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return time.Duration(n.rng.Int64N(int64(d)))
}

// The peer protocol's handshake request (server/transport/doc.go).
const (
	handshakeLen    = 42
	handshakeMagic  = "SYNODNET"
	kindStream      = 1
	frameHeaderLen  = 9
	frameMessage    = 1
	maxProxiedFrame = 256 << 20
)

// pconn is one proxied connection.
type pconn struct {
	n              *Network
	from, to       string // member names; from is "" when unknown
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
	tainted        atomic.Bool    // bytes were swallowed: close once healed
	serverMu       sync.Mutex     // serializes writes to server
	clientMu       sync.Mutex     // serializes writes to client
	late           sync.WaitGroup // goroutines that may outlive handle
}

func (c *pconn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

func (p *Proxy) serve() {
	defer p.n.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.n.mu.Lock()
		if p.n.closed {
			p.n.mu.Unlock()
			conn.Close()
			return
		}
		c := &pconn{n: p.n, to: p.name, client: conn, done: make(chan struct{})}
		p.n.conns[c] = struct{}{}
		p.n.wg.Add(1)
		p.n.mu.Unlock()
		p.n.stats.conns.Add(1)
		go func() {
			defer p.n.wg.Done()
			p.handle(c)
			c.close()
			c.late.Wait()
			p.n.mu.Lock()
			delete(p.n.conns, c)
			p.n.mu.Unlock()
		}()
	}
}

// handle forwards one connection until either side ends it.
func (p *Proxy) handle(c *pconn) {
	n := p.n
	hs := make([]byte, handshakeLen)
	c.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	k, err := io.ReadFull(c.client, hs)
	c.client.SetReadDeadline(time.Time{})
	hs = hs[:k]
	parsed := err == nil && bytes.HasPrefix(hs, []byte(handshakeMagic))
	kind := byte(0)
	if parsed {
		kind = hs[9]
		from, to := binary.BigEndian.Uint64(hs[18:26]), binary.BigEndian.Uint64(hs[26:34])
		n.mu.Lock()
		if to != 0 {
			n.ids[to] = p.name
		}
		c.from = n.ids[from]
		n.mu.Unlock()
	} else if k == 0 {
		return
	}
	// A new connection on a blackholed link gets no answer; it is closed
	// once the link heals, so that the dialer's retry gets through.
	if n.rule(c.from, c.to).Blackhole {
		n.stats.refused.Add(1)
		c.late.Add(1)
		go func() {
			defer c.late.Done()
			io.Copy(io.Discard, c.client) //nolint:errcheck // ends when the connection closes
			c.close()
		}()
		for {
			n.mu.Lock()
			changed := n.changed
			n.mu.Unlock()
			if !n.rule(c.from, c.to).Blackhole {
				return
			}
			select {
			case <-changed:
			case <-c.done:
				return
			}
		}
	}
	server, err := net.DialTimeout("tcp", *p.target.Load(), 2*time.Second)
	if err != nil {
		return
	}
	n.mu.Lock()
	c.server = server
	n.mu.Unlock()
	select {
	case <-c.done: // closed while dialling
		server.Close()
		return
	default:
	}
	if _, err := server.Write(hs); err != nil {
		return
	}
	errc := make(chan struct{}, 2)
	go func() {
		if parsed && kind == kindStream {
			c.pumpFrames()
		} else {
			c.pumpBytes(c.client, server, &c.serverMu, c.from, c.to)
		}
		errc <- struct{}{}
	}()
	go func() {
		c.pumpBytes(server, c.client, &c.clientMu, c.to, c.from)
		errc <- struct{}{}
	}()
	<-errc
	c.close()
	<-errc
}

// delayed is data due to be written at a time.
type delayed struct {
	data []byte
	due  time.Time
}

// writer writes what arrives on in to w when it is due, in order.
func (c *pconn) writer(w net.Conn, mu *sync.Mutex, in <-chan delayed, stopped chan<- struct{}) {
	defer close(stopped)
	for d := range in {
		if wait := time.Until(d.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
		}
		mu.Lock()
		_, err := w.Write(d.data)
		mu.Unlock()
		if err != nil {
			c.close()
			return
		}
	}
}

// pumpBytes copies r to w (writes serialized by mu) applying the rule of
// from -> to to each chunk.
func (c *pconn) pumpBytes(r, w net.Conn, mu *sync.Mutex, from, to string) {
	out := make(chan delayed, 64)
	stopped := make(chan struct{})
	go c.writer(w, mu, out, stopped)
	defer func() { close(out); <-stopped }()
	var last time.Time
	buf := make([]byte, 32<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			rule := c.n.rule(from, to)
			switch {
			case rule.Blackhole:
				c.tainted.Store(true)
			case c.tainted.Load():
				return // the stream lost bytes: end it
			default:
				due := time.Now().Add(rule.Delay + c.n.jitter(rule.Jitter))
				if due.Before(last) {
					due = last
				}
				last = due
				select {
				case out <- delayed{data: bytes.Clone(buf[:k]), due: due}:
				case <-c.done:
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// pumpFrames forwards a raft message stream from the dialer frame by
// frame, applying the link's rule to each message.
func (c *pconn) pumpFrames() {
	n := c.n
	out := make(chan delayed, 256)
	stopped := make(chan struct{})
	go c.writer(c.server, &c.serverMu, out, stopped)
	defer func() { close(out); <-stopped }()
	br := bufio.NewReaderSize(c.client, 64<<10)
	var last time.Time
	hdr := make([]byte, frameHeaderLen)
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(hdr[1:5])
		if size > maxProxiedFrame {
			n.lg.Warn("proxy: frame too large, closing", "from", c.from, "to", c.to, "size", size)
			return
		}
		frame := make([]byte, frameHeaderLen+int(size))
		copy(frame, hdr)
		if _, err := io.ReadFull(br, frame[frameHeaderLen:]); err != nil {
			return
		}
		rule := n.rule(c.from, c.to)
		if rule.Blackhole || (rule.Drop > 0 && n.float() < rule.Drop) {
			n.stats.dropped.Add(1)
			continue
		}
		copies := 1
		if rule.Duplicate > 0 && n.float() < rule.Duplicate && (rule.DuplicateProposals || !isProposal(frame)) {
			copies = 2
			n.stats.duplicated.Add(1)
		}
		due := time.Now().Add(rule.Delay + n.jitter(rule.Jitter))
		if due.Before(last) {
			due = last
		}
		if rule.Reorder > 0 && n.float() < rule.Reorder {
			// Send this one late, behind the messages that follow it.
			n.stats.reordered.Add(1)
			extra := 2*time.Millisecond + n.jitter(20*time.Millisecond)
			c.late.Add(1)
			time.AfterFunc(time.Until(due)+extra, func() {
				defer c.late.Done()
				select {
				case <-c.done:
					return
				default:
				}
				c.serverMu.Lock()
				defer c.serverMu.Unlock()
				for range copies {
					if _, err := c.server.Write(frame); err != nil {
						return
					}
				}
			})
			continue
		}
		last = due
		for range copies {
			select {
			case out <- delayed{data: frame, due: due}:
			case <-c.done:
				return
			}
		}
		n.stats.forwarded.Add(1)
	}
}

// isProposal reports whether a frame carries a MsgProp.
func isProposal(frame []byte) bool {
	if frame[0] != frameMessage {
		return false
	}
	var m raftpb.Message
	if err := raftpb.UnmarshalMessage(frame[frameHeaderLen:], &m); err != nil {
		return false
	}
	return m.Type == raftpb.MsgProp
}

// String describes a rule for the fault timeline.
func (r LinkRule) String() string {
	if r.Blackhole {
		return "blackhole"
	}
	s := fmt.Sprintf("drop %.0f%% dup %.0f%% reorder %.0f%% delay %v+%v", r.Drop*100, r.Duplicate*100, r.Reorder*100, r.Delay, r.Jitter)
	if r.DuplicateProposals {
		s += " (proposals too)"
	}
	return s
}

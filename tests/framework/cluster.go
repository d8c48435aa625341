package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

// Member is one member of a Cluster. Its fields change only while it is
// started or stopped (under the cluster's lock); a test that starts and
// stops members from one goroutine reads them directly.
type Member struct {
	Name string
	Dir  string // data directory
	// PeerURL is the peer URL the member advertises: its own listener's,
	// or its front's (see Options.Front).
	PeerURL    string
	ClientAddr string
	Embed      *embed.Member // nil while stopped

	peerAddr string            // where it listens for peers
	retarget func(addr string) // points its front at a new peerAddr
	started  bool              // it ran before: a start is a restart
}

// Options configure a Cluster; the zero value is a plain cluster in the
// test's temporary directory.
type Options struct {
	// Prefix names the members Prefix0, Prefix1, ...; empty means "m".
	Prefix string
	// Dir holds the data directories; empty means a temporary directory
	// of the test.
	Dir string
	// Tune adjusts every member's configuration before it starts (it
	// may tell members apart by Config.Name).
	Tune func(*server.Config)
	// Front, if set, stands in front of every member's peer port. A
	// member then restarts on new ports, which the front follows;
	// without one it restarts on its own ports.
	Front PeerFront
}

// Cluster is a cluster of members in the test process on loopback TCP.
// Every member it started is killed when the test ends. Its methods are
// safe for concurrent use, so that a fault injector may stop and start
// members while clients run; the ones that fail the test must be called
// from the test's goroutine, the others return errors.
type Cluster struct {
	t    testing.TB
	opts Options
	// Members are the members planned; their list does not change while
	// members are started and stopped concurrently.
	Members []*Member
	// Tune adjusts every member's configuration before it starts.
	Tune func(*server.Config)

	mu  sync.Mutex
	gen uint64 // changes whenever a member's addresses do
}

// NewCluster starts a new cluster of n members named m0, m1, ... and
// waits for a leader connected to every member, as a cluster that has
// been up a moment is: membership changes check those connections.
// tune (may be nil) adjusts every member's config.
func NewCluster(t testing.TB, n int, tune func(*server.Config)) *Cluster {
	t.Helper()
	c := PlanCluster(t, n, "m", tune)
	ic := c.InitialCluster()
	for _, m := range c.Members {
		c.Start(m, ic, "new")
	}
	c.WaitLeader()
	lead := c.Members[c.LeaderIndex()].Embed.Server
	for _, m := range c.Members {
		if id := m.Embed.Server.ID(); id != lead.ID() {
			WaitFor(t, "the leader's stream to every member", func() bool {
				since := lead.PeerActiveSince(id)
				return !since.IsZero() && time.Since(since) >= lead.Config().HeartbeatInterval
			})
		}
	}
	return c
}

// PlanCluster returns a cluster of n members named prefix0, prefix1, ...
// with their addresses and directories, none started: for tests that
// prepare data directories or start members in an order of their own.
func PlanCluster(t testing.TB, n int, prefix string, tune func(*server.Config)) *Cluster {
	t.Helper()
	c, err := Plan(t, n, Options{Prefix: prefix, Tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Plan returns a cluster of n members as opts say, none started.
func Plan(t testing.TB, n int, opts Options) (*Cluster, error) {
	if opts.Prefix == "" {
		opts.Prefix = "m"
	}
	if opts.Dir == "" {
		// The temporary directory goes after the members are killed:
		// cleanups run last registered first.
		opts.Dir = t.TempDir()
	}
	c := &Cluster{t: t, opts: opts, Tune: opts.Tune, gen: 1}
	t.Cleanup(c.KillAll)
	for i := range n {
		if _, err := c.addMember(fmt.Sprintf("%s%d", opts.Prefix, i)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// AddMember adds a member named name, with fresh addresses and an empty
// data directory, without starting it.
func (c *Cluster) AddMember(name string) *Member {
	c.t.Helper()
	m, err := c.addMember(name)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *Cluster) addMember(name string) (*Member, error) {
	m := &Member{Name: name, Dir: filepath.Join(c.opts.Dir, name), retarget: func(string) {}}
	var err error
	if m.peerAddr, err = FreeLoopbackAddr(); err != nil {
		return nil, err
	}
	if m.ClientAddr, err = FreeLoopbackAddr(); err != nil {
		return nil, err
	}
	advertised := m.peerAddr
	if c.opts.Front != nil {
		if advertised, m.retarget, err = c.opts.Front.Front(name, m.peerAddr); err != nil {
			return nil, err
		}
	}
	m.PeerURL = "http://" + advertised
	c.Members = append(c.Members, m)
	return m, nil
}

// InitialCluster is the --initial-cluster of the members planned so far.
func (c *Cluster) InitialCluster() map[string][]string {
	ic := make(map[string][]string, len(c.Members))
	for _, m := range c.Members {
		ic[m.Name] = []string{m.PeerURL}
	}
	return ic
}

// Config returns the configuration m starts with: fast heartbeats and
// elections (10 ms, 100 ms), pre-vote, then Tune.
func (c *Cluster) Config(m *Member, ic map[string][]string, state string) server.Config {
	cfg := server.Config{
		Name:                m.Name,
		DataDir:             m.Dir,
		HeartbeatInterval:   10 * time.Millisecond,
		ElectionTimeout:     100 * time.Millisecond,
		PreVote:             true,
		PeerURLs:            []string{m.PeerURL},
		ClientURLs:          []string{"http://" + m.ClientAddr},
		InitialCluster:      ic,
		InitialClusterState: state,
		Logger:              Logger(c.t).With("m", m.Name),
	}
	if c.Tune != nil {
		c.Tune(&cfg)
	}
	return cfg
}

// Start starts (or restarts) m, with initial cluster ic and state ("new"
// or "existing"; both are ignored by a member that has a data directory
// already). It fails the test if m does not start.
func (c *Cluster) Start(m *Member, ic map[string][]string, state string) {
	c.t.Helper()
	if err := c.StartMember(m, ic, state); err != nil {
		c.t.Fatal(err)
	}
}

// StartMember is Start returning the error.
func (c *Cluster) StartMember(m *Member, ic map[string][]string, state string) error {
	c.mu.Lock()
	running, restart := m.Embed != nil, m.started
	c.mu.Unlock()
	if running {
		return nil
	}
	if restart && c.opts.Front != nil {
		// The old ports may be taken by now; the front follows.
		addrs, err := freeLoopbackAddrs(2)
		if err != nil {
			return err
		}
		peer := addrs[0]
		c.mu.Lock()
		m.peerAddr, m.ClientAddr = peer, addrs[1]
		c.gen++
		c.mu.Unlock()
		m.retarget(peer)
	}
	cfg := embed.Config{Config: c.Config(m, ic, state)}
	var err error
	var em *embed.Member
	// The ports were free a moment ago; another test may hold one for a
	// moment, or the previous incarnation's sockets may linger.
	for range 50 {
		var peerLn, clientLn net.Listener
		peerLn, err = net.Listen("tcp", m.peerAddr)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		clientLn, err = net.Listen("tcp", m.ClientAddr)
		if err != nil {
			peerLn.Close()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		cfg.PeerListener, cfg.ClientListeners = peerLn, []net.Listener{clientLn}
		em, err = embed.Start(cfg)
		break
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	c.mu.Lock()
	m.Embed, m.started = em, true
	c.mu.Unlock()
	if c.opts.Front != nil {
		c.opts.Front.Register(em.Server.ID(), m.Name)
	}
	return nil
}

// Stop kills member i (as a crash would: no leadership hand-over).
func (c *Cluster) Stop(i int) { c.Kill(i) }

// Kill kills member i if it runs (as a crash would: no leadership
// hand-over) and reports whether it did.
func (c *Cluster) Kill(i int) bool {
	c.mu.Lock()
	m := c.Members[i].Embed
	c.Members[i].Embed = nil
	c.mu.Unlock()
	if m == nil {
		return false
	}
	m.Kill()
	return true
}

// KillAll kills every running member.
func (c *Cluster) KillAll() {
	for i := range c.Members {
		c.Kill(i)
	}
}

// Restart starts member i again from its data directory.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.RestartMember(i); err != nil {
		c.t.Fatal(err)
	}
}

// RestartMember starts member i again from its data directory, if it is
// not running.
func (c *Cluster) RestartMember(i int) error {
	return c.StartMember(c.Members[i], nil, "new")
}

// Running reports whether member i runs.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Members[i].Embed != nil
}

// Endpoints returns the client addresses of the members, and a
// generation that changes whenever they do.
func (c *Cluster) Endpoints() ([]string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	eps := make([]string, 0, len(c.Members))
	for _, m := range c.Members {
		eps = append(eps, m.ClientAddr)
	}
	return eps, c.gen
}

// leaders returns the leader each running member knows (0 for none).
func (c *Cluster) leaders() (ids []uint64, leads []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids = make([]uint64, len(c.Members))
	leads = make([]uint64, len(c.Members))
	for i, m := range c.Members {
		if m.Embed != nil {
			ids[i], leads[i] = m.Embed.Server.ID(), m.Embed.Server.Leader()
		}
	}
	return ids, leads
}

// agreedLeader returns the leader every running member knows, or 0.
func (c *Cluster) agreedLeader() uint64 {
	ids, leads := c.leaders()
	var lead uint64
	for i := range ids {
		if ids[i] == 0 {
			continue
		}
		if leads[i] == 0 || (lead != 0 && leads[i] != lead) {
			return 0
		}
		lead = leads[i]
	}
	return lead
}

// Leader returns the index of the member a running member believes
// leads, or -1 if none knows.
func (c *Cluster) Leader() int {
	ids, leads := c.leaders()
	for _, l := range leads {
		for j, id := range ids {
			if l != 0 && id == l {
				return j
			}
		}
	}
	return -1
}

// AwaitLeader waits until every running member knows the same leader, or
// ctx ends.
func (c *Cluster) AwaitLeader(ctx context.Context) error {
	for c.agreedLeader() == 0 {
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.New("the running members did not agree on a leader")
		}
	}
	return nil
}

// WaitLeader waits until every running member knows the same leader and
// returns its ID.
func (c *Cluster) WaitLeader() uint64 {
	c.t.Helper()
	var lead uint64
	WaitFor(c.t, "every running member to know the same leader", func() bool {
		lead = c.agreedLeader()
		return lead != 0
	})
	return lead
}

// LeaderIndex waits for a leader and returns its index in Members.
func (c *Cluster) LeaderIndex() int {
	c.t.Helper()
	lead := c.WaitLeader()
	ids, _ := c.leaders()
	for i, id := range ids {
		if id == lead {
			return i
		}
	}
	c.t.Fatal("the leader is not a running member")
	return -1
}

// Client returns a client of the given members (all running ones if
// none), closed when the test ends.
func (c *Cluster) Client(idx ...int) *clientv3.Client {
	c.t.Helper()
	if len(idx) == 0 {
		for i := range c.Members {
			if c.Running(i) {
				idx = append(idx, i)
			}
		}
	}
	eps, _ := c.Endpoints()
	var picked []string
	for _, i := range idx {
		picked = append(picked, eps[i])
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: picked, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

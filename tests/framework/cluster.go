package framework

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

// Member is one member of a Cluster, with fixed addresses so that it can
// be stopped and started again on the same URLs.
type Member struct {
	Name       string
	Dir        string // data directory
	PeerURL    string
	ClientAddr string
	Embed      *embed.Member // nil while stopped
}

// Cluster is a cluster of members in the test process on loopback TCP.
// Every member it started is killed when the test ends.
type Cluster struct {
	t       testing.TB
	Members []*Member
	// Tune adjusts every member's configuration before it starts.
	Tune func(*server.Config)
}

// NewCluster starts a new cluster of n members named m0, m1, ... and
// waits for a leader. tune (may be nil) adjusts every member's config.
func NewCluster(t testing.TB, n int, tune func(*server.Config)) *Cluster {
	t.Helper()
	c := PlanCluster(t, n, "m", tune)
	ic := c.InitialCluster()
	for _, m := range c.Members {
		c.Start(m, ic, "new")
	}
	c.WaitLeader()
	return c
}

// PlanCluster returns a cluster of n members named prefix0, prefix1, ...
// with their addresses and directories, none started: for tests that
// prepare data directories or start members in an order of their own.
func PlanCluster(t testing.TB, n int, prefix string, tune func(*server.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Tune: tune}
	// The temporary directories go after the members are killed:
	// cleanups run last registered first, and TempDir registers its own
	// at its first call.
	t.TempDir()
	t.Cleanup(func() {
		for _, m := range c.Members {
			if m.Embed != nil {
				m.Embed.Kill()
			}
		}
	})
	for i := range n {
		c.AddMember(fmt.Sprintf("%s%d", prefix, i))
	}
	return c
}

// AddMember adds a member named name, with fresh addresses and an empty
// data directory, without starting it.
func (c *Cluster) AddMember(name string) *Member {
	m := &Member{
		Name:       name,
		Dir:        filepath.Join(c.t.TempDir(), name),
		PeerURL:    "http://" + FreeAddr(c.t),
		ClientAddr: FreeAddr(c.t),
	}
	c.Members = append(c.Members, m)
	return m
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

// Start starts (or restarts) m on its URLs, with initial cluster ic and
// state ("new" or "existing"; both are ignored by a member that has a
// data directory already).
func (c *Cluster) Start(m *Member, ic map[string][]string, state string) {
	c.t.Helper()
	cfg := embed.Config{Config: c.Config(m, ic, state)}
	var err error
	// The ports were free a moment ago; another test may hold one for a
	// moment, or the previous incarnation's sockets may linger.
	for range 50 {
		var peerLn, clientLn net.Listener
		peerLn, err = net.Listen("tcp", strings.TrimPrefix(m.PeerURL, "http://"))
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
		m.Embed, err = embed.Start(cfg)
		break
	}
	if err != nil {
		c.t.Fatalf("start %s: %v", m.Name, err)
	}
}

// Stop kills member i (as a crash would: no leadership hand-over).
func (c *Cluster) Stop(i int) {
	c.Members[i].Embed.Kill()
	c.Members[i].Embed = nil
}

// Restart starts member i again from its data directory.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Start(c.Members[i], nil, "new")
}

// WaitLeader waits until every running member knows the same leader and
// returns its ID.
func (c *Cluster) WaitLeader() uint64 {
	c.t.Helper()
	var lead uint64
	WaitFor(c.t, "every running member to know the same leader", func() bool {
		lead = 0
		for _, m := range c.Members {
			if m.Embed == nil {
				continue
			}
			l := m.Embed.Server.Leader()
			if l == 0 || (lead != 0 && l != lead) {
				return false
			}
			lead = l
		}
		return lead != 0
	})
	return lead
}

// LeaderIndex waits for a leader and returns its index in Members.
func (c *Cluster) LeaderIndex() int {
	c.t.Helper()
	lead := c.WaitLeader()
	for i, m := range c.Members {
		if m.Embed != nil && m.Embed.Server.ID() == lead {
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
		for i, m := range c.Members {
			if m.Embed != nil {
				idx = append(idx, i)
			}
		}
	}
	var eps []string
	for _, i := range idx {
		eps = append(eps, c.Members[i].ClientAddr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

// InProcess is a cluster of members in this process (package embed),
// each behind a proxy of Net on its peer port and with all of its files
// (raft log, snapshots, key space) on an in-memory disk that models power
// loss (diskfs.MemFS). Crashing a
// member takes what a power loss would leave of its disk and stops it;
// restarting opens that.
type InProcess struct {
	Net  *Network
	dir  string
	tune func(*server.Config)

	mu      sync.Mutex
	members []*ipMember
	initial map[string][]string
	gen     uint64
}

type ipMember struct {
	name, dir            string
	peerAddr, clientAddr string
	// peerLn and clientLn are bound for the first start; a restart binds
	// new ports (a port just released may be taken by then), which the
	// proxy and the generation of Endpoints follow.
	peerLn, clientLn net.Listener
	proxy            *Proxy
	log              *os.File
	m                *embed.Member
	// disk holds the member's files, in memory, so that a crash can lose
	// what was not synced.
	disk *diskfs.MemFS
}

// StartInProcess starts n members with data and logs under dir; tune, if
// set, adjusts every member's configuration.
func StartInProcess(ctx context.Context, dir string, n int, seed uint64, tune func(*server.Config)) (*InProcess, error) {
	c := &InProcess{Net: NewNetwork(seed, nil), dir: dir, tune: tune, gen: 1}
	var initial []string
	for i := range n {
		m := &ipMember{name: fmt.Sprintf("m%d", i), dir: filepath.Join(dir, fmt.Sprintf("m%d", i)), disk: diskfs.NewMemFS(rand.New(rand.NewPCG(seed, uint64(i))))}
		var err error
		if m.peerLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			c.Close()
			return nil, err
		}
		if m.clientLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			m.peerLn.Close()
			c.Close()
			return nil, err
		}
		m.peerAddr, m.clientAddr = m.peerLn.Addr().String(), m.clientLn.Addr().String()
		c.members = append(c.members, m)
		if m.proxy, err = c.Net.AddProxy(m.name, m.peerAddr); err != nil {
			c.Close()
			return nil, err
		}
		if m.log, err = os.OpenFile(filepath.Join(dir, m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			c.Close()
			return nil, err
		}
		initial = append(initial, m.name+"=http://"+m.proxy.Addr())
	}
	ic, err := server.ParseInitialCluster(strings.Join(initial, ","))
	if err != nil {
		c.Close()
		return nil, err
	}
	c.initial = ic
	for i := range c.members {
		if err := c.start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.waitLeader(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *InProcess) start(i int) error {
	m := c.members[i]
	peerLn, clientLn := m.peerLn, m.clientLn
	m.peerLn, m.clientLn = nil, nil
	if peerLn == nil {
		var err error
		if peerLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		if clientLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			peerLn.Close()
			return err
		}
		c.mu.Lock()
		m.peerAddr, m.clientAddr = peerLn.Addr().String(), clientLn.Addr().String()
		c.gen++
		c.mu.Unlock()
		m.proxy.SetTarget(m.peerAddr)
	}
	cfg := server.Config{
		Name:                   m.name,
		DataDir:                m.dir,
		HeartbeatInterval:      20 * time.Millisecond,
		ElectionTimeout:        200 * time.Millisecond,
		PreVote:                true,
		SnapshotCount:          300,
		SnapshotCatchUpEntries: 50,
		PeerURLs:               []string{"http://" + m.proxy.Addr()},
		ClientURLs:             []string{"http://" + m.clientAddr},
		InitialCluster:         c.initial,
		InitialClusterState:    "new",
		Logger:                 slog.New(slog.NewJSONHandler(m.log, &slog.HandlerOptions{Level: slog.LevelInfo})),
		FS:                     m.disk,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	em, err := embed.Start(embed.Config{Config: cfg, PeerListener: peerLn, ClientListeners: []net.Listener{clientLn}})
	if err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	c.mu.Lock()
	m.m = em
	c.mu.Unlock()
	c.Net.Register(em.Server.ID(), m.name)
	fmt.Fprintf(m.log, "{\"chaos\":\"started %s\",\"time\":%q}\n", m.name, time.Now().Format(time.RFC3339Nano))
	return nil
}

// Endpoints returns every member's client address.
func (c *InProcess) Endpoints() ([]string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientAddr)
	}
	return eps, c.gen
}

// Leader returns the index of the member a running member believes leads
// (-1 if none knows).
func (c *InProcess) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.m == nil {
			continue
		}
		lead := m.m.Server.Leader()
		for j, o := range c.members {
			if o.m != nil && o.m.Server.ID() == lead {
				return j
			}
		}
	}
	return -1
}

func (c *InProcess) waitLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c.mu.Lock()
		var lead uint64
		agree := true
		for _, m := range c.members {
			if m.m == nil {
				continue
			}
			l := m.m.Server.Leader()
			if l == 0 || (lead != 0 && l != lead) {
				agree = false
			}
			lead = l
		}
		c.mu.Unlock()
		if agree && lead != 0 {
			return nil
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return errors.New("no leader agreed on within 30s")
		}
	}
}

// stop stops member i at once (without losing anything on its disk).
func (c *InProcess) stop(i int) {
	c.mu.Lock()
	m := c.members[i].m
	c.members[i].m = nil
	c.mu.Unlock()
	if m != nil {
		m.Kill()
		fmt.Fprintf(c.members[i].log, "{\"chaos\":\"killed %s\",\"time\":%q}\n", c.members[i].name, time.Now().Format(time.RFC3339Nano))
	}
}

// PowerLoss crashes member i as a power loss would: its disk keeps what
// was synced, loses or tears the rest, and it is stopped at once; Restart
// brings it up on what is left.
func (c *InProcess) PowerLoss(i int, rng *rand.Rand) {
	c.mu.Lock()
	m := c.members[i].m
	c.members[i].m = nil
	c.mu.Unlock()
	if m == nil {
		return
	}
	img := c.members[i].powerOff(rng)
	m.Kill()
	c.members[i].disk = img
	fmt.Fprintf(c.members[i].log, "{\"chaos\":\"power lost on %s\",\"time\":%q}\n", c.members[i].name, time.Now().Format(time.RFC3339Nano))
}

// powerOff takes the image a power loss now leaves of m's disk. From then
// on the member still running cannot change its raft log or snapshots, so
// it cannot persist, let alone acknowledge, anything more: it stops on the
// error. Its key space writes go on, to a disk nobody will read (see
// diskfs.MemFS.PowerOff).
func (m *ipMember) powerOff(rng *rand.Rand) *diskfs.MemFS {
	l := datadir.New(m.dir, "")
	return m.disk.PowerOff(rng, l.WAL(), l.Snap(), l.Incoming())
}

// PowerLossAll crashes every running member as one power loss would:
// each disk's image is taken before any member stops, so only what every
// member synced before that instant survives.
func (c *InProcess) PowerLossAll(rng *rand.Rand) []string {
	c.mu.Lock()
	var up []int
	var ms []*embed.Member
	for i, m := range c.members {
		if m.m != nil {
			up = append(up, i)
			ms = append(ms, m.m)
			m.m = nil
		}
	}
	c.mu.Unlock()
	imgs := make([]*diskfs.MemFS, len(up))
	for k, i := range up {
		imgs[k] = c.members[i].powerOff(rng)
	}
	var names []string
	for k, i := range up {
		ms[k].Kill()
		c.members[i].disk = imgs[k]
		names = append(names, c.members[i].name)
		fmt.Fprintf(c.members[i].log, "{\"chaos\":\"power lost on every member\",\"time\":%q}\n", time.Now().Format(time.RFC3339Nano))
	}
	return names
}

// Restart starts member i again from its data directory if it is down.
func (c *InProcess) Restart(i int) error {
	c.mu.Lock()
	up := c.members[i].m != nil
	c.mu.Unlock()
	if up {
		return nil
	}
	return c.start(i)
}

// Heal lifts every network rule and restarts every crashed member.
func (c *InProcess) Heal(ctx context.Context) error {
	c.Net.Heal()
	var errs []error
	for i := range c.members {
		if err := c.Restart(i); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.waitLeader(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DumpGoroutines writes the stacks of every goroutine of this process
// (the members' among them) to dir/goroutines.txt.
func (c *InProcess) DumpGoroutines(dir string) error {
	f, err := os.Create(filepath.Join(dir, "goroutines.txt"))
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("goroutine").WriteTo(f, 2)
}

// SaveLogs copies the members' logs into dir.
func (c *InProcess) SaveLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, m := range c.members {
		b, err := os.ReadFile(filepath.Join(c.dir, m.name+".log"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, m.name+".log"), b, 0o644)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close stops every member and the network.
func (c *InProcess) Close() {
	for i := range c.members {
		c.stop(i)
	}
	c.Net.Close()
	for _, m := range c.members {
		for _, ln := range []net.Listener{m.peerLn, m.clientLn} {
			if ln != nil {
				ln.Close()
			}
		}
		if m.log != nil {
			m.log.Close()
		}
	}
}

// Faults returns the faults of the in-process tier: network partitions
// (random, leader isolated, one-way), a flaky network (messages dropped,
// duplicated, reordered, delayed), a slow member, connection resets, and
// power losses of a random member, of the leader and of every member.
func (c *InProcess) Faults() []Fault {
	names := func() []string {
		var out []string
		for _, m := range c.members {
			out = append(out, m.name)
		}
		return out
	}
	leaderName := func(rng *rand.Rand) string {
		if l := c.Leader(); l >= 0 {
			return c.members[l].name
		}
		return c.members[rng.IntN(len(c.members))].name
	}
	heal := func(context.Context) error { c.Net.Heal(); return nil }
	return []Fault{
		{Name: "partition", Inject: func(_ context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			a, b := split(rng, names())
			c.Net.Partition(a, b)
			return fmt.Sprintf("%v | %v", a, b), heal, nil
		}},
		{Name: "isolate-leader", Inject: func(_ context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			l := leaderName(rng)
			c.Net.Isolate(l)
			return l, heal, nil
		}},
		{Name: "one-way", Inject: func(_ context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			l := leaderName(rng)
			if rng.IntN(2) == 0 {
				c.Net.SetRule(l, Any, LinkRule{Blackhole: true})
				return l + " cannot send", heal, nil
			}
			c.Net.SetRule(Any, l, LinkRule{Blackhole: true})
			return l + " cannot receive", heal, nil
		}},
		{Name: "flaky-network", Inject: func(_ context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			r := LinkRule{Drop: 0.02 + 0.2*rng.Float64(), Duplicate: 0.1 * rng.Float64(), Reorder: 0.1 * rng.Float64(),
				Delay: time.Duration(rng.IntN(5)) * time.Millisecond, Jitter: time.Duration(rng.IntN(20)) * time.Millisecond}
			c.Net.SetRule(Any, Any, r)
			return r.String(), heal, nil
		}},
		{Name: "slow-member", Inject: func(_ context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			v := names()[rng.IntN(len(c.members))]
			r := LinkRule{Delay: time.Duration(20+rng.IntN(200)) * time.Millisecond, Jitter: 20 * time.Millisecond}
			c.Net.SetRule(v, Any, r)
			c.Net.SetRule(Any, v, r)
			return v + ": " + r.String(), heal, nil
		}},
		{Name: "reset", Inject: func(_ context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			k := c.Net.Reset(Any)
			return fmt.Sprintf("%d connections", k), nil, nil
		}},
		{Name: "crash", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			i := rng.IntN(len(c.members))
			c.PowerLoss(i, rng)
			return c.members[i].name + " (power loss)", func(context.Context) error { return c.Restart(i) }, nil
		}},
		{Name: "power-loss-all", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			names := c.PowerLossAll(rng)
			return fmt.Sprintf("%v", names), func(ctx context.Context) error { return c.Heal(ctx) }, nil
		}},
		{Name: "crash-leader", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			i := c.Leader()
			if i < 0 {
				i = rng.IntN(len(c.members))
			}
			c.PowerLoss(i, rng)
			return c.members[i].name + " (power loss)", func(context.Context) error { return c.Restart(i) }, nil
		}},
	}
}

// split divides names into a random minority (at least one) and the rest.
func split(rng *rand.Rand, names []string) (minority, rest []string) {
	perm := rng.Perm(len(names))
	k := 1 + rng.IntN(max(1, (len(names)-1)/2))
	for i, p := range perm {
		if i < k {
			minority = append(minority, names[p])
		} else {
			rest = append(rest, names[p])
		}
	}
	return minority, rest
}

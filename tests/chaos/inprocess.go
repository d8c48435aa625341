package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// InProcess is a cluster of members in this process (framework.Cluster),
// each behind a proxy of Net on its peer port and with all of its files
// (raft log, snapshots, key space) on an in-memory disk that models power
// loss (diskfs.MemFS). Crashing a member takes what a power loss would
// leave of its disk and stops it; restarting opens that.
type InProcess struct {
	*framework.Cluster
	Net *Network
	dir string

	mu sync.Mutex
	// disks hold the members' files by name, in memory, so that a crash
	// can lose what was not synced; a power loss replaces a disk by its
	// image.
	disks map[string]*diskfs.MemFS
	logs  map[string]*os.File
}

// StartInProcess starts n members with data and logs under dir; tune, if
// set, adjusts every member's configuration.
func StartInProcess(t testing.TB, ctx context.Context, dir string, n int, seed uint64, tune func(*server.Config)) (*InProcess, error) {
	c := &InProcess{Net: NewNetwork(seed, nil), dir: dir, disks: map[string]*diskfs.MemFS{}, logs: map[string]*os.File{}}
	cl, err := framework.Plan(t, n, framework.Options{Dir: dir, Front: c.Net, Tune: func(cfg *server.Config) {
		c.mu.Lock()
		cfg.FS, cfg.Logger = c.disks[cfg.Name], slog.New(slog.NewJSONHandler(c.logs[cfg.Name], &slog.HandlerOptions{Level: slog.LevelInfo}))
		c.mu.Unlock()
		cfg.HeartbeatInterval, cfg.ElectionTimeout = 20*time.Millisecond, 200*time.Millisecond
		cfg.SnapshotCount, cfg.SnapshotCatchUpEntries = 300, 50
		if tune != nil {
			tune(cfg)
		}
	}})
	if err != nil {
		c.Net.Close()
		return nil, err
	}
	c.Cluster = cl
	for i, m := range cl.Members {
		c.disks[m.Name] = diskfs.NewMemFS(rand.New(rand.NewPCG(seed, uint64(i))))
		if c.logs[m.Name], err = os.OpenFile(filepath.Join(dir, m.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			c.Close()
			return nil, err
		}
	}
	ic := cl.InitialCluster()
	for _, m := range cl.Members {
		if err := cl.StartMember(m, ic, "new"); err != nil {
			c.Close()
			return nil, err
		}
		c.mark(m.Name, "started "+m.Name)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.AwaitLeader(wctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// mark writes an event of the harness into a member's log.
func (c *InProcess) mark(name, event string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.logs[name], "{\"chaos\":%q,\"time\":%q}\n", event, time.Now().Format(time.RFC3339Nano))
}

// powerOff takes the image a power loss now leaves of member i's disk.
// From then on the member still running cannot change its raft log or
// snapshots, so it cannot persist, let alone acknowledge, anything more:
// it stops on the error. Its key space writes go on, to a disk nobody
// will read (see diskfs.MemFS.PowerOff).
func (c *InProcess) powerOff(i int, rng *rand.Rand) *diskfs.MemFS {
	m := c.Members[i]
	l := datadir.New(m.Dir, "")
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.disks[m.Name].PowerOff(rng, l.WAL(), l.Snap(), l.Incoming())
}

// setDisk makes img member i's disk for its next start.
func (c *InProcess) setDisk(i int, img *diskfs.MemFS) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.disks[c.Members[i].Name] = img
}

// PowerLoss crashes member i as a power loss would: its disk keeps what
// was synced, loses or tears the rest, and it is stopped at once; Restart
// brings it up on what is left.
func (c *InProcess) PowerLoss(i int, rng *rand.Rand) {
	if !c.Running(i) {
		return
	}
	img := c.powerOff(i, rng)
	c.Kill(i)
	c.setDisk(i, img)
	c.mark(c.Members[i].Name, "power lost on "+c.Members[i].Name)
}

// PowerLossAll crashes every running member as one power loss would:
// each disk's image is taken before any member stops, so only what every
// member synced before that instant survives.
func (c *InProcess) PowerLossAll(rng *rand.Rand) []string {
	var up []int
	for i := range c.Members {
		if c.Running(i) {
			up = append(up, i)
		}
	}
	imgs := make([]*diskfs.MemFS, len(up))
	for k, i := range up {
		imgs[k] = c.powerOff(i, rng)
	}
	var names []string
	for k, i := range up {
		c.Kill(i)
		c.setDisk(i, imgs[k])
		names = append(names, c.Members[i].Name)
		c.mark(c.Members[i].Name, "power lost on every member")
	}
	return names
}

// Restart starts member i again from its data directory if it is down.
func (c *InProcess) Restart(i int) error {
	if c.Running(i) {
		return nil
	}
	if err := c.RestartMember(i); err != nil {
		return err
	}
	c.mark(c.Members[i].Name, "started "+c.Members[i].Name)
	return nil
}

// Heal lifts every network rule and restarts every crashed member.
func (c *InProcess) Heal(ctx context.Context) error {
	c.Net.Heal()
	var errs []error
	for i := range c.Members {
		if err := c.Restart(i); err != nil {
			errs = append(errs, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.AwaitLeader(wctx); err != nil {
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
	for _, m := range c.Members {
		b, err := os.ReadFile(filepath.Join(c.dir, m.Name+".log"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, m.Name+".log"), b, 0o644)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close stops every member and the network.
func (c *InProcess) Close() {
	if c.Cluster != nil {
		for i, m := range c.Members {
			if c.Kill(i) {
				c.mark(m.Name, "killed "+m.Name)
			}
		}
	}
	c.Net.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.logs {
		if f != nil {
			f.Close()
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
		for _, m := range c.Members {
			out = append(out, m.Name)
		}
		return out
	}
	leaderName := func(rng *rand.Rand) string {
		if l := c.Leader(); l >= 0 {
			return c.Members[l].Name
		}
		return c.Members[rng.IntN(len(c.Members))].Name
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
			v := names()[rng.IntN(len(c.Members))]
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
			i := rng.IntN(len(c.Members))
			c.PowerLoss(i, rng)
			return c.Members[i].Name + " (power loss)", func(context.Context) error { return c.Restart(i) }, nil
		}},
		{Name: "power-loss-all", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			names := c.PowerLossAll(rng)
			return fmt.Sprintf("%v", names), func(ctx context.Context) error { return c.Heal(ctx) }, nil
		}},
		{Name: "crash-leader", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			i := c.Leader()
			if i < 0 {
				i = rng.IntN(len(c.Members))
			}
			c.PowerLoss(i, rng)
			return c.Members[i].Name + " (power loss)", func(context.Context) error { return c.Restart(i) }, nil
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

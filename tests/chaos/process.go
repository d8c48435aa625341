//go:build linux

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/synod-db/synod/tests/framework"
)

// Processes is a cluster of synod processes on loopback (see
// framework.Processes), each behind a proxy of Net on its peer port, with
// the faults of the process tier.
type Processes struct {
	*framework.Processes
	Net *Network
}

// StartProcesses starts n members of the binary bin with data and logs
// under dir. args are flags for every member, after (and so overriding)
// the harness's own: fast elections and a small --snapshot-count.
func StartProcesses(ctx context.Context, bin, dir string, n int, seed uint64, args ...string) (*Processes, error) {
	nw := NewNetwork(seed, nil)
	p, err := framework.StartProcesses(ctx, framework.ProcessConfig{
		Bin: bin, Dir: dir, Token: "chaos", Front: nw,
		Args: append([]string{"--snapshot-count", "300"}, args...),
	}, n)
	if err != nil {
		nw.Close()
		return nil, err
	}
	return &Processes{Processes: p, Net: nw}, nil
}

// Heal lifts every network rule, continues paused members, restarts dead
// ones and waits until all agree on a leader.
func (c *Processes) Heal(ctx context.Context) error {
	c.Net.Heal()
	return c.Processes.Heal(ctx)
}

// Close kills every process and stops the network.
func (c *Processes) Close() {
	c.Processes.Close()
	c.Net.Close()
}

// longOutage is how long the kill-long fault keeps a member down.
var longOutage = [2]time.Duration{5 * time.Second, 10 * time.Second}

// Faults returns the faults of the process tier: kill -9 of a random
// member and of the leader (restarted when healed), kill -9 of a member
// kept down for several seconds (kill-long), SIGSTOP of a random
// member and of the leader for longer than the election timeout,
// partitions, an isolated leader, a slow member and connection resets on
// the peer proxies, and member replacement.
func (c *Processes) Faults() []Fault {
	victim := func(ctx context.Context, rng *rand.Rand, leader bool) int {
		if leader {
			if l := c.Leader(ctx); l >= 0 {
				return l
			}
		}
		return rng.IntN(c.Size())
	}
	kill := func(leader bool) func(context.Context, *rand.Rand) (string, func(context.Context) error, error) {
		return func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			i := victim(ctx, rng, leader)
			name := c.Name(i)
			c.Kill(i)
			return name, func(context.Context) error { return c.Restart(i) }, nil
		}
	}
	// killLong keeps a member down for several seconds whatever the
	// nemesis's hold, so that with large values (Config.ValueBytes) it
	// comes back hundreds of MB behind and catches up under load.
	killLong := func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
		i := victim(ctx, rng, false)
		name := c.Name(i)
		c.Kill(i)
		until := time.Now().Add(longOutage[0] + time.Duration(rng.Int64N(int64(longOutage[1]-longOutage[0]))))
		return name + " down until " + until.Format("15:04:05.000"), func(hctx context.Context) error {
			framework.Sleep(hctx, time.Until(until))
			return c.Restart(i)
		}, nil
	}
	pause := func(leader bool) func(context.Context, *rand.Rand) (string, func(context.Context) error, error) {
		return func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			i := victim(ctx, rng, leader)
			name := c.Name(i)
			if err := c.Pause(i); err != nil {
				return name, nil, err
			}
			return name, func(context.Context) error { return c.Resume(i) }, nil
		}
	}
	heal := func(context.Context) error { c.Net.Heal(); return nil }
	return []Fault{
		{Name: "kill", Inject: kill(false)},
		{Name: "kill-leader", Inject: kill(true)},
		{Name: "kill-long", Inject: killLong},
		{Name: "pause", Inject: pause(false)},
		{Name: "pause-leader", Inject: pause(true)},
		{Name: "partition", Inject: func(_ context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			a, b := split(rng, c.Names())
			c.Net.Partition(a, b)
			return fmt.Sprintf("%v | %v", a, b), heal, nil
		}},
		{Name: "isolate-leader", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			name := c.Name(victim(ctx, rng, true))
			c.Net.Isolate(name)
			return name, heal, nil
		}},
		{Name: "slow-member", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			name := c.Name(victim(ctx, rng, false))
			r := LinkRule{Delay: time.Duration(20+rng.IntN(200)) * time.Millisecond, Jitter: 20 * time.Millisecond, Drop: 0.05 * rng.Float64()}
			c.Net.SetRule(name, Any, r)
			c.Net.SetRule(Any, name, r)
			return name + ": " + r.String(), heal, nil
		}},
		{Name: "reset", Inject: func(context.Context, *rand.Rand) (string, func(context.Context) error, error) {
			return fmt.Sprintf("%d connections", c.Net.Reset(Any)), nil, nil
		}},
		{Name: "replace", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			desc, err := c.Replace(ctx, victim(ctx, rng, rng.IntN(3) == 0))
			return desc, nil, err
		}},
	}
}

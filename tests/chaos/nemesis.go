package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/synod-db/synod/tests/framework"
)

// Fault is one kind of failure a nemesis can inject into a cluster.
type Fault struct {
	Name string
	// Inject starts the fault and returns a description of what it did
	// (its victims) and a function that ends it, nil for a fault that is
	// over at once (a reset, a replaced member). The heal function must
	// work even after ctx ended.
	Inject func(ctx context.Context, rng *rand.Rand) (desc string, heal func(context.Context) error, err error)
}

// FaultEvent is one fault of a run's timeline. Start and End are
// nanoseconds since the run started, as the history's times.
type FaultEvent struct {
	Name, Desc string
	Start, End int64
	Err        string
}

func (e FaultEvent) String() string {
	s := fmt.Sprintf("%8.3fs - %8.3fs  %-16s %s", float64(e.Start)/1e9, float64(e.End)/1e9, e.Name, e.Desc)
	if e.Err != "" {
		s += "  (error: " + e.Err + ")"
	}
	return s
}

// nemesis injects one fault at a time, at random, until stopped.
type nemesis struct {
	faults    []Fault
	script    []string // names of the faults to inject first, in order
	rng       *rand.Rand
	gap, hold [2]time.Duration
	rec       *Recorder
	logf      func(string, ...any)

	mu       sync.Mutex
	timeline []FaultEvent
}

func randDur(rng *rand.Rand, r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(rng.Int64N(int64(r[1]-r[0])))
}

// run injects faults until ctx ends; the fault in force then is healed
// before run returns.
func (n *nemesis) run(ctx context.Context) {
	if len(n.faults) == 0 {
		return
	}
	for k := 0; framework.Sleep(ctx, randDur(n.rng, n.gap)); k++ {
		f := n.faults[n.rng.IntN(len(n.faults))]
		if k < len(n.script) {
			for _, g := range n.faults {
				if g.Name == n.script[k] {
					f = g
				}
			}
		}
		ev := FaultEvent{Name: f.Name, Start: n.rec.Now()}
		// An injection once begun is completed even if the run ends
		// meanwhile, so that the cluster's state is what heal expects.
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		desc, heal, err := f.Inject(ictx, n.rng)
		cancel()
		ev.Desc = desc
		if err != nil {
			ev.Err = err.Error()
			ev.End = n.rec.Now()
			n.add(ev)
			continue
		}
		if heal != nil {
			framework.Sleep(ctx, randDur(n.rng, n.hold))
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			if err := heal(hctx); err != nil {
				ev.Err = "heal: " + err.Error()
			}
			cancel()
		}
		ev.End = n.rec.Now()
		n.add(ev)
	}
}

func (n *nemesis) add(ev FaultEvent) {
	n.mu.Lock()
	n.timeline = append(n.timeline, ev)
	n.mu.Unlock()
	if n.logf != nil {
		n.logf("fault: %s", ev)
	}
}

func (n *nemesis) events() []FaultEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]FaultEvent(nil), n.timeline...)
}

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/synod-db/synod/tests/framework"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errNoWatch tells that the cluster does not serve Watch (yet).
var errNoWatch = errors.New("the Watch service is not available")

// watchBatch is one watch response as a watcher received it.
type watchBatch struct {
	stream int // which stream of the watcher (increases on each resume)
	events []Event
}

// watcher keeps a watch on the run's keys open during the run, moving
// to another member (resuming after the last revision it saw) whenever
// its stream ends, and sometimes on purpose. It records every response.
type watcher struct {
	id     int
	rng    *rand.Rand
	ks     *keyspace
	cl     Endpoints
	rev0   int64
	target func() int64 // the revision to reach before stopping (0: unknown yet)

	batches []watchBatch
	resumes int
	last    int64
	err     error
}

// run watches until stop is closed and the watcher saw target's revision
// (or ctx ends).
func (w *watcher) run(ctx context.Context, stop <-chan struct{}) {
	w.last = w.rev0
	stream := 0
	for ctx.Err() == nil {
		select {
		case <-stop:
			if t := w.target(); t != 0 && w.last >= t {
				return
			}
		default:
		}
		eps, _ := w.cl.Endpoints()
		if len(eps) == 0 {
			framework.Sleep(ctx, 50*time.Millisecond)
			continue
		}
		ep := eps[w.rng.IntN(len(eps))]
		err := w.stream(ctx, stop, ep, stream, time.Duration(500+w.rng.IntN(3000))*time.Millisecond)
		if errors.Is(err, errNoWatch) {
			w.err = err
			return
		}
		stream++
		w.resumes++
		framework.Sleep(ctx, 20*time.Millisecond)
	}
}

// stream runs one watch stream on ep from w.last+1 for at most life.
func (w *watcher) stream(ctx context.Context, stop <-chan struct{}, ep string, stream int, life time.Duration) error {
	cli, err := framework.ClientFor([]string{ep})
	if err != nil {
		return err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), life)
	defer cancel()
	wch := cli.Watch(sctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(w.last+1))
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				return nil
			}
			if err := resp.Err(); err != nil {
				if s, ok := status.FromError(err); ok && s.Code() == codes.Unimplemented {
					return errNoWatch
				}
				return err
			}
			if len(resp.Events) == 0 {
				continue
			}
			b := watchBatch{stream: stream, events: w.ks.events(resp.Events)}
			w.batches = append(w.batches, b)
			w.last = b.events[len(b.events)-1].Rev
		case <-stop:
			if t := w.target(); t != 0 && w.last >= t {
				return nil
			}
			stop = nil // keep going until the target is reached
		case <-sctx.Done():
			return nil
		}
	}
}

func (ks *keyspace) events(in []*clientv3.Event) []Event {
	out := make([]Event, 0, len(in))
	for _, e := range in {
		ev := Event{Rev: e.Kv.ModRevision, Key: ks.index(e.Kv.Key)}
		if e.Type == mvccpb.DELETE {
			ev.Delete = true
		} else {
			ev.Value, ev.Create, ev.Ver = ks.unwire(e.Kv.Value), e.Kv.CreateRevision, e.Kv.Version
		}
		out = append(out, ev)
	}
	return out
}

// readLog reads the key space's history (rev0, final] from one member
// through a watch.
func readLog(ctx context.Context, ks *keyspace, ep string, rev0, final int64) ([]Event, error) {
	if final <= rev0 {
		return nil, nil
	}
	cli, err := framework.ClientFor([]string{ep})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var log []Event
	wch := cli.Watch(wctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev0+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if s, ok := status.FromError(err); ok && s.Code() == codes.Unimplemented {
				return nil, errNoWatch
			}
			if errors.Is(err, rpctypes.ErrCompacted) {
				return nil, fmt.Errorf("history compacted at %d", resp.CompactRevision)
			}
			return nil, err
		}
		for _, e := range ks.events(resp.Events) {
			if e.Rev <= final {
				log = append(log, e)
			}
		}
		if len(resp.Events) > 0 && resp.Events[len(resp.Events)-1].Kv.ModRevision >= final {
			return log, nil
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("watch from %d on %s did not reach revision %d: %w", rev0+1, ep, final, ctx.Err())
	}
	return nil, fmt.Errorf("watch on %s ended before revision %d", ep, final)
}

// checkWatch checks what a watcher received against the log: revisions
// in order with no gap and no repeat across all its streams (ordered,
// unique, resumable), every revision's events in one response and equal
// to the log's (atomic, correct), up to the final revision.
func checkWatch(w *watcher, log []Event, final int64) []string {
	var bad []string
	fail := func(format string, args ...any) {
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf("watcher %d: ", w.id)+fmt.Sprintf(format, args...))
		}
	}
	i := 0 // next log event expected
	for _, b := range w.batches {
		for j := 0; j < len(b.events); {
			rev := b.events[j].Rev
			k := j
			for k < len(b.events) && b.events[k].Rev == rev {
				k++
			}
			got := b.events[j:k]
			if k < len(b.events) && b.events[k].Rev < rev {
				fail("stream %d: revision %d after %d in one response", b.stream, b.events[k].Rev, rev)
			}
			if rev > final {
				j = k
				continue
			}
			if i >= len(log) {
				fail("stream %d: revision %d is not in the history (which ends at %d)", b.stream, rev, final)
				return bad
			}
			switch want := log[i].Rev; {
			case rev < want:
				fail("stream %d: revision %d delivered again (or out of order) after %d", b.stream, rev, want-1)
				return bad
			case rev > want:
				fail("stream %d: gap: revision %d delivered while %d was expected", b.stream, rev, want)
				return bad
			}
			n := 0
			for i+n < len(log) && log[i+n].Rev == rev {
				n++
			}
			if !sameEvents(got, log[i:i+n]) {
				fail("stream %d: revision %d: got %v, history has %v", b.stream, rev, got, log[i:i+n])
				return bad
			}
			i += n
			j = k
		}
	}
	if i < len(log) {
		fail("stopped at revision %d, history goes on to %d", log[max(i-1, 0)].Rev, final)
	}
	return bad
}

func sameEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// watchers runs n watchers and hands them back once stopped.
type watchers struct {
	ws []*watcher
	wg sync.WaitGroup
}

func startWatchers(ctx context.Context, n int, seed uint64, ks *keyspace, cl Endpoints, rev0 int64, stop <-chan struct{}, target func() int64) *watchers {
	all := &watchers{}
	for i := range n {
		w := &watcher{id: i, rng: rand.New(rand.NewPCG(seed, uint64(1000+i))), ks: ks, cl: cl, rev0: rev0, target: target}
		all.ws = append(all.ws, w)
		all.wg.Add(1)
		go func() {
			defer all.wg.Done()
			w.run(ctx, stop)
		}()
	}
	return all
}

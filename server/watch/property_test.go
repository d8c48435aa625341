package watch

import (
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synod-db/synod/mvcc"
)

// propertySeeds are the seeds TestWatchProperty runs; SYNOD_WATCH_SEED
// (comma-separated) replaces them.
func propertySeeds(t *testing.T, def ...int64) []int64 {
	v := os.Getenv("SYNOD_WATCH_SEED")
	if v == "" {
		return def
	}
	var seeds []int64
	for _, f := range strings.Split(v, ",") {
		s, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil {
			t.Fatalf("SYNOD_WATCH_SEED: %v", err)
		}
		seeds = append(seeds, s)
	}
	return seeds
}

var propKeys = []string{"a", "ab", "abc", "b", "b\x00", "ba", "c", "d", "\x00"}

// propSpec is what the test asked of one watcher.
type propSpec struct {
	id       int64
	sp       span
	start    int64 // 0: from the creation on
	noPut    bool
	noDelete bool
	prevKV   bool
	progress bool
	canceled bool // the test canceled it
}

func randomSpan(rng *rand.Rand) span {
	k := propKeys[rng.Intn(len(propKeys))]
	switch rng.Intn(4) {
	case 0:
		return span{key: k}
	case 1:
		return span{key: k, fromKey: true}
	case 2:
		return span{key: k, end: k + "\xff"} // a prefix
	default:
		return span{key: "", fromKey: true}
	}
}

// TestWatchProperty runs random histories against random watchers and
// checks every watcher's stream against the global history: writers make
// concurrent puts, deletes, range deletes and transactions; compactions,
// key space jumps (as after a snapshot) and cancellations are mixed in;
// watchers start at random revisions (compacted, past, now, future) with
// random ranges, filters and options on streams with tiny queues and slow
// consumers, so every path (live, full queue, batched catch-up, memory
// catch-up, compaction) runs. Each stream must be exactly the slice of
// history asked for, atomic per revision, and every progress notification
// a true bookmark. Seeds are fixed; SYNOD_WATCH_SEED=n[,m...] runs others.
func TestWatchProperty(t *testing.T) {
	for _, seed := range propertySeeds(t, 1, 2, 3, 4) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d (rerun with SYNOD_WATCH_SEED=%d)", seed, seed)
			runProperty(t, seed)
		})
	}
}

func runProperty(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	opts := Options{
		StreamMaxResponses: 1 + rng.Intn(8),
		StreamMaxBytes:     1024 + rng.Intn(16<<10),
		SyncLimit:          1 + rng.Intn(20),
		SyncBatch:          1 + rng.Intn(4),
		ResponseMaxBytes:   1 + rng.Intn(2048),
		ProgressInterval:   time.Duration(2+rng.Intn(10)) * time.Millisecond,
	}
	e := newEnv(t, opts)
	recentRevs := rng.Intn(6)
	e.hub.mu.Lock()
	e.hub.recent.maxRevs = recentRevs
	e.hub.mu.Unlock()
	t.Logf("options %+v, recent revisions %d", opts, recentRevs)

	const nStreams, nWriters, nOps = 3, 3, 120
	var cols []*collector
	for i := range nStreams {
		var delay func()
		if i > 0 {
			var mu sync.Mutex
			r := rand.New(rand.NewSource(seed*100 + int64(i)))
			delay = func() {
				mu.Lock()
				d := time.Duration(r.Intn(200)) * time.Microsecond
				mu.Unlock()
				time.Sleep(d)
			}
		}
		cols = append(cols, collect(e.hub.NewStream(), delay))
	}
	defer func() {
		for _, c := range cols {
			c.close()
		}
	}()

	var wg sync.WaitGroup
	for w := range nWriters {
		wg.Add(1)
		r := rand.New(rand.NewSource(seed*1000 + int64(w)))
		go func() {
			defer wg.Done()
			for i := range nOps {
				writeRandom(e, r, w, i)
			}
		}()
	}

	// Watchers come and go while the writers run.
	specs := make([][]*propSpec, nStreams)
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	for running := true; running; {
		select {
		case <-writersDone:
			running = false
		case <-time.After(time.Duration(rng.Intn(3)) * time.Millisecond):
		}
		si := rng.Intn(nStreams)
		st := cols[si].st
		switch x := rng.Intn(10); {
		case x < 6:
			sp := &propSpec{sp: randomSpan(rng), noPut: rng.Intn(5) == 0, noDelete: rng.Intn(5) == 0, prevKV: rng.Intn(2) == 0, progress: rng.Intn(3) == 0}
			if rng.Intn(4) > 0 {
				e.mu.Lock()
				cur, comp := e.store.Rev(), e.store.CompactedRev()
				e.mu.Unlock()
				sp.start = max(1, comp-2+rng.Int63n(cur-comp+5))
			}
			req := Request{Key: []byte(sp.sp.key), StartRev: sp.start, PrevKV: sp.prevKV, NoPut: sp.noPut, NoDelete: sp.noDelete, ProgressNotify: sp.progress}
			if sp.sp.fromKey {
				req.End = []byte{0}
			} else if !sp.sp.single() {
				req.End = []byte(sp.sp.end)
			}
			id, err := st.Watch(req)
			if err != nil && err != mvcc.ErrCompacted {
				t.Fatalf("seed %d: watch %+v: %v", seed, req, err)
			}
			sp.id = id
			specs[si] = append(specs[si], sp)
		case x < 8:
			if n := len(specs[si]); n > 0 {
				sp := specs[si][rng.Intn(n)]
				if !sp.canceled && rng.Intn(3) == 0 {
					sp.canceled = st.Cancel(sp.id)
				}
			}
		default:
			st.RequestProgress()
		}
	}

	// Every stream must reach the final revision: its bookmark says all
	// events up to it were sent before.
	final := e.store.Rev()
	for _, c := range cols {
		c.st.RequestProgress()
		waitFor(t, fmt.Sprintf("seed %d: progress at %d", seed, final), func() bool {
			for _, r := range c.responses() {
				if r.WatchID == -1 && r.Revision == final {
					return true
				}
			}
			return false
		})
	}
	e.mu.Lock()
	history := append([]mvcc.Event(nil), e.history...)
	maxCompacted := e.store.CompactedRev()
	e.mu.Unlock()
	var stats struct{ watchers, events, compacted, canceled, bookmarks int }
	for si, c := range cols {
		all := c.responses()
		for _, sp := range specs[si] {
			checkWatcher(t, seed, all, sp, history, final, maxCompacted, &stats.events, &stats.compacted, &stats.bookmarks)
			stats.watchers++
			if sp.canceled {
				stats.canceled++
			}
		}
	}
	t.Logf("final revision %d, compacted %d: %d watchers, %d events checked, %d compacted, %d canceled, %d bookmarks checked",
		final, maxCompacted, stats.watchers, stats.events, stats.compacted, stats.canceled, stats.bookmarks)
}

// writeRandom makes one random change (or, rarely, a compaction or a
// key space jump the hub is not told about).
func writeRandom(e *env, r *rand.Rand, w, i int) {
	val := fmt.Sprintf("w%d-%d", w, i)
	switch x := r.Intn(100); {
	case x < 3 && w == 0:
		e.mu.Lock()
		cur, comp := e.store.Rev(), e.store.CompactedRev()
		if cur-comp > 3 {
			if err := e.store.Compact(0, comp+1+r.Int63n(cur-comp-2)); err != nil {
				e.t.Error(err)
			}
		}
		e.mu.Unlock()
	case x < 5 && w == 1:
		// A jump: changes the hub hears of only through Resync or the
		// gap the next Notify sees (as after a snapshot install).
		for range 1 + r.Intn(3) {
			e.write(func(tx *mvcc.WriteTxn) error {
				_, err := tx.Put([]byte(propKeys[r.Intn(len(propKeys))]), []byte(val), 0, mvcc.PutOptions{})
				return err
			}, false)
		}
		if r.Intn(2) == 0 {
			e.mu.Lock()
			e.hub.Resync(e.store.Rev())
			e.mu.Unlock()
		} else {
			e.put(propKeys[r.Intn(len(propKeys))], val) // Notify sees the gap
		}
	case x < 55:
		e.put(propKeys[r.Intn(len(propKeys))], val)
	case x < 70:
		e.del(propKeys[r.Intn(len(propKeys))], "")
	case x < 78:
		k := propKeys[r.Intn(len(propKeys))]
		e.del(k, k+"\xff")
	default:
		e.write(func(tx *mvcc.WriteTxn) error {
			used := map[string]bool{}
			for range 2 + r.Intn(4) {
				k := propKeys[r.Intn(len(propKeys))]
				if used[k] {
					continue
				}
				used[k] = true
				var err error
				if r.Intn(3) == 0 {
					_, _, err = tx.DeleteRange([]byte(k), nil, false)
				} else {
					_, err = tx.Put([]byte(k), []byte(val), 0, mvcc.PutOptions{})
				}
				if err != nil {
					return err
				}
			}
			return nil
		}, true)
	}
}

// checkWatcher checks one watcher's responses (all is its stream's
// responses in order).
func checkWatcher(t *testing.T, seed int64, all []Response, sp *propSpec, history []mvcc.Event, final, maxCompacted int64, nEvents, nCompacted, nBookmarks *int) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, watcher %+v: %s", seed, *sp, fmt.Sprintf(format, args...))
	}
	if sp.id < 0 {
		fail("refused")
	}
	created := -1
	for i, r := range all {
		if r.WatchID == sp.id && r.Created {
			created = i
			break
		}
	}
	if created < 0 {
		fail("no created response")
	}
	start := sp.start
	if start == 0 {
		start = all[created].Revision + 1
	}
	want := expected(history, sp.sp, start, sp.noPut, sp.noDelete, sp.prevKV)
	perRev := map[int64]int{}
	for _, ev := range want {
		perRev[ev.KV.ModRevision]++
	}
	var got []mvcc.Event
	var end *Response
	for i := created + 1; i < len(all); i++ {
		r := all[i]
		if r.WatchID == -1 && r.IsProgress() || r.WatchID == sp.id && r.IsProgress() {
			// A bookmark: every wanted event up to r.Revision came first.
			if end == nil {
				n := 0
				for n < len(want) && want[n].KV.ModRevision <= r.Revision {
					n++
				}
				if len(got) < n {
					fail("progress at %d (response %d) after %d of the %d events up to it", r.Revision, i, len(got), n)
				}
				*nBookmarks++
			}
			continue
		}
		if r.WatchID != sp.id {
			continue
		}
		if end != nil {
			fail("response after the watcher ended: %+v", r)
		}
		if r.Canceled {
			end = &all[i]
			continue
		}
		// Atomic: whole revisions, in order.
		counts := map[int64]int{}
		last := int64(0)
		for _, ev := range r.Events {
			if ev.KV.ModRevision < last {
				fail("revisions out of order in one response")
			}
			last = ev.KV.ModRevision
			counts[ev.KV.ModRevision]++
		}
		for rev, n := range counts {
			if n != perRev[rev] {
				fail("revision %d split: %d of its %d events in one response", rev, n, perRev[rev])
			}
		}
		if len(r.Events) > 0 && r.Revision < last {
			fail("header revision %d below its events' %d", r.Revision, last)
		}
		got = append(got, received([]Response{r})...)
	}
	*nEvents += len(got)
	// An event at a revision that was compacted when the watcher read it
	// from history comes without prev_kv (the older version is gone, as in
	// etcd); compare prev_kv only above the compaction point.
	for _, evs := range [][]mvcc.Event{got, want} {
		for i := range evs {
			if evs[i].KV.ModRevision <= maxCompacted {
				evs[i].PrevKV = nil
			}
		}
	}
	prefixOK := len(got) <= len(want) && reflect.DeepEqual(got, want[:len(got)]) || len(got) == 0
	switch {
	case end != nil && end.CompactRevision != 0:
		*nCompacted++
		// The watcher was somewhere at or after max(start, its last
		// event + 1) and that position must have been compacted.
		c := end.CompactRevision
		pos := start
		if len(got) > 0 {
			pos = max(pos, got[len(got)-1].KV.ModRevision+1)
		}
		if !prefixOK || c > maxCompacted || pos >= c {
			fail("compacted at %d (max compaction %d) at position >= %d after receiving\n%s\nof\n%s", c, maxCompacted, pos, describe(got), describe(want))
		}
	case end != nil:
		if !sp.canceled || end.CancelReason != "" {
			fail("unexpected cancellation %+v", *end)
		}
		if !prefixOK {
			fail("canceled after receiving\n%s\nnot a prefix of\n%s", describe(got), describe(want))
		}
	default:
		if sp.canceled {
			fail("canceled but no cancel response")
		}
		if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
			fail("received %d events, want %d up to %d:\n got %s\nwant %s", len(got), len(want), final, describe(got), describe(want))
		}
	}
}

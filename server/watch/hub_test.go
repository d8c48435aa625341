package watch

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synod-db/synod/mvcc"
)

func mustWatch(t *testing.T, st *Stream, r Request) int64 {
	t.Helper()
	id, err := st.Watch(r)
	if err != nil {
		t.Fatalf("watch %+v: %v", r, err)
	}
	return id
}

// TestLiveEvents covers the live path: single key, prefix, from-key and
// range watchers, puts and deletes, the created response first, IDs
// chosen by the stream and by the client.
func TestLiveEvents(t *testing.T) {
	e := newEnv(t, Options{})
	c := collect(e.hub.NewStream(), nil)
	defer c.close()
	single := mustWatch(t, c.st, Request{Key: []byte("a")})
	prefix := mustWatch(t, c.st, Request{Key: []byte("a"), End: []byte("b")})
	fromKey := mustWatch(t, c.st, Request{Key: []byte("b"), End: []byte{0}})
	chosen := mustWatch(t, c.st, Request{ID: 42, Key: []byte("ab"), End: []byte("ac")})
	if single != 0 || prefix != 1 || fromKey != 2 || chosen != 42 {
		t.Fatalf("ids %d %d %d %d", single, prefix, fromKey, chosen)
	}
	r1 := e.put("a", "1")
	e.put("ab", "2")
	e.put("b", "3")
	e.put("zz", "4")
	e.del("a", "")
	got := describe(c.eventsOf(t, prefix, 3))
	if want := fmt.Sprintf(`PUT "a"@%d="1"; PUT "ab"@%d="2"; DELETE "a"@%d; `, r1, r1+1, r1+4); got != want {
		t.Fatalf("prefix watcher got %s, want %s", got, want)
	}
	if got := describe(c.eventsOf(t, single, 2)); got != fmt.Sprintf(`PUT "a"@%d="1"; DELETE "a"@%d; `, r1, r1+4) {
		t.Fatalf("single: %s", got)
	}
	if got := describe(c.eventsOf(t, fromKey, 2)); got != fmt.Sprintf(`PUT "b"@%d="3"; PUT "zz"@%d="4"; `, r1+2, r1+3) {
		t.Fatalf("from-key: %s", got)
	}
	if got := describe(c.eventsOf(t, chosen, 1)); got != fmt.Sprintf(`PUT "ab"@%d="2"; `, r1+1) {
		t.Fatalf("chosen id: %s", got)
	}
	// The first response of every watcher is its creation, at the
	// revision before its first event.
	for _, id := range []int64{single, prefix, fromKey, chosen} {
		rs := c.of(id)
		if !rs[0].Created || rs[0].Revision != r1-1 || len(rs[0].Events) != 0 {
			t.Fatalf("watcher %d: first response %+v", id, rs[0])
		}
	}
}

// TestFiltersAndPrevKV checks NOPUT, NODELETE and PrevKV on live events
// and on replayed ones.
func TestFiltersAndPrevKV(t *testing.T) {
	e := newEnv(t, Options{})
	r1 := e.put("k", "v1")
	e.put("k", "v2")
	e.del("k", "")
	for _, live := range []bool{false, true} {
		c := collect(e.hub.NewStream(), nil)
		start := r1
		if live {
			start = 0
		}
		noPut := mustWatch(t, c.st, Request{Key: []byte("k"), StartRev: start, NoPut: true, PrevKV: true})
		noDel := mustWatch(t, c.st, Request{Key: []byte("k"), StartRev: start, NoDelete: true})
		prev := mustWatch(t, c.st, Request{Key: []byte("k"), StartRev: start, PrevKV: true})
		if live {
			r1 = e.put("k", "v1")
			e.put("k", "v2")
			e.del("k", "")
		}
		if got, want := describe(c.eventsOf(t, noPut, 1)), fmt.Sprintf(`DELETE "k"@%d (prev "v2"@%d); `, r1+2, r1+1); got != want {
			t.Fatalf("live=%v NOPUT: %s, want %s", live, got, want)
		}
		if got, want := describe(c.eventsOf(t, noDel, 2)), fmt.Sprintf(`PUT "k"@%d="v1"; PUT "k"@%d="v2"; `, r1, r1+1); got != want {
			t.Fatalf("live=%v NODELETE: %s, want %s", live, got, want)
		}
		if got, want := describe(c.eventsOf(t, prev, 3)), fmt.Sprintf(`PUT "k"@%d="v1"; PUT "k"@%d="v2" (prev "v1"@%d); DELETE "k"@%d (prev "v2"@%d); `, r1, r1+1, r1, r1+2, r1+1); got != want {
			t.Fatalf("live=%v PrevKV: %s, want %s", live, got, want)
		}
		c.close()
	}
}

// TestAtomicRevision checks that all events of one revision arrive in
// one response, both live and replayed, even when the watcher wants only
// some of them.
func TestAtomicRevision(t *testing.T) {
	e := newEnv(t, Options{})
	c := collect(e.hub.NewStream(), nil)
	defer c.close()
	all := mustWatch(t, c.st, Request{Key: []byte("k"), End: []byte("l")})
	odd := mustWatch(t, c.st, Request{Key: []byte("k1"), End: []byte("k2")})
	rev := e.write(func(tx *mvcc.WriteTxn) error {
		for i := range 100 {
			if _, err := tx.Put(fmt.Appendf(nil, "k%d", i), []byte("v"), 0, mvcc.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	}, true)
	past := mustWatch(t, c.st, Request{Key: []byte("k"), End: []byte("l"), StartRev: rev})
	for _, w := range []struct {
		id int64
		n  int
	}{{all, 100}, {odd, 11}, {past, 100}} {
		c.eventsOf(t, w.id, w.n)
		var evResps int
		for _, r := range c.of(w.id) {
			if len(r.Events) > 0 {
				evResps++
				if len(r.Events) != w.n || r.Revision != rev {
					t.Fatalf("watcher %d: response with %d events at %d", w.id, len(r.Events), r.Revision)
				}
			}
		}
		if evResps != 1 {
			t.Fatalf("watcher %d: %d responses with events", w.id, evResps)
		}
	}
}

// TestFromPastThenLive starts watchers in the past (from history and
// from the revisions kept in memory) and checks the switch to live
// events has no gap or duplicate.
func TestFromPastThenLive(t *testing.T) {
	for _, recentRevs := range []int{-1, 4, 0} {
		t.Run(fmt.Sprintf("recent=%d", recentRevs), func(t *testing.T) {
			e := newEnv(t, Options{RecentRevisions: recentRevs, SyncLimit: 3})
			if recentRevs < 0 {
				e.hub.recent.maxRevs = 0 // no revisions in memory at all
			}
			for i := range 20 {
				e.put(fmt.Sprintf("k%d", i%3), fmt.Sprint(i))
			}
			c := collect(e.hub.NewStream(), nil)
			defer c.close()
			var ids []int64
			for _, start := range []int64{2, 10, 18, 21, 25} {
				ids = append(ids, mustWatch(t, c.st, Request{Key: []byte("k"), End: []byte("l"), StartRev: start, PrevKV: true}))
			}
			for i := 20; i < 30; i++ {
				e.put(fmt.Sprintf("k%d", i%3), fmt.Sprint(i))
			}
			for i, start := range []int64{2, 10, 18, 21, 25} {
				want := expected(e.history, span{key: "k", end: "l"}, start, false, false, true)
				got := c.eventsOf(t, ids[i], len(want))
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("start %d:\n got %s\nwant %s", start, describe(got), describe(want))
				}
			}
		})
	}
}

// TestCompactedStart checks the answer to a compacted start revision:
// created, then canceled with CompactRevision, the first revision that
// can still be watched; watching from there works.
func TestCompactedStart(t *testing.T) {
	e := newEnv(t, Options{})
	for i := range 10 {
		e.put("k", fmt.Sprint(i))
	}
	e.compact(6)
	c := collect(e.hub.NewStream(), nil)
	defer c.close()
	for _, start := range []int64{1, 5} {
		id, err := c.st.Watch(Request{Key: []byte("k"), StartRev: start})
		if !errors.Is(err, mvcc.ErrCompacted) {
			t.Fatalf("start %d: err %v", start, err)
		}
		waitFor(t, "compaction response", func() bool { return len(c.of(id)) == 2 })
		rs := c.of(id)
		if !rs[0].Created || rs[1].CompactRevision != 6 || !rs[1].Canceled || len(rs[1].Events) != 0 {
			t.Fatalf("start %d: responses %+v", start, rs)
		}
	}
	id := mustWatch(t, c.st, Request{Key: []byte("k"), StartRev: 7})
	if got := c.eventsOf(t, id, 5); len(got) != 5 || got[0].KV.ModRevision != 7 {
		t.Fatalf("from 7: %s", describe(got))
	}
}

// TestCompactedWhileBehind compacts history a slow watcher still needs:
// it is canceled with CompactRevision after the events it did receive,
// which are an exact prefix of what it asked for.
func TestCompactedWhileBehind(t *testing.T) {
	e := newEnv(t, Options{StreamMaxResponses: 2, RecentRevisions: 1})
	// The collector takes one response, then waits for the gate.
	gate := make(chan struct{})
	c := collect(e.hub.NewStream(), func() { <-gate })
	defer c.close()
	id := mustWatch(t, c.st, Request{Key: []byte("k")})
	// The puts must find the "created" response taken and the collector
	// stuck behind it, or the stream's queue holds it among the events.
	waitFor(t, "the created response", func() bool { return len(c.of(id)) == 1 })
	for i := range 30 {
		e.put("k", fmt.Sprint(i))
	}
	e.compact(25)
	close(gate)
	waitFor(t, "cancellation", func() bool {
		rs := c.of(id)
		return len(rs) > 0 && rs[len(rs)-1].Canceled
	})
	rs := c.of(id)
	last := rs[len(rs)-1]
	if last.CompactRevision != 25 {
		t.Fatalf("last response %+v", last)
	}
	got := received(rs)
	want := expected(e.history, span{key: "k"}, 2, false, false, false)
	if len(got) == 0 || len(got) >= len(want) || !reflect.DeepEqual(got, want[:len(got)]) || want[len(got)].KV.ModRevision > 25 {
		t.Fatalf("received %s\nof %s", describe(got), describe(want))
	}
}

// TestBadRequests checks refusals: duplicate IDs, empty ranges, negative
// revisions and IDs, canceling unknown IDs, a closed stream.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, Options{})
	c := collect(e.hub.NewStream(), nil)
	mustWatch(t, c.st, Request{ID: 7, Key: []byte("a")})
	waitFor(t, "created", func() bool { return len(c.responses()) == 1 })
	for _, tc := range []struct {
		r    Request
		want error
	}{
		{Request{ID: 7, Key: []byte("b")}, ErrDuplicateID},
		{Request{Key: []byte("b"), End: []byte("a")}, ErrEmptyRange},
		{Request{Key: []byte("b"), End: []byte("b")}, ErrEmptyRange},
		{Request{Key: []byte("b"), StartRev: -3}, ErrNegativeRev},
		{Request{ID: -1, Key: []byte("b")}, ErrNegativeID},
	} {
		n := len(c.responses())
		id, err := c.st.Watch(tc.r)
		if !errors.Is(err, tc.want) || id != -1 {
			t.Fatalf("%+v: id %d err %v, want %v", tc.r, id, err, tc.want)
		}
		waitFor(t, "refusal", func() bool { return len(c.responses()) == n+1 })
		r := c.responses()[n]
		if r.WatchID != -1 || !r.Created || !r.Canceled || !strings.Contains(r.CancelReason, tc.want.Error()) {
			t.Fatalf("%+v: response %+v", tc.r, r)
		}
	}
	n := len(c.responses())
	if c.st.Cancel(99) {
		t.Fatal("canceled an unknown watcher")
	}
	if !c.st.Cancel(7) || c.st.Cancel(7) {
		t.Fatal("cancel of watcher 7")
	}
	waitFor(t, "cancel response", func() bool { return len(c.responses()) == n+1 })
	if r := c.responses()[n]; r.WatchID != 7 || !r.Canceled || r.CancelReason != "" {
		t.Fatalf("cancel response %+v", r)
	}
	// A canceled ID is free again.
	if id := mustWatch(t, c.st, Request{ID: 7, Key: []byte("a")}); id != 7 {
		t.Fatal(id)
	}
	c.close()
	if _, err := c.st.Watch(Request{Key: []byte("a")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("watch on a closed stream: %v", err)
	}
	if _, ok, err := c.st.Next(nil); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("Next on a closed stream: %v %v", ok, err)
	}
}

// TestCancelDropsQueued checks that a canceled watcher's queued events
// are not delivered after the cancel and that its cancel response comes.
func TestCancelDropsQueued(t *testing.T) {
	e := newEnv(t, Options{})
	st := e.hub.NewStream()
	defer st.Close()
	id := mustWatch(t, st, Request{Key: []byte("k")})
	e.put("k", "1")
	e.put("k", "2")
	st.Cancel(id)
	var got []Response
	for {
		r, _, _ := st.Next(nil)
		got = append(got, r)
		if r.Canceled {
			break
		}
	}
	if len(got) != 2 || !got[0].Created {
		t.Fatalf("responses %+v", got)
	}
}

// TestSlowStreamNeverBlocks fills a stream that nobody reads: Notify
// keeps returning at once, memory stays bounded, and once the consumer
// reads, it gets every event exactly once, in order.
func TestSlowStreamNeverBlocks(t *testing.T) {
	e := newEnv(t, Options{StreamMaxResponses: 16, StreamMaxBytes: 1 << 20, RecentRevisions: 8})
	slow := e.hub.NewStream()
	fast := collect(e.hub.NewStream(), nil)
	defer fast.close()
	sid := mustWatch(t, slow, Request{Key: []byte("k"), End: []byte{0}, PrevKV: true})
	fid := mustWatch(t, fast.st, Request{Key: []byte("k"), End: []byte{0}})
	start := time.Now()
	for i := range 2000 {
		e.put(fmt.Sprintf("k%d", i%50), fmt.Sprint(i))
	}
	elapsed := time.Since(start)
	fast.eventsOf(t, fid, 2000)
	slow.mu.Lock()
	queued := slow.queued()
	slow.mu.Unlock()
	if queued > 17 {
		t.Fatalf("slow stream holds %d responses", queued)
	}
	if st := e.hub.Stats(); st.Unsynced != 1 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("2000 writes in %v with a stuck stream", elapsed)
	c := collect(slow, nil)
	defer c.close()
	want := expected(e.history, span{key: "k", fromKey: true}, 0, false, false, true)
	got := c.eventsOf(t, sid, len(want))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("slow watcher got %d events, want %d", len(got), len(want))
	}
	waitFor(t, "slow watcher synced", func() bool { return e.hub.Stats().Unsynced == 0 })
	e.put("k1", "after")
	if got := c.eventsOf(t, sid, len(want)+1); string(got[len(got)-1].KV.Value) != "after" {
		t.Fatal("no live event after catching up")
	}
}

// TestRequestProgress checks stream-wide progress: at once when every
// watcher is synced, deferred until they are otherwise, and always
// after every event up to its revision.
func TestRequestProgress(t *testing.T) {
	e := newEnv(t, Options{SyncLimit: 1, RecentRevisions: 1})
	for i := range 50 {
		e.put("k", fmt.Sprint(i))
	}
	c := collect(e.hub.NewStream(), nil)
	defer c.close()
	c.st.RequestProgress()
	waitFor(t, "progress", func() bool { return len(c.responses()) == 1 })
	if r := c.responses()[0]; r.WatchID != -1 || r.Revision != 51 || !r.IsProgress() {
		t.Fatalf("progress on an empty stream: %+v", r)
	}
	id := mustWatch(t, c.st, Request{Key: []byte("k"), StartRev: 2})
	c.st.RequestProgress()
	waitFor(t, "second progress", func() bool {
		n := 0
		for _, r := range c.responses() {
			if r.WatchID == -1 {
				n++
			}
		}
		return n == 2
	})
	// Everything up to 51 came before the progress notification.
	var evs int
	for _, r := range c.responses() {
		if r.WatchID == id {
			evs += len(r.Events)
		}
		if r.WatchID == -1 && r.Revision == 51 && evs != 0 && evs != 50 {
			t.Fatalf("progress at 51 after only %d events", evs)
		}
	}
	if evs != 50 {
		t.Fatalf("%d events", evs)
	}
}

// TestProgressNotify checks periodic progress notifications go to idle
// watchers that asked for them, with the current revision.
func TestProgressNotify(t *testing.T) {
	e := newEnv(t, Options{ProgressInterval: 20 * time.Millisecond})
	c := collect(e.hub.NewStream(), nil)
	defer c.close()
	rev := e.put("x", "1")
	with := mustWatch(t, c.st, Request{Key: []byte("k"), ProgressNotify: true})
	without := mustWatch(t, c.st, Request{Key: []byte("k")})
	waitFor(t, "progress notifications", func() bool { return len(c.of(with)) >= 3 })
	for _, r := range c.of(with)[1:] {
		if !r.IsProgress() || r.Revision != rev {
			t.Fatalf("progress %+v", r)
		}
	}
	if n := len(c.of(without)); n != 1 {
		t.Fatalf("watcher without progress_notify got %d responses", n)
	}
}

// TestResync simulates a snapshot install: the key space moves ahead
// without Notify, then Resync (or the next Notify, which sees the gap)
// makes every watcher catch up from the new history.
func TestResync(t *testing.T) {
	for _, viaGap := range []bool{false, true} {
		t.Run(fmt.Sprintf("gap=%v", viaGap), func(t *testing.T) {
			e := newEnv(t, Options{})
			c := collect(e.hub.NewStream(), nil)
			defer c.close()
			id := mustWatch(t, c.st, Request{Key: []byte("k"), End: []byte("l"), PrevKV: true})
			e.put("k1", "a")
			for i := range 5 {
				e.write(func(tx *mvcc.WriteTxn) error {
					_, err := tx.Put(fmt.Appendf(nil, "k%d", i), []byte("b"), 0, mvcc.PutOptions{})
					return err
				}, false)
			}
			if viaGap {
				e.put("k9", "c")
			} else {
				e.hub.Resync(e.store.Rev())
			}
			want := expected(e.history, span{key: "k", end: "l"}, 0, false, false, true)
			if got := c.eventsOf(t, id, len(want)); !reflect.DeepEqual(got, want) {
				t.Fatalf("got %s\nwant %s", describe(got), describe(want))
			}
		})
	}
}

// TestCloseEndsStreams checks that closing the hub ends every stream's
// consumer with ErrClosed and stops Notify.
func TestCloseEndsStreams(t *testing.T) {
	e := newEnv(t, Options{})
	st := e.hub.NewStream()
	mustWatch(t, st, Request{Key: []byte("k")})
	errc := make(chan error, 1)
	go func() {
		for {
			_, ok, err := st.Next(nil)
			if !ok {
				errc <- err
				return
			}
		}
	}()
	e.hub.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	e.put("k", "v") // ignored
	if st := e.hub.NewStream(); !st.isClosed() {
		t.Fatal("new stream on a closed hub is open")
	}
}

// TestConcurrentUse hammers one stream from several goroutines (create,
// cancel, progress) while writes flow, for the race detector.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, Options{StreamMaxResponses: 4, SyncLimit: 5, RecentRevisions: 3})
	c := collect(e.hub.NewStream(), func() { time.Sleep(10 * time.Microsecond) })
	defer c.close()
	var wg sync.WaitGroup
	var stop atomic.Bool
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200 && !stop.Load(); i++ {
				id, err := c.st.Watch(Request{Key: []byte("k"), End: []byte{0}, StartRev: int64(max(1, i%7)), PrevKV: i%2 == 0})
				if err != nil {
					t.Error(err)
					return
				}
				if i%3 == g%3 {
					c.st.RequestProgress()
				}
				if i%2 == 0 {
					c.st.Cancel(id)
				}
			}
		}()
	}
	for i := range 300 {
		e.put(fmt.Sprintf("k%d", i%10), "v")
	}
	stop.Store(true)
	wg.Wait()
}

// TestWaitRoom checks the backpressure on client requests: with the
// queue full of unread answers WaitRoom blocks until one is read.
func TestWaitRoom(t *testing.T) {
	e := newEnv(t, Options{StreamMaxResponses: 3})
	st := e.hub.NewStream()
	defer st.Close()
	for range 3 {
		mustWatch(t, st, Request{Key: []byte("k")})
	}
	returned := make(chan struct{})
	go func() { st.WaitRoom(nil); close(returned) }()
	select {
	case <-returned:
		t.Fatal("WaitRoom returned with a full queue")
	case <-time.After(50 * time.Millisecond):
	}
	if _, ok, err := st.Next(nil); !ok || err != nil {
		t.Fatal(ok, err)
	}
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRoom still blocked after a read")
	}
	done := make(chan struct{})
	close(done)
	st.WaitRoom(done) // room now: returns at once either way
}

package watch

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synod-db/synod/mvcc"
)

// env is a store and a hub wired like the server: writes go to the
// store and then, in revision order, to Notify.
type env struct {
	t     testing.TB
	store *mvcc.Store
	hub   *Hub

	mu      sync.Mutex // the "apply goroutine": one write and its Notify at a time
	history []mvcc.Event
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	before := runtime.NumGoroutine()
	s, err := mvcc.Open(filepath.Join(t.TempDir(), "kv"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: s}
	e.hub = New(s, s.Rev(), opts)
	t.Cleanup(func() {
		e.hub.Close()
		s.Close()
		checkNoLeak(t, before)
	})
	return e
}

// checkNoLeak fails if goroutines started by the test outlive it.
func checkNoLeak(t testing.TB, before int) {
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// write applies fn as one revision and notifies the hub (unless skip,
// which simulates a change the hub was not told about).
func (e *env) write(fn func(tx *mvcc.WriteTxn) error, notify bool) int64 {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	rev, evs, err := e.store.Write(0, fn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.history = append(e.history, evs...)
	if notify {
		e.hub.Notify(rev, evs)
	}
	return rev
}

func (e *env) put(key, val string) int64 {
	return e.write(func(tx *mvcc.WriteTxn) error {
		_, err := tx.Put([]byte(key), []byte(val), 0, mvcc.PutOptions{})
		return err
	}, true)
}

func (e *env) del(key, end string) int64 {
	return e.write(func(tx *mvcc.WriteTxn) error {
		_, _, err := tx.DeleteRange([]byte(key), []byte(end), false)
		return err
	}, true)
}

func (e *env) compact(rev int64) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.store.Compact(0, rev); err != nil {
		e.t.Fatal(err)
	}
}

// expected returns the events of history a watcher with these options
// must receive from revision from on, PrevKV stripped unless asked.
func expected(history []mvcc.Event, sp span, from int64, noPut, noDelete, prevKV bool) []mvcc.Event {
	var out []mvcc.Event
	for _, ev := range history {
		if ev.KV.ModRevision < from || !sp.contains(string(ev.KV.Key)) {
			continue
		}
		if (ev.Type == mvcc.EventPut && noPut) || (ev.Type == mvcc.EventDelete && noDelete) {
			continue
		}
		if !prevKV {
			ev.PrevKV = nil
		}
		out = append(out, ev)
	}
	return out
}

// received flattens the events of responses as the API would send them.
func received(rs []Response) []mvcc.Event {
	var out []mvcc.Event
	for _, r := range rs {
		for _, ev := range r.Events {
			if !r.PrevKV {
				ev.PrevKV = nil
			}
			out = append(out, ev)
		}
	}
	return out
}

func describe(evs []mvcc.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%v %q@%d", e.Type, e.KV.Key, e.KV.ModRevision)
		if e.Type == mvcc.EventPut {
			fmt.Fprintf(&b, "=%q", e.KV.Value)
		}
		if e.PrevKV != nil {
			fmt.Fprintf(&b, " (prev %q@%d)", e.PrevKV.Value, e.PrevKV.ModRevision)
		}
		b.WriteString("; ")
	}
	return b.String()
}

// collector drains a stream on its own goroutine, recording every
// response in order.
type collector struct {
	st   *Stream
	mu   sync.Mutex
	all  []Response
	done chan struct{}
	stop chan struct{}
	// delay, if set, slows the consumer down after each response.
	delay func()
}

func collect(st *Stream, delay func()) *collector {
	c := &collector{st: st, done: make(chan struct{}), stop: make(chan struct{}), delay: delay}
	go func() {
		defer close(c.done)
		for {
			r, ok, err := st.Next(c.stop)
			if !ok || err != nil {
				return
			}
			c.mu.Lock()
			c.all = append(c.all, r)
			c.mu.Unlock()
			if c.delay != nil {
				c.delay()
			}
		}
	}()
	return c
}

// close stops the consumer and the stream.
func (c *collector) close() {
	close(c.stop)
	<-c.done
	c.st.Close()
}

func (c *collector) responses() []Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Response(nil), c.all...)
}

// of returns the responses for watch ID id.
func (c *collector) of(id int64) []Response {
	var out []Response
	for _, r := range c.responses() {
		if r.WatchID == id {
			out = append(out, r)
		}
	}
	return out
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// eventsOf waits until the responses of watcher id hold n events and
// returns them.
func (c *collector) eventsOf(t testing.TB, id int64, n int) []mvcc.Event {
	t.Helper()
	var evs []mvcc.Event
	waitFor(t, fmt.Sprintf("%d events on watcher %d", n, id), func() bool {
		evs = received(c.of(id))
		return len(evs) >= n
	})
	return evs
}

package server

import (
	"errors"
	"testing"
)

// TestWaitRegistry checks delivery, cancellation, the failing of
// requests proposed under older terms, and that a request raft has not
// taken yet (waiting for a leader) is not failed by a leader change: it
// will be proposed under the new term.
func TestWaitRegistry(t *testing.T) {
	w := newWaitRegistry()
	reg := func(id, term uint64) <-chan applyResult {
		ch := w.register(id)
		w.proposed(id, term)
		return ch
	}
	old := reg(1, 3)
	cur := reg(2, 4)
	gone := reg(3, 3)
	pending := w.register(5)
	w.cancel(3)
	w.trigger(3, applyResult{resp: "late"}) // nobody waits: dropped
	w.failOlderThan(4, ErrLeaderChanged)
	if r := <-old; !errors.Is(r.err, ErrLeaderChanged) {
		t.Fatalf("request of term 3 after a term-4 entry: %+v", r)
	}
	select {
	case r := <-cur:
		t.Fatalf("request of term 4 was failed: %+v", r)
	case r := <-gone:
		t.Fatalf("cancelled request got %+v", r)
	case r := <-pending:
		t.Fatalf("request not yet proposed was failed by a leader change: %+v", r)
	default:
	}
	w.trigger(2, applyResult{resp: "ok"})
	if r := <-cur; r.resp != "ok" || r.err != nil {
		t.Fatalf("result %+v", r)
	}
	late := reg(4, 9)
	w.failAll(ErrStopped)
	for _, ch := range []<-chan applyResult{late, pending} {
		if r := <-ch; !errors.Is(r.err, ErrStopped) {
			t.Fatalf("after failAll: %+v", r)
		}
	}
}

// TestAppliedWaiter checks that waiters are released exactly when the
// applied index reaches them.
func TestAppliedWaiter(t *testing.T) {
	a := newAppliedWaiter(5)
	select {
	case <-a.wait(5):
	default:
		t.Fatal("wait for an applied index blocked")
	}
	w7, w9, w8 := a.wait(7), a.wait(9), a.wait(8)
	a.trigger(8)
	for _, ch := range []<-chan struct{}{w7, w8} {
		select {
		case <-ch:
		default:
			t.Fatal("waiter at or below 8 not released")
		}
	}
	select {
	case <-w9:
		t.Fatal("waiter at 9 released at 8")
	default:
	}
	a.trigger(9)
	<-w9
}

package tracker

import (
	"strings"
	"testing"
)

func newProgress(state StateType, match, next, pendingSnap uint64) *Progress {
	return &Progress{
		Match:           match,
		Next:            next,
		State:           state,
		PendingSnapshot: pendingSnap,
		Inflights:       NewInflights(4, 0),
	}
}

// TestBecomeProbe checks where probing restarts: after Match when coming
// from replicate or probe, and after the larger of Match and the pending
// snapshot when coming from a snapshot; flow-control state is reset.
func TestBecomeProbe(t *testing.T) {
	tests := []struct {
		pr       *Progress
		wantNext uint64
	}{
		{newProgress(StateReplicate, 1, 5, 0), 2},
		{newProgress(StateProbe, 3, 9, 0), 4},
		{newProgress(StateSnapshot, 1, 5, 10), 11}, // snapshot beyond Match
		{newProgress(StateSnapshot, 20, 21, 10), 21},
		{newProgress(StateSnapshot, 10, 11, 10), 11},
		{newProgress(StateSnapshot, 0, 1, 0), 1},
	}
	for i, tt := range tests {
		tt.pr.MsgAppFlowPaused = true
		if tt.pr.State == StateReplicate {
			tt.pr.Inflights.Add(4, 10)
		}
		tt.pr.BecomeProbe()
		if tt.pr.State != StateProbe || tt.pr.Next != tt.wantNext {
			t.Errorf("%d: state %s next %d, want StateProbe next %d", i, tt.pr.State, tt.pr.Next, tt.wantNext)
		}
		if tt.pr.PendingSnapshot != 0 || tt.pr.MsgAppFlowPaused || tt.pr.Inflights.Count() != 0 {
			t.Errorf("%d: flow-control state not reset: %+v inflight=%d", i, tt.pr, tt.pr.Inflights.Count())
		}
	}
}

// TestBecomeReplicateAndSnapshot checks the other two transitions: replicate
// streams from Match+1 with an empty window; snapshot records the pending
// index, keeps Next, and pauses.
func TestBecomeReplicateAndSnapshot(t *testing.T) {
	pr := newProgress(StateProbe, 5, 9, 0)
	pr.MsgAppFlowPaused = true
	pr.BecomeReplicate()
	if pr.State != StateReplicate || pr.Next != 6 || pr.MsgAppFlowPaused || pr.IsPaused() {
		t.Fatalf("after BecomeReplicate: %+v", pr)
	}
	pr.SentEntries(3, 30, 8)
	pr.BecomeSnapshot(100)
	if pr.State != StateSnapshot || pr.PendingSnapshot != 100 || pr.Match != 5 || pr.Next != 9 || pr.Inflights.Count() != 0 {
		t.Fatalf("after BecomeSnapshot(100): %+v inflight=%d", pr, pr.Inflights.Count())
	}
	if !pr.IsPaused() {
		t.Fatalf("a member receiving a snapshot is not paused")
	}
}

// TestMaybeUpdate checks acknowledgements: stale ones (not beyond Match)
// are refused without moving anything; new ones move Match and, if needed,
// Next; any acknowledgement unpauses a probe.
func TestMaybeUpdate(t *testing.T) {
	tests := []struct {
		match, next, n      uint64
		ok                  bool
		wantMatch, wantNext uint64
	}{
		{5, 10, 3, false, 5, 10},
		{5, 10, 5, false, 5, 10},
		{5, 10, 6, true, 6, 10},
		{5, 10, 9, true, 9, 10},
		{5, 10, 10, true, 10, 11},
		{5, 10, 20, true, 20, 21},
		{0, 1, 0, false, 0, 1},
	}
	for i, tt := range tests {
		pr := newProgress(StateProbe, tt.match, tt.next, 0)
		pr.MsgAppFlowPaused = true
		if ok := pr.MaybeUpdate(tt.n); ok != tt.ok {
			t.Errorf("%d: MaybeUpdate(%d) = %v, want %v", i, tt.n, ok, tt.ok)
		}
		if pr.Match != tt.wantMatch || pr.Next != tt.wantNext || pr.MsgAppFlowPaused {
			t.Errorf("%d: match=%d next=%d paused=%v, want match=%d next=%d unpaused", i, pr.Match, pr.Next, pr.MsgAppFlowPaused, tt.wantMatch, tt.wantNext)
		}
	}
}

// TestMaybeDecrTo checks rejections: in replicate, a rejection at or below
// Match is stale and others restart from Match+1; in probe, only the
// rejection of the outstanding probe (Next-1) counts, and Next moves to the
// hint but never to or below Match.
func TestMaybeDecrTo(t *testing.T) {
	tests := []struct {
		state                  StateType
		match, next            uint64
		rejected, hint         uint64
		ok                     bool
		wantNext               uint64
		wantPausedAfterRefusal bool
	}{
		// Replicate: stale rejections.
		{StateReplicate, 5, 10, 5, 5, false, 10, false},
		{StateReplicate, 5, 10, 4, 0, false, 10, false},
		// Replicate: a real rejection restarts after Match, whatever the hint.
		{StateReplicate, 5, 10, 9, 9, true, 6, false},
		{StateReplicate, 5, 10, 7, 100, true, 6, false},
		{StateReplicate, 0, 10, 9, 2, true, 1, false},
		// Probe: only the answer to the outstanding probe (Next-1) counts.
		{StateProbe, 0, 10, 5, 5, false, 10, true},
		{StateProbe, 0, 10, 10, 5, false, 10, true},
		{StateProbe, 0, 10, 9, 9, true, 9, false},
		{StateProbe, 0, 10, 9, 4, true, 5, false},
		{StateProbe, 0, 10, 9, 100, true, 9, false},
		{StateProbe, 0, 10, 9, 0, true, 1, false},
		{StateProbe, 6, 10, 9, 2, true, 7, false}, // never at or below Match
		{StateProbe, 0, 1, 0, 0, true, 1, false},
		// Snapshot behaves like probe.
		{StateSnapshot, 0, 10, 3, 0, false, 10, true},
		{StateSnapshot, 0, 10, 9, 3, true, 4, false},
	}
	for i, tt := range tests {
		pr := newProgress(tt.state, tt.match, tt.next, 0)
		pr.MsgAppFlowPaused = tt.state != StateReplicate
		ok := pr.MaybeDecrTo(tt.rejected, tt.hint)
		if ok != tt.ok || pr.Next != tt.wantNext {
			t.Errorf("%d: %s match=%d: MaybeDecrTo(%d, %d) = %v next=%d; want %v next=%d", i, tt.state, tt.match, tt.rejected, tt.hint, ok, pr.Next, tt.ok, tt.wantNext)
		}
		if pr.Match != tt.match {
			t.Errorf("%d: MaybeDecrTo changed Match to %d", i, pr.Match)
		}
		if tt.state != StateReplicate && pr.MsgAppFlowPaused != tt.wantPausedAfterRefusal {
			t.Errorf("%d: paused=%v after MaybeDecrTo, want %v", i, pr.MsgAppFlowPaused, tt.wantPausedAfterRefusal)
		}
	}
}

// TestIsPaused checks the pause rule of each state: probe pauses while a
// probe is outstanding, replicate while the window is full, snapshot always.
func TestIsPaused(t *testing.T) {
	probe := newProgress(StateProbe, 0, 1, 0)
	if probe.IsPaused() {
		t.Errorf("fresh probe is paused")
	}
	probe.MsgAppFlowPaused = true
	if !probe.IsPaused() {
		t.Errorf("probe with an outstanding append is not paused")
	}

	repl := newProgress(StateReplicate, 0, 1, 0)
	repl.MsgAppFlowPaused = true // ignored in replicate
	for i := uint64(1); i <= 4; i++ {
		if repl.IsPaused() {
			t.Fatalf("replicate paused with %d of 4 messages in flight", i-1)
		}
		repl.SentEntries(1, 1, i)
	}
	if !repl.IsPaused() {
		t.Errorf("replicate with a full window is not paused")
	}

	snap := newProgress(StateSnapshot, 0, 1, 5)
	if !snap.IsPaused() {
		t.Errorf("snapshot is not paused")
	}
	if other := newProgress(StateType(7), 0, 1, 0); !other.IsPaused() {
		t.Errorf("unknown state is not paused")
	}
}

// TestSentEntries checks that sending advances Next and fills the window in
// replicate (but not for an empty append), pauses in probe, and does
// nothing in snapshot.
func TestSentEntries(t *testing.T) {
	pr := newProgress(StateReplicate, 5, 6, 0)
	pr.SentEntries(3, 300, 8)
	if pr.Next != 9 || pr.Inflights.Count() != 1 || pr.Inflights.Bytes() != 300 {
		t.Fatalf("replicate after sending 6..8: next=%d inflight=%d bytes=%d", pr.Next, pr.Inflights.Count(), pr.Inflights.Bytes())
	}
	pr.SentEntries(0, 0, 8)
	if pr.Next != 9 || pr.Inflights.Count() != 1 {
		t.Fatalf("an empty append changed replicate state: next=%d inflight=%d", pr.Next, pr.Inflights.Count())
	}
	// An acknowledgement frees the window as the caller does.
	pr.MaybeUpdate(8)
	pr.Inflights.FreeLE(8)
	if pr.Match != 8 || pr.Next != 9 || pr.Inflights.Count() != 0 {
		t.Fatalf("after ack: %+v inflight=%d", pr, pr.Inflights.Count())
	}

	probe := newProgress(StateProbe, 5, 6, 0)
	probe.SentEntries(2, 20, 7)
	if !probe.MsgAppFlowPaused || probe.Next != 6 || probe.Inflights.Count() != 0 {
		t.Fatalf("probe after sending: paused=%v next=%d inflight=%d", probe.MsgAppFlowPaused, probe.Next, probe.Inflights.Count())
	}
	empty := newProgress(StateProbe, 5, 6, 0)
	empty.SentEntries(0, 0, 5)
	if !empty.MsgAppFlowPaused {
		t.Fatalf("an empty probe does not pause")
	}

	snap := newProgress(StateSnapshot, 5, 6, 10)
	snap.SentEntries(2, 20, 7)
	if snap.Next != 6 || snap.MsgAppFlowPaused || snap.Inflights.Count() != 0 {
		t.Fatalf("snapshot state changed by SentEntries: %+v", snap)
	}
}

// TestProgressString checks the printed form, which names the state and
// every flag that is set.
func TestProgressString(t *testing.T) {
	pr := newProgress(StateReplicate, 3, 7, 0)
	pr.IsLearner = true
	pr.RecentActive = false
	for i := range uint64(4) {
		pr.SentEntries(1, 1, 4+i)
	}
	if got, want := pr.String(), "StateReplicate match=3 next=8 learner paused inactive inflight=4[full]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	snap := newProgress(StateSnapshot, 1, 2, 9)
	snap.RecentActive = true
	if got, want := snap.String(), "StateSnapshot match=1 next=2 paused pendingSnap=9"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	probe := newProgress(StateProbe, 0, 1, 0)
	probe.RecentActive = true
	probe.Inflights.Add(1, 0) // unusual in probe, but printed
	if got, want := probe.String(), "StateProbe match=0 next=1 inflight=1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := StateType(9).String(); !strings.Contains(got, "9") {
		t.Errorf("unknown state prints %q", got)
	}
}

package raft

import (
	"errors"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/synod-db/synod/internal/invariants"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// discardLogger returns a logger that drops everything, so that expected
// error lines do not clutter test output.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// entriesFrom returns consecutive entries starting at index first, one per
// term given.
func entriesFrom(first uint64, terms ...uint64) []pb.Entry {
	out := make([]pb.Entry, len(terms))
	for i, term := range terms {
		out[i] = pb.Entry{Index: first + uint64(i), Term: term}
	}
	return out
}

// sizedEntries returns consecutive entries starting at index first, all of
// term term, each carrying size bytes of payload.
func sizedEntries(first, term uint64, n int, size int) []pb.Entry {
	out := make([]pb.Entry, n)
	for i := range out {
		out[i] = pb.Entry{Index: first + uint64(i), Term: term, Data: []byte(strings.Repeat("x", size))}
	}
	return out
}

// newLogOver returns a raftLog over a MemoryStorage that holds a snapshot
// at (snapIndex, snapTerm), if snapIndex is not zero, followed by stored.
func newLogOver(t *testing.T, snapIndex, snapTerm uint64, stored []pb.Entry, maxApplying uint64) (*raftLog, *MemoryStorage) {
	t.Helper()
	st := NewMemoryStorage()
	if snapIndex > 0 {
		if err := st.ApplySnapshot(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: snapIndex, Term: snapTerm}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Append(stored); err != nil {
		t.Fatal(err)
	}
	l, err := newLog(st, discardLogger(), maxApplying)
	if err != nil {
		t.Fatal(err)
	}
	return l, st
}

// logTerms lists the terms of every entry of l, first to last.
func logTerms(t *testing.T, l *raftLog) []uint64 {
	t.Helper()
	ents, err := l.slice(l.firstIndex(), l.lastIndex()+1, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	var terms []uint64
	for i, e := range ents {
		if want := l.firstIndex() + uint64(i); e.Index != want {
			t.Fatalf("entry %d of the log has index %d, want %d", i, e.Index, want)
		}
		terms = append(terms, e.Term)
	}
	return terms
}

// indexes lists the indexes of ents.
func indexes(ents []pb.Entry) []uint64 {
	var out []uint64
	for _, e := range ents {
		out = append(out, e.Index)
	}
	return out
}

// expectPanic fails the test unless f panics.
func expectPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: did not panic", what)
		}
	}()
	f()
}

// TestLogMaybeAppend checks the Log Matching check of maybeAppend: appends
// happen only after a matching (index, term), entries already present are
// kept, a conflicting uncommitted suffix is replaced, the commit index
// advances to min(leader commit, last new index), and an append that would
// rewrite a committed entry is refused (without panicking) and changes
// nothing.
func TestLogMaybeAppend(t *testing.T) {
	// The log is 1:t1 2:t2 3:t3 with entry 1 committed.
	tests := []struct {
		name            string
		index, logTerm  uint64
		commit          uint64
		ents            []pb.Entry
		wantLast        uint64
		wantOK          bool
		wantCommit      uint64
		wantTerms       []uint64
		wantUnstableOff uint64
	}{
		{name: "previous term mismatch", index: 3, logTerm: 2, commit: 3, ents: entriesFrom(4, 4),
			wantOK: false, wantCommit: 1, wantTerms: []uint64{1, 2, 3}, wantUnstableOff: 4},
		{name: "previous index beyond log", index: 4, logTerm: 3, commit: 4, ents: entriesFrom(5, 4),
			wantOK: false, wantCommit: 1, wantTerms: []uint64{1, 2, 3}, wantUnstableOff: 4},
		{name: "heartbeat-like, nothing new", index: 3, logTerm: 3, commit: 3,
			wantLast: 3, wantOK: true, wantCommit: 3, wantTerms: []uint64{1, 2, 3}, wantUnstableOff: 4},
		{name: "commit clamped to last new index", index: 2, logTerm: 2, commit: 3,
			wantLast: 2, wantOK: true, wantCommit: 2, wantTerms: []uint64{1, 2, 3}, wantUnstableOff: 4},
		{name: "append new entries", index: 3, logTerm: 3, commit: 5, ents: entriesFrom(4, 4, 4),
			wantLast: 5, wantOK: true, wantCommit: 5, wantTerms: []uint64{1, 2, 3, 4, 4}, wantUnstableOff: 4},
		{name: "leader commit behind", index: 3, logTerm: 3, commit: 2, ents: entriesFrom(4, 4),
			wantLast: 4, wantOK: true, wantCommit: 2, wantTerms: []uint64{1, 2, 3, 4}, wantUnstableOff: 4},
		{name: "entries already present", index: 1, logTerm: 1, commit: 3, ents: entriesFrom(2, 2),
			wantLast: 2, wantOK: true, wantCommit: 2, wantTerms: []uint64{1, 2, 3}, wantUnstableOff: 4},
		{name: "present then new", index: 2, logTerm: 2, commit: 4, ents: entriesFrom(3, 3, 3),
			wantLast: 4, wantOK: true, wantCommit: 4, wantTerms: []uint64{1, 2, 3, 3}, wantUnstableOff: 4},
		{name: "conflict truncates the suffix", index: 1, logTerm: 1, commit: 2, ents: entriesFrom(2, 4, 4),
			wantLast: 3, wantOK: true, wantCommit: 2, wantTerms: []uint64{1, 4, 4}, wantUnstableOff: 2},
		{name: "conflict after a present entry", index: 1, logTerm: 1, commit: 1, ents: entriesFrom(2, 2, 5, 5),
			wantLast: 4, wantOK: true, wantCommit: 1, wantTerms: []uint64{1, 2, 5, 5}, wantUnstableOff: 3},
		{name: "conflict with a committed entry is refused", index: 0, logTerm: 0, commit: 3, ents: entriesFrom(1, 7, 7),
			wantOK: false, wantCommit: 1, wantTerms: []uint64{1, 2, 3}, wantUnstableOff: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 2, 3), noLimit)
			l.commitTo(1)
			last, ok := l.maybeAppend(tt.index, tt.logTerm, tt.commit, tt.ents)
			if ok != tt.wantOK || last != tt.wantLast {
				t.Errorf("maybeAppend = (%d, %v), want (%d, %v)", last, ok, tt.wantLast, tt.wantOK)
			}
			if l.committed != tt.wantCommit {
				t.Errorf("committed = %d, want %d", l.committed, tt.wantCommit)
			}
			if got := logTerms(t, l); !slices.Equal(got, tt.wantTerms) {
				t.Errorf("log terms = %v, want %v", got, tt.wantTerms)
			}
			if l.unstable.offset != tt.wantUnstableOff {
				t.Errorf("unstable offset = %d, want %d", l.unstable.offset, tt.wantUnstableOff)
			}
		})
	}
}

// TestLogAppendRefusesCommittedRewrite checks that the low-level append
// panics rather than silently rewriting committed entries, and that an
// empty append just reports the last index.
func TestLogAppendRefusesCommittedRewrite(t *testing.T) {
	l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 1, 1), noLimit)
	l.commitTo(3)
	if got := l.append(); got != 3 {
		t.Errorf("empty append = %d, want last index 3", got)
	}
	expectPanic(t, "append after 1 with commit 3", func() { l.append(entriesFrom(2, 2)...) })
	if got := l.append(entriesFrom(4, 2)...); got != 4 {
		t.Errorf("append after the commit index = %d, want 4", got)
	}
}

// TestLogFindConflict checks that findConflict returns the first index of
// ents that is missing or differs in term, and 0 when all are present.
func TestLogFindConflict(t *testing.T) {
	// The log is 1:t1 2:t2 3:t3.
	tests := []struct {
		name string
		ents []pb.Entry
		want uint64
	}{
		{"no entries", nil, 0},
		{"all present", entriesFrom(1, 1, 2, 3), 0},
		{"suffix present", entriesFrom(2, 2, 3), 0},
		{"middle present", entriesFrom(2, 2), 0},
		{"present then new", entriesFrom(2, 2, 3, 4, 4), 4},
		{"only new", entriesFrom(4, 4, 4), 4},
		{"conflict at the start", entriesFrom(1, 4, 4), 1},
		{"conflict in the middle", entriesFrom(2, 2, 4, 4), 3},
		{"conflict at the last entry", entriesFrom(3, 5), 3},
	}
	l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 2, 3), noLimit)
	for _, tt := range tests {
		if got := l.findConflict(tt.ents); got != tt.want {
			t.Errorf("%s: findConflict = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestLogFindConflictByTerm checks fast backtracking: the largest index at
// or below the given one whose term is at most the given term, stopping at
// the compaction point with an unknown (zero) term.
func TestLogFindConflictByTerm(t *testing.T) {
	// Snapshot at 3 (term 2), then 4:t2 5:t3 6:t3 7:t5.
	l, _ := newLogOver(t, 3, 2, entriesFrom(4, 2, 3, 3, 5), noLimit)
	tests := []struct {
		index, term         uint64
		wantIndex, wantTerm uint64
	}{
		{7, 5, 7, 5},
		{7, 9, 7, 5},
		{7, 4, 6, 3},
		{7, 3, 6, 3},
		{5, 3, 5, 3},
		{7, 2, 4, 2},
		// Entry 3 is the snapshot boundary; its term (2) is still known.
		{3, 2, 3, 2},
		// Below term 2 we run into the compacted prefix.
		{7, 1, 2, 0},
		{2, 1, 2, 0},
		{0, 1, 0, 0},
	}
	for _, tt := range tests {
		gi, gt := l.findConflictByTerm(tt.index, tt.term)
		if gi != tt.wantIndex || gt != tt.wantTerm {
			t.Errorf("findConflictByTerm(%d, %d) = (%d, %d), want (%d, %d)", tt.index, tt.term, gi, gt, tt.wantIndex, tt.wantTerm)
		}
	}

	// A log that starts at index 1 walks down to (0, 0).
	fresh, _ := newLogOver(t, 0, 0, entriesFrom(1, 3, 3), noLimit)
	if gi, gt := fresh.findConflictByTerm(2, 1); gi != 0 || gt != 0 {
		t.Errorf("fresh log: findConflictByTerm(2, 1) = (%d, %d), want (0, 0)", gi, gt)
	}
}

// TestLogTerm checks term() on every region of the log: compacted,
// the snapshot boundary (one before the first index), storage, unstable,
// and beyond the end; and with a pending unstable snapshot.
func TestLogTerm(t *testing.T) {
	// Snapshot at 3 (term 2), storage 4:t2 5:t3, unstable 6:t4 7:t4.
	l, _ := newLogOver(t, 3, 2, entriesFrom(4, 2, 3), noLimit)
	l.append(entriesFrom(6, 4, 4)...)
	tests := []struct {
		index    uint64
		wantTerm uint64
		wantErr  error
	}{
		{0, 0, ErrCompacted},
		{1, 0, ErrCompacted},
		{2, 0, ErrCompacted},
		{3, 2, nil},
		{4, 2, nil},
		{5, 3, nil},
		{6, 4, nil},
		{7, 4, nil},
		{8, 0, ErrUnavailable},
		{100, 0, ErrUnavailable},
	}
	for _, tt := range tests {
		got, err := l.term(tt.index)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || got != tt.wantTerm {
			t.Errorf("term(%d) = (%d, %v), want (%d, %v)", tt.index, got, err, tt.wantTerm, tt.wantErr)
		}
	}
	if got := l.lastTerm(); got != 4 {
		t.Errorf("lastTerm = %d, want 4", got)
	}
	if !l.matchTerm(5, 3) || l.matchTerm(5, 2) || l.matchTerm(2, 0) {
		t.Error("matchTerm disagrees with term")
	}

	// A pending snapshot at 10 (term 6) hides everything else.
	l.restore(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 10, Term: 6}})
	for _, tt := range []struct {
		index    uint64
		wantTerm uint64
		wantErr  error
	}{
		{5, 0, ErrCompacted},
		{9, 0, ErrCompacted},
		{10, 6, nil},
		{11, 0, ErrUnavailable},
	} {
		got, err := l.term(tt.index)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || got != tt.wantTerm {
			t.Errorf("with pending snapshot: term(%d) = (%d, %v), want (%d, %v)", tt.index, got, err, tt.wantTerm, tt.wantErr)
		}
	}
}

// TestLogIsUpToDate checks the election restriction (Raft §5.4.1): a later
// last term wins regardless of length; with equal terms the longer (or
// equally long) log is up to date.
func TestLogIsUpToDate(t *testing.T) {
	// Last entry is (3, term 2).
	l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 2, 2), noLimit)
	tests := []struct {
		lastIndex, term uint64
		want            bool
	}{
		{1, 3, true},  // higher term, shorter
		{5, 3, true},  // higher term, longer
		{5, 1, false}, // lower term, longer
		{2, 2, false}, // same term, shorter
		{3, 2, true},  // same term, same length
		{4, 2, true},  // same term, longer
	}
	for _, tt := range tests {
		if got := l.isUpToDate(tt.lastIndex, tt.term); got != tt.want {
			t.Errorf("isUpToDate(%d, %d) = %v, want %v", tt.lastIndex, tt.term, got, tt.want)
		}
	}
}

// TestLogMaybeCommitOnlyCurrentTerm checks that a leader commits only by
// counting replicas of an entry of its own term (Raft §5.4.2): an older
// entry, an index beyond the log, or one at or below the commit index does
// not move the commit index.
func TestLogMaybeCommitOnlyCurrentTerm(t *testing.T) {
	// 1:t1 2:t1 3:t2; the current term is 2.
	l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 1, 2), noLimit)
	steps := []struct {
		maxIndex, term uint64
		want           bool
		wantCommit     uint64
	}{
		{2, 2, false, 0}, // entry 2 is of term 1
		{5, 2, false, 0}, // beyond the log
		{3, 1, false, 0}, // wrong current term for entry 3
		{3, 2, true, 3},  // commits 3, and 1..2 with it
		{3, 2, false, 3}, // nothing new
		{2, 1, false, 3}, // never backwards
	}
	for i, s := range steps {
		if got := l.maybeCommit(s.maxIndex, s.term); got != s.want || l.committed != s.wantCommit {
			t.Errorf("step %d: maybeCommit(%d, %d) = %v with commit %d, want %v with commit %d",
				i, s.maxIndex, s.term, got, l.committed, s.want, s.wantCommit)
		}
	}
}

// TestLogCommitToClamps checks that commitTo never moves the commit index
// backwards and clamps (instead of panicking) a commit index beyond the
// last index.
func TestLogCommitToClamps(t *testing.T) {
	l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 1, 1), noLimit)
	l.commitTo(10)
	if l.committed != 3 {
		t.Fatalf("commitTo(10) on a 3-entry log: committed = %d, want 3", l.committed)
	}
	l.commitTo(2)
	if l.committed != 3 {
		t.Errorf("commitTo(2) moved the commit index back to %d", l.committed)
	}
	l.commitTo(7)
	if l.committed != 3 {
		t.Errorf("second clamped commitTo: committed = %d, want 3", l.committed)
	}

	empty, _ := newLogOver(t, 0, 0, nil, noLimit)
	empty.commitTo(5)
	if empty.committed != 0 {
		t.Errorf("commitTo(5) on an empty log: committed = %d, want 0", empty.committed)
	}
}

// TestLogNextCommittedEntsOnlyDurable checks that committed entries still in
// the unstable log (not yet persisted) are not handed out for applying
// until stableTo reports them durable, that entries handed out are not
// handed out again, and that hasNextCommittedEnts agrees.
func TestLogNextCommittedEntsOnlyDurable(t *testing.T) {
	l, st := newLogOver(t, 0, 0, entriesFrom(1, 1, 1), noLimit)
	l.append(entriesFrom(3, 1, 1, 1)...)
	l.commitTo(5)

	if !l.hasNextCommittedEnts() {
		t.Fatal("durable committed entries 1..2 are not reported")
	}
	if got := indexes(l.nextCommittedEnts()); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("nextCommittedEnts = %v, want [1 2] (3..5 are not durable)", got)
	}
	l.acceptApplying(2)
	if l.hasNextCommittedEnts() || l.nextCommittedEnts() != nil {
		t.Fatal("entries handed out again, or non-durable ones handed out")
	}

	// The application takes 3..5 for persistence and persists 3..4 only.
	toPersist := l.nextUnstableEnts()
	if got := indexes(toPersist); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Fatalf("nextUnstableEnts = %v, want [3 4 5]", got)
	}
	l.acceptUnstable()
	if l.hasNextUnstableEnts() {
		t.Fatal("unstable entries handed out twice")
	}
	if err := st.Append(toPersist[:2]); err != nil {
		t.Fatal(err)
	}
	if !l.stableTo(4, 1) {
		t.Fatal("stableTo(4, 1) refused")
	}
	if got := indexes(l.nextCommittedEnts()); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("after persisting 3..4: nextCommittedEnts = %v, want [3 4]", got)
	}
	l.acceptApplying(4)

	if err := st.Append(toPersist[2:]); err != nil {
		t.Fatal(err)
	}
	l.stableTo(5, 1)
	if got := indexes(l.nextCommittedEnts()); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("after persisting 5: nextCommittedEnts = %v, want [5]", got)
	}
}

// TestLogNextCommittedEntsSizeLimit checks that nextCommittedEnts respects
// maxApplyingEntsSize, yet always returns at least one entry even if that
// entry alone is larger.
func TestLogNextCommittedEntsSizeLimit(t *testing.T) {
	// Five entries of 4 bytes; at most 10 bytes per batch.
	l, st := newLogOver(t, 0, 0, sizedEntries(1, 1, 5, 4), 10)
	l.commitTo(5)
	var batches [][]uint64
	for l.hasNextCommittedEnts() {
		ents := l.nextCommittedEnts()
		batches = append(batches, indexes(ents))
		l.acceptApplying(ents[len(ents)-1].Index)
	}
	want := [][]uint64{{1, 2}, {3, 4}, {5}}
	if !reflect.DeepEqual(batches, want) {
		t.Errorf("batches = %v, want %v", batches, want)
	}

	// A single 50-byte entry still goes out alone.
	big := sizedEntries(6, 1, 2, 50)
	l.append(big...)
	l.acceptUnstable()
	if err := st.Append(big); err != nil {
		t.Fatal(err)
	}
	l.stableTo(7, 1)
	l.commitTo(7)
	if got := indexes(l.nextCommittedEnts()); !slices.Equal(got, []uint64{6}) {
		t.Errorf("oversized entries: nextCommittedEnts = %v, want [6]", got)
	}
}

// TestLogAcceptApplyingAndAppliedTo checks the applying/applied
// bookkeeping: acceptApplying never goes backwards, appliedTo raises
// applying with it, appliedTo(0) is ignored, and appliedTo outside
// [applied, committed] panics.
func TestLogAcceptApplyingAndAppliedTo(t *testing.T) {
	l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 1, 1, 1, 1), noLimit)
	l.commitTo(4)

	l.acceptApplying(3)
	l.acceptApplying(2)
	if l.applying != 3 {
		t.Errorf("applying = %d after acceptApplying(3), (2); want 3", l.applying)
	}
	l.appliedTo(2)
	if l.applied != 2 || l.applying != 3 {
		t.Errorf("after appliedTo(2): applied %d applying %d, want 2 and 3", l.applied, l.applying)
	}
	l.appliedTo(4)
	if l.applied != 4 || l.applying != 4 {
		t.Errorf("after appliedTo(4): applied %d applying %d, want 4 and 4", l.applied, l.applying)
	}
	l.appliedTo(0)
	if l.applied != 4 {
		t.Errorf("appliedTo(0) changed applied to %d", l.applied)
	}
	if got := indexes(l.nextCommittedEnts()); got != nil {
		t.Errorf("everything committed is applied, yet nextCommittedEnts = %v", got)
	}
	expectPanic(t, "appliedTo beyond commit", func() { l.appliedTo(5) })
	expectPanic(t, "appliedTo backwards", func() { l.appliedTo(3) })
}

// TestLogRestoreThenStableSnapTo checks a snapshot's way through the log:
// restore makes it the whole log (first, last, committed, term at its
// index) and blocks committed entries until it is durable; entries appended
// after it stay unstable; stableSnapTo with a different index is ignored;
// once it and the entries are durable, the entries are handed out.
func TestLogRestoreThenStableSnapTo(t *testing.T) {
	l, st := newLogOver(t, 0, 0, entriesFrom(1, 1, 1, 1), noLimit)
	l.commitTo(2)
	snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 10, Term: 4}, Data: []byte("state")}
	l.restore(snap)

	if f, last, c := l.firstIndex(), l.lastIndex(), l.committed; f != 11 || last != 10 || c != 10 {
		t.Fatalf("after restore: first %d last %d committed %d, want 11 10 10", f, last, c)
	}
	if l.lastTerm() != 4 {
		t.Errorf("lastTerm = %d, want 4", l.lastTerm())
	}
	if s := l.nextSnapshot(); s == nil || s.Metadata.Index != 10 {
		t.Fatalf("nextSnapshot = %v, want the snapshot at 10", s)
	}
	if got, err := l.snapshot(); err != nil || got.Metadata.Index != 10 || string(got.Data) != "state" {
		t.Errorf("snapshot() = (%+v, %v), want the pending snapshot", got, err)
	}
	if l.stableIndex() != 0 || l.hasNextCommittedEnts() || l.nextUnstableEnts() != nil {
		t.Error("a pending snapshot must block committed entries and have no unstable entries")
	}

	// Entries after the snapshot arrive before it is persisted.
	l.append(entriesFrom(11, 4, 4)...)
	l.commitTo(12)
	if l.hasNextCommittedEnts() {
		t.Error("entries after a pending snapshot handed out before it")
	}
	l.acceptUnstable()
	if l.nextSnapshot() != nil || !l.hasNextOrInProgressSnapshot() {
		t.Error("a snapshot handed out must not be handed out again, but is still in progress")
	}

	if l.stableSnapTo(9) {
		t.Error("stableSnapTo(9) accepted for a snapshot at 10")
	}
	if err := st.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if !l.stableSnapTo(10) {
		t.Fatal("stableSnapTo(10) refused")
	}
	if l.hasNextOrInProgressSnapshot() || l.stableSnapTo(10) {
		t.Error("snapshot still pending after stableSnapTo")
	}
	// Advance marks the snapshot applied together with stableSnapTo.
	l.appliedTo(10)
	if got, err := l.term(10); err != nil || got != 4 {
		t.Errorf("term(10) from storage = (%d, %v), want (4, nil)", got, err)
	}
	if got, err := l.snapshot(); err != nil || got.Metadata.Index != 10 {
		t.Errorf("snapshot() from storage = (%+v, %v), want index 10", got.Metadata, err)
	}
	if l.hasNextCommittedEnts() {
		t.Error("committed entries 11..12 handed out before they are durable")
	}
	if err := st.Append(entriesFrom(11, 4, 4)); err != nil {
		t.Fatal(err)
	}
	l.stableTo(12, 4)
	if got := indexes(l.nextCommittedEnts()); !slices.Equal(got, []uint64{11, 12}) {
		t.Errorf("nextCommittedEnts = %v, want [11 12]", got)
	}
}

// TestLogSlice checks slice() across the storage/unstable boundary: errors
// for compacted ranges, correct contents in every region, size limits that
// stop in storage or in unstable, and at least one entry even when the
// first alone exceeds the limit.
func TestLogSlice(t *testing.T) {
	// Snapshot at 2; storage 3..5, unstable 6..8; every entry 10 bytes.
	l, _ := newLogOver(t, 2, 1, sizedEntries(3, 1, 3, 10), noLimit)
	l.append(sizedEntries(6, 2, 3, 10)...)

	tests := []struct {
		name    string
		lo, hi  uint64
		maxSize uint64
		want    []uint64
		wantErr error
	}{
		{"compacted", 1, 4, noLimit, nil, ErrCompacted},
		{"snapshot index itself", 2, 4, noLimit, nil, ErrCompacted},
		{"empty range", 5, 5, noLimit, nil, nil},
		{"storage only", 3, 6, noLimit, []uint64{3, 4, 5}, nil},
		{"unstable only", 6, 9, noLimit, []uint64{6, 7, 8}, nil},
		{"across the boundary", 4, 8, noLimit, []uint64{4, 5, 6, 7}, nil},
		{"whole log", 3, 9, noLimit, []uint64{3, 4, 5, 6, 7, 8}, nil},
		{"limit stops in storage", 3, 9, 25, []uint64{3, 4}, nil},
		{"limit exactly at the boundary", 3, 9, 30, []uint64{3, 4, 5}, nil},
		{"limit stops in unstable", 4, 9, 35, []uint64{4, 5, 6}, nil},
		{"limit in unstable only", 6, 9, 20, []uint64{6, 7}, nil},
		{"zero limit in storage", 3, 9, 0, []uint64{3}, nil},
		{"zero limit in unstable", 7, 9, 0, []uint64{7}, nil},
		{"limit smaller than one entry", 5, 9, 1, []uint64{5}, nil},
	}
	for _, tt := range tests {
		got, err := l.slice(tt.lo, tt.hi, tt.maxSize)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s: slice(%d, %d, %d) error %v, want %v", tt.name, tt.lo, tt.hi, tt.maxSize, err, tt.wantErr)
			continue
		}
		if !slices.Equal(indexes(got), tt.want) {
			t.Errorf("%s: slice(%d, %d, %d) = %v, want %v", tt.name, tt.lo, tt.hi, tt.maxSize, indexes(got), tt.want)
		}
	}

	if got, err := l.entries(9, noLimit); err != nil || got != nil {
		t.Errorf("entries(9) past the end = (%v, %v), want nothing", got, err)
	}
	if got, err := l.entries(7, noLimit); err != nil || !slices.Equal(indexes(got), []uint64{7, 8}) {
		t.Errorf("entries(7) = (%v, %v), want [7 8]", indexes(got), err)
	}
	expectPanic(t, "slice beyond the last index", func() { _, _ = l.slice(6, 10, noLimit) })
	expectPanic(t, "inverted slice", func() { _, _ = l.slice(6, 5, noLimit) })
}

// TestLogSliceDoesNotAliasLog checks that appending to a slice returned by
// slice() cannot overwrite the log: the unstable part comes back with its
// capacity capped, and a slice spanning storage and unstable is a fresh
// array.
func TestLogSliceDoesNotAliasLog(t *testing.T) {
	l, _ := newLogOver(t, 0, 0, entriesFrom(1, 1, 1), noLimit)
	// Leave spare capacity in the unstable array so that an uncapped slice
	// would be overwritten in place.
	l.unstable.entries = make([]pb.Entry, 0, 16)
	l.append(entriesFrom(3, 2, 2, 2)...)

	unst, err := l.slice(3, 5, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	if cap(unst) != len(unst) {
		t.Errorf("unstable slice has cap %d > len %d", cap(unst), len(unst))
	}
	_ = append(unst, pb.Entry{Index: 99, Term: 99})
	if got, _ := l.term(5); got != 2 {
		t.Errorf("appending to a returned slice changed entry 5 to term %d", got)
	}

	mixed, err := l.slice(1, 4, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	mixed[2].Term = 42
	if got, _ := l.term(3); got != 2 {
		t.Errorf("writing into a storage+unstable slice changed entry 3 to term %d", got)
	}
}

// TestUnstableTruncateAndAppend covers the three cases of truncateAndAppend:
// appending right after the last entry, replacing everything (starting at
// or before the offset), and truncating in the middle; including how far
// offsetInProgress is pulled back.
func TestUnstableTruncateAndAppend(t *testing.T) {
	tests := []struct {
		name                   string
		ents                   []pb.Entry
		wantOffset             uint64
		wantInProgress         uint64
		wantIndexes, wantTerms []uint64
	}{
		{"append after the last entry", entriesFrom(8, 2, 2),
			5, 7, []uint64{5, 6, 7, 8, 9}, []uint64{1, 1, 1, 2, 2}},
		{"replace from the offset", entriesFrom(5, 2, 2),
			5, 5, []uint64{5, 6}, []uint64{2, 2}},
		{"replace from before the offset", entriesFrom(3, 2, 2, 2, 2),
			3, 3, []uint64{3, 4, 5, 6}, []uint64{2, 2, 2, 2}},
		{"truncate after the in-progress point", entriesFrom(7, 2),
			5, 7, []uint64{5, 6, 7}, []uint64{1, 1, 2}},
		{"truncate before the in-progress point", entriesFrom(6, 2, 2, 2),
			5, 6, []uint64{5, 6, 7, 8}, []uint64{1, 2, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 5:t1 6:t1 7:t1, with 5..6 handed out for persistence.
			u := unstable{entries: entriesFrom(5, 1, 1, 1), offset: 5, offsetInProgress: 7}
			u.truncateAndAppend(tt.ents)
			if u.offset != tt.wantOffset || u.offsetInProgress != tt.wantInProgress {
				t.Errorf("offset %d inProgress %d, want %d %d", u.offset, u.offsetInProgress, tt.wantOffset, tt.wantInProgress)
			}
			var terms []uint64
			for _, e := range u.entries {
				terms = append(terms, e.Term)
			}
			if got := indexes(u.entries); !slices.Equal(got, tt.wantIndexes) || !slices.Equal(terms, tt.wantTerms) {
				t.Errorf("entries %v terms %v, want %v %v", got, terms, tt.wantIndexes, tt.wantTerms)
			}
		})
	}
}

// TestUnstableTruncateAndAppendKeepsHandedOutEntries checks aliasing
// safety: entries returned by nextEntries (being persisted by the
// application) keep their contents when a later truncateAndAppend replaces
// them, in every case, even when the unstable array has spare capacity;
// and unstable does not alias the caller's slice either.
func TestUnstableTruncateAndAppendKeepsHandedOutEntries(t *testing.T) {
	for _, tc := range []struct {
		name string
		from uint64
	}{
		{"truncate in the middle", 6},
		{"replace from the offset", 5},
		{"replace from before the offset", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backing := make([]pb.Entry, 0, 32)
			u := unstable{entries: append(backing, entriesFrom(5, 1, 1, 1)...), offset: 5, offsetInProgress: 5}
			handed := u.nextEntries()
			want := slices.Clone(handed)
			u.acceptInProgress()

			repl := []pb.Entry{{Index: tc.from, Term: 9, Data: []byte("new")}, {Index: tc.from + 1, Term: 9}}
			u.truncateAndAppend(repl)
			// Appending right after the replacement must not reach the
			// handed-out array either.
			u.truncateAndAppend([]pb.Entry{{Index: tc.from + 2, Term: 9}, {Index: tc.from + 3, Term: 9}})
			if !reflect.DeepEqual(handed, want) {
				t.Errorf("handed-out entries changed: %+v, want %+v", handed, want)
			}
			if got, _ := u.maybeTerm(tc.from); got != 9 {
				t.Errorf("entry %d has term %d after replacement, want 9", tc.from, got)
			}
			if next := u.nextEntries(); len(next) == 0 || next[0].Index > tc.from {
				t.Errorf("replaced entries not offered for persistence again: next = %v", indexes(next))
			}

			// The caller reusing its slice must not change the log.
			repl[0].Term = 77
			if got, _ := u.maybeTerm(tc.from); got != 9 {
				t.Errorf("caller's slice is aliased: entry %d now has term %d", tc.from, got)
			}
		})
	}
}

// TestUnstableStableTo checks that stableTo drops entries up to a matching
// (index, term) and advances offset and offsetInProgress, and ignores a
// mismatched term (the entry was replaced after being handed out), an index
// before the offset or one beyond the last entry.
func TestUnstableStableTo(t *testing.T) {
	snap := &pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 4, Term: 1}}
	tests := []struct {
		name           string
		snap           *pb.Snapshot
		index, term    uint64
		want           bool
		wantOffset     uint64
		wantInProgress uint64
		wantLen        int
	}{
		{"matching middle entry", nil, 6, 2, true, 7, 7, 2},
		{"matching last entry", nil, 8, 3, true, 9, 9, 0},
		{"matching first entry", nil, 5, 2, true, 6, 6, 3},
		{"mismatched term", nil, 6, 1, false, 5, 6, 4},
		{"beyond the last entry", nil, 9, 3, false, 5, 6, 4},
		{"before the offset", nil, 4, 1, false, 5, 6, 4},
		{"pending snapshot index", snap, 4, 1, false, 5, 6, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// 5:t2 6:t2 7:t3 8:t3, with 5 handed out.
			u := unstable{snapshot: tt.snap, entries: entriesFrom(5, 2, 2, 3, 3), offset: 5, offsetInProgress: 6}
			if got := u.stableTo(tt.index, tt.term); got != tt.want {
				t.Errorf("stableTo(%d, %d) = %v, want %v", tt.index, tt.term, got, tt.want)
			}
			if u.offset != tt.wantOffset || u.offsetInProgress != tt.wantInProgress || len(u.entries) != tt.wantLen {
				t.Errorf("offset %d inProgress %d len %d, want %d %d %d",
					u.offset, u.offsetInProgress, len(u.entries), tt.wantOffset, tt.wantInProgress, tt.wantLen)
			}
			if tt.wantLen == 0 && u.entries != nil {
				t.Error("an emptied entries array is still held")
			}
		})
	}
}

// TestUnstableShrinkEntriesArray checks that the backing array is released
// when it is empty, replaced by a right-sized copy when less than half of it
// is used, and otherwise kept.
func TestUnstableShrinkEntriesArray(t *testing.T) {
	u := unstable{entries: make([]pb.Entry, 0, 8)}
	u.shrinkEntriesArray()
	if u.entries != nil {
		t.Errorf("empty entries kept with cap %d", cap(u.entries))
	}

	big := make([]pb.Entry, 3, 8)
	copy(big, entriesFrom(1, 1, 2, 3))
	u = unstable{entries: big}
	u.shrinkEntriesArray()
	if cap(u.entries) > 2*len(u.entries) || !slices.Equal(indexes(u.entries), []uint64{1, 2, 3}) {
		t.Errorf("3 of 8 used: cap %d entries %v, want a right-sized copy of [1 2 3]", cap(u.entries), indexes(u.entries))
	}
	if &u.entries[0] == &big[0] {
		t.Error("3 of 8 used: array not replaced")
	}

	half := make([]pb.Entry, 4, 8)
	u = unstable{entries: half}
	u.shrinkEntriesArray()
	if cap(u.entries) != 8 || &u.entries[0] != &half[0] {
		t.Errorf("4 of 8 used: array replaced (cap %d), want it kept", cap(u.entries))
	}

	// stableTo shrinks when what is left uses little of a grown array.
	grown := make([]pb.Entry, 4, 16)
	copy(grown, entriesFrom(1, 1, 1, 1, 1))
	u = unstable{entries: grown, offset: 1, offsetInProgress: 1}
	u.stableTo(1, 1)
	if len(u.entries) != 3 || cap(u.entries) > 2*len(u.entries) || &u.entries[0] == &grown[1] {
		t.Errorf("after stableTo(1) of 4 in a 16-entry array: len %d cap %d, want 3 in a right-sized copy", len(u.entries), cap(u.entries))
	}
}

// TestUnstableSnapshotBookkeeping checks the snapshot side of unstable:
// maybeFirstIndex/maybeLastIndex/maybeTerm with and without a snapshot,
// nextSnapshot until acceptInProgress, and stableSnapTo only for the
// matching index.
func TestUnstableSnapshotBookkeeping(t *testing.T) {
	var u unstable
	if _, ok := u.maybeFirstIndex(); ok {
		t.Error("maybeFirstIndex without a snapshot")
	}
	if _, ok := u.maybeLastIndex(); ok {
		t.Error("maybeLastIndex of an empty unstable")
	}
	if u.nextSnapshot() != nil || u.stableSnapTo(0) {
		t.Error("snapshot reported without one")
	}

	u.offset, u.offsetInProgress = 3, 3
	u.truncateAndAppend(entriesFrom(3, 1, 1))
	u.restore(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 7, Term: 3}})
	if len(u.entries) != 0 || u.offset != 8 || u.offsetInProgress != 8 {
		t.Errorf("restore kept entries %v offset %d inProgress %d", indexes(u.entries), u.offset, u.offsetInProgress)
	}
	if i, ok := u.maybeFirstIndex(); !ok || i != 8 {
		t.Errorf("maybeFirstIndex = (%d, %v), want (8, true)", i, ok)
	}
	if i, ok := u.maybeLastIndex(); !ok || i != 7 {
		t.Errorf("maybeLastIndex = (%d, %v), want (7, true)", i, ok)
	}
	if tm, ok := u.maybeTerm(7); !ok || tm != 3 {
		t.Errorf("maybeTerm(7) = (%d, %v), want (3, true)", tm, ok)
	}
	if _, ok := u.maybeTerm(6); ok {
		t.Error("maybeTerm(6) known below a snapshot at 7")
	}
	if _, ok := u.maybeTerm(8); ok {
		t.Error("maybeTerm(8) known past the snapshot with no entries")
	}
	u.truncateAndAppend(entriesFrom(8, 3))
	if i, ok := u.maybeLastIndex(); !ok || i != 8 {
		t.Errorf("maybeLastIndex with an entry after the snapshot = (%d, %v), want (8, true)", i, ok)
	}

	if u.nextSnapshot() == nil {
		t.Fatal("nextSnapshot nil before it was handed out")
	}
	u.acceptInProgress()
	if u.nextSnapshot() != nil || u.nextEntries() != nil {
		t.Error("snapshot or entries offered again after acceptInProgress")
	}
	if u.stableSnapTo(6) || u.snapshot == nil {
		t.Error("stableSnapTo(6) accepted for a snapshot at 7")
	}
	if !u.stableSnapTo(7) || u.snapshot != nil || u.snapshotInProgress {
		t.Error("stableSnapTo(7) did not clear the snapshot")
	}
}

// TestUnstableSliceBounds checks that unstable.slice returns exactly the
// requested entries with capped capacity and panics outside what it holds.
func TestUnstableSliceBounds(t *testing.T) {
	u := unstable{entries: entriesFrom(5, 1, 2, 3), offset: 5, offsetInProgress: 5}
	got := u.slice(6, 8)
	if !slices.Equal(indexes(got), []uint64{6, 7}) || cap(got) != 2 {
		t.Errorf("slice(6, 8) = %v with cap %d, want [6 7] with cap 2", indexes(got), cap(got))
	}
	expectPanic(t, "slice below the offset", func() { u.slice(4, 6) })
	expectPanic(t, "slice past the end", func() { u.slice(6, 9) })
	expectPanic(t, "inverted slice", func() { u.slice(7, 6) })
}

// failingStorage is a Storage whose index queries fail, to check that
// newLog reports storage errors instead of building a broken log.
type failingStorage struct {
	*MemoryStorage
	firstErr, lastErr error
}

func (s failingStorage) FirstIndex() (uint64, error) {
	if s.firstErr != nil {
		return 0, s.firstErr
	}
	return s.MemoryStorage.FirstIndex()
}

func (s failingStorage) LastIndex() (uint64, error) {
	if s.lastErr != nil {
		return 0, s.lastErr
	}
	return s.MemoryStorage.LastIndex()
}

// TestNewLogStorageErrors checks that newLog wraps FirstIndex and LastIndex
// failures, and that a fresh log over empty storage starts at index 1 with
// nothing committed or applied.
func TestNewLogStorageErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, st := range []failingStorage{
		{MemoryStorage: NewMemoryStorage(), firstErr: boom},
		{MemoryStorage: NewMemoryStorage(), lastErr: boom},
	} {
		if _, err := newLog(st, discardLogger(), noLimit); !errors.Is(err, boom) {
			t.Errorf("newLog error = %v, want it to wrap %v", err, boom)
		}
	}

	l, err := newLog(NewMemoryStorage(), discardLogger(), noLimit)
	if err != nil {
		t.Fatal(err)
	}
	if l.firstIndex() != 1 || l.lastIndex() != 0 || l.committed != 0 || l.applied != 0 || l.applying != 0 {
		t.Errorf("fresh log: first %d last %d committed %d applied %d applying %d, want 1 0 0 0 0",
			l.firstIndex(), l.lastIndex(), l.committed, l.applied, l.applying)
	}
	if l.lastTerm() != 0 {
		t.Errorf("fresh log lastTerm = %d, want 0", l.lastTerm())
	}
}

// TestAppendInvariants checks that, with invariant checks on (-race or
// -tags invariants), an append that would break the log's shape panics
// instead of corrupting it.
func TestAppendInvariants(t *testing.T) {
	if !invariants.Enabled {
		t.Skip("invariant checks are off: build with -race or -tags invariants")
	}
	for _, tt := range []struct {
		name string
		ents []pb.Entry
		want string
	}{
		{"gap", []pb.Entry{{Index: 5, Term: 2}}, "gap"},
		{"not consecutive", []pb.Entry{{Index: 3, Term: 2}, {Index: 5, Term: 2}}, "want 4"},
		{"term going back", []pb.Entry{{Index: 3, Term: 2}, {Index: 4, Term: 1}}, "after term 2"},
		{"below the previous entry's term", []pb.Entry{{Index: 3, Term: 1}}, "after term 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLogOver(t, 0, 0, []pb.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 2}}, noLimit)
			defer func() {
				r, _ := recover().(string)
				if !strings.Contains(r, "invariant violated") || !strings.Contains(r, tt.want) {
					t.Fatalf("panic %q, want an invariant violation about %q", r, tt.want)
				}
			}()
			l.append(tt.ents...)
		})
	}
}

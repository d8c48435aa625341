package raft

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// newStorageWith returns a MemoryStorage whose log is a snapshot at
// (snapIndex, snapTerm) followed by ents.
func newStorageWith(t *testing.T, snapIndex, snapTerm uint64, ents []pb.Entry) *MemoryStorage {
	t.Helper()
	st := NewMemoryStorage()
	if snapIndex > 0 {
		snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: snapIndex, Term: snapTerm, ConfState: pb.ConfState{Voters: []uint64{1}}}}
		if err := st.ApplySnapshot(snap); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Append(ents); err != nil {
		t.Fatal(err)
	}
	return st
}

// storedEntries returns every entry st holds.
func storedEntries(t *testing.T, st *MemoryStorage) []pb.Entry {
	t.Helper()
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	ents, err := st.Entries(first, last+1, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

// TestMemoryStorageEntries checks Entries: ErrCompacted at or below the
// snapshot index, ErrUnavailable past the end, empty ranges, and the size
// limit (which still returns at least one entry).
func TestMemoryStorageEntries(t *testing.T) {
	// Snapshot at 3; entries 4..6, 10 bytes each.
	st := newStorageWith(t, 3, 3, sizedEntries(4, 4, 3, 10))
	tests := []struct {
		name    string
		lo, hi  uint64
		maxSize uint64
		want    []uint64
		wantErr error
	}{
		{"below the snapshot", 2, 5, noLimit, nil, ErrCompacted},
		{"at the snapshot index", 3, 5, noLimit, nil, ErrCompacted},
		{"past the end", 4, 8, noLimit, nil, ErrUnavailable},
		{"empty range", 5, 5, noLimit, nil, nil},
		{"one entry", 4, 5, noLimit, []uint64{4}, nil},
		{"everything", 4, 7, noLimit, []uint64{4, 5, 6}, nil},
		{"suffix", 5, 7, noLimit, []uint64{5, 6}, nil},
		{"limit of two entries", 4, 7, 20, []uint64{4, 5}, nil},
		{"limit just under two entries", 4, 7, 19, []uint64{4}, nil},
		{"limit under one entry", 4, 7, 1, []uint64{4}, nil},
		{"zero limit", 5, 7, 0, []uint64{5}, nil},
		{"limit covering everything", 4, 7, 30, []uint64{4, 5, 6}, nil},
	}
	for _, tt := range tests {
		got, err := st.Entries(tt.lo, tt.hi, tt.maxSize)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s: Entries(%d, %d, %d) error %v, want %v", tt.name, tt.lo, tt.hi, tt.maxSize, err, tt.wantErr)
			continue
		}
		if !slices.Equal(indexes(got), tt.want) {
			t.Errorf("%s: Entries(%d, %d, %d) = %v, want %v", tt.name, tt.lo, tt.hi, tt.maxSize, indexes(got), tt.want)
		}
	}
}

// TestMemoryStorageEntriesCapacityCapped checks that the slice returned by
// Entries has its capacity capped, so that a caller appending to it gets a
// copy instead of overwriting the storage's later entries.
func TestMemoryStorageEntriesCapacityCapped(t *testing.T) {
	st := newStorageWith(t, 0, 0, entriesFrom(1, 1, 1, 1, 1))
	got, err := st.Entries(1, 3, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	if cap(got) != len(got) {
		t.Errorf("Entries returned len %d cap %d; cap must equal len", len(got), cap(got))
	}
	_ = append(got, pb.Entry{Index: 3, Term: 99})
	if term, _ := st.Term(3); term != 1 {
		t.Errorf("appending to a returned slice overwrote entry 3 (term %d)", term)
	}

	// The same holds when the size limit cuts the range short.
	limited, err := newStorageWith(t, 0, 0, sizedEntries(1, 1, 3, 8)).Entries(1, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(limited) != 1 || cap(limited) != 1 {
		t.Errorf("size-limited Entries: len %d cap %d, want 1 and 1", len(limited), cap(limited))
	}
}

// TestMemoryStorageTerm checks Term on the compacted prefix, the snapshot
// boundary (still known), stored entries and past the end.
func TestMemoryStorageTerm(t *testing.T) {
	st := newStorageWith(t, 3, 2, entriesFrom(4, 3, 4))
	tests := []struct {
		index   uint64
		want    uint64
		wantErr error
	}{
		{1, 0, ErrCompacted},
		{2, 0, ErrCompacted},
		{3, 2, nil},
		{4, 3, nil},
		{5, 4, nil},
		{6, 0, ErrUnavailable},
	}
	for _, tt := range tests {
		got, err := st.Term(tt.index)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || got != tt.want {
			t.Errorf("Term(%d) = (%d, %v), want (%d, %v)", tt.index, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestMemoryStorageFirstLastIndex checks First/LastIndex on empty storage,
// after appends, after a compaction and after a snapshot.
func TestMemoryStorageFirstLastIndex(t *testing.T) {
	st := NewMemoryStorage()
	check := func(when string, wantFirst, wantLast uint64) {
		t.Helper()
		first, err1 := st.FirstIndex()
		last, err2 := st.LastIndex()
		if err1 != nil || err2 != nil || first != wantFirst || last != wantLast {
			t.Errorf("%s: first %d last %d (errors %v, %v), want %d %d", when, first, last, err1, err2, wantFirst, wantLast)
		}
	}
	check("empty", 1, 0)
	if err := st.Append(entriesFrom(1, 1, 1, 2, 2)); err != nil {
		t.Fatal(err)
	}
	check("after appending 1..4", 1, 4)
	if err := st.Compact(2); err != nil {
		t.Fatal(err)
	}
	check("after compacting to 2", 3, 4)
	if err := st.ApplySnapshot(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 9, Term: 3}}); err != nil {
		t.Fatal(err)
	}
	check("after a snapshot at 9", 10, 9)
}

// TestMemoryStorageApplySnapshot checks that ApplySnapshot replaces the
// whole log and the configuration, and refuses a snapshot that is not
// newer than the current one with ErrSnapOutOfDate.
func TestMemoryStorageApplySnapshot(t *testing.T) {
	st := newStorageWith(t, 0, 0, entriesFrom(1, 1, 1, 1))
	cs := pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	snap := pb.Snapshot{Data: []byte("s"), Metadata: pb.SnapshotMetadata{Index: 5, Term: 2, ConfState: cs}}
	if err := st.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Snapshot(); !reflect.DeepEqual(got, snap) {
		t.Errorf("Snapshot() = %+v, want %+v", got, snap)
	}
	if _, gotCS, _ := st.InitialState(); !reflect.DeepEqual(gotCS, cs) {
		t.Errorf("InitialState conf state = %+v, want %+v", gotCS, cs)
	}
	if term, err := st.Term(5); err != nil || term != 2 {
		t.Errorf("Term(5) = (%d, %v), want (2, nil)", term, err)
	}
	if _, err := st.Term(3); !errors.Is(err, ErrCompacted) {
		t.Errorf("Term(3) error %v, want ErrCompacted: the old log must be gone", err)
	}

	for _, idx := range []uint64{5, 4} {
		older := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: idx, Term: 2}}
		if err := st.ApplySnapshot(older); !errors.Is(err, ErrSnapOutOfDate) {
			t.Errorf("ApplySnapshot at %d over one at 5: error %v, want ErrSnapOutOfDate", idx, err)
		}
	}
	if got, _ := st.Snapshot(); got.Metadata.Index != 5 {
		t.Errorf("a refused snapshot replaced the stored one (index %d)", got.Metadata.Index)
	}
}

// TestMemoryStorageCreateSnapshot checks CreateSnapshot: it records the
// index, that entry's term, the given configuration (kept when nil) and the
// data; it refuses an index beyond the last one and one not newer than the
// current snapshot.
func TestMemoryStorageCreateSnapshot(t *testing.T) {
	st := newStorageWith(t, 3, 1, entriesFrom(4, 1, 2, 2))
	cs := &pb.ConfState{Voters: []uint64{1, 2}}
	snap, err := st.CreateSnapshot(5, cs, []byte("at5"))
	if err != nil {
		t.Fatal(err)
	}
	if snap.Metadata.Index != 5 || snap.Metadata.Term != 2 || string(snap.Data) != "at5" || !reflect.DeepEqual(snap.Metadata.ConfState, *cs) {
		t.Errorf("CreateSnapshot(5) = %+v, want index 5 term 2 data at5 conf %+v", snap, *cs)
	}
	if got, _ := st.Snapshot(); !reflect.DeepEqual(got, snap) {
		t.Errorf("Snapshot() = %+v, want the created one %+v", got, snap)
	}
	// CreateSnapshot does not compact by itself.
	if first, _ := st.FirstIndex(); first != 4 {
		t.Errorf("FirstIndex after CreateSnapshot = %d, want 4 (unchanged)", first)
	}

	// A nil configuration keeps the previous one.
	snap, err = st.CreateSnapshot(6, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(snap.Metadata.ConfState, *cs) {
		t.Errorf("CreateSnapshot with nil conf state: %+v, want the previous %+v", snap.Metadata.ConfState, *cs)
	}

	if _, err := st.CreateSnapshot(7, nil, nil); err == nil || errors.Is(err, ErrSnapOutOfDate) {
		t.Errorf("CreateSnapshot beyond the last index: error %v, want a range error", err)
	}
	for _, idx := range []uint64{6, 5, 3} {
		if _, err := st.CreateSnapshot(idx, nil, nil); !errors.Is(err, ErrSnapOutOfDate) {
			t.Errorf("CreateSnapshot(%d) after one at 6: error %v, want ErrSnapOutOfDate", idx, err)
		}
	}
}

// TestMemoryStorageCreateSnapshotBelowCompaction checks that CreateSnapshot
// at an index newer than the snapshot but already compacted away returns
// ErrCompacted (it used to index the entries array with an underflowed
// offset and panic), while the compaction boundary itself still works.
func TestMemoryStorageCreateSnapshotBelowCompaction(t *testing.T) {
	st := newStorageWith(t, 0, 0, entriesFrom(1, 1, 1, 2, 2, 3))
	if err := st.Compact(4); err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint64{1, 3} {
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("CreateSnapshot(%d) below the compaction point panicked: %v", idx, p)
				}
			}()
			_, err = st.CreateSnapshot(idx, nil, nil)
		}()
		if !errors.Is(err, ErrCompacted) {
			t.Errorf("CreateSnapshot(%d) below the compaction point: error %v, want ErrCompacted", idx, err)
		}
	}
	snap, err := st.CreateSnapshot(4, nil, nil)
	if err != nil || snap.Metadata.Index != 4 || snap.Metadata.Term != 2 {
		t.Errorf("CreateSnapshot(4) at the boundary = (%+v, %v), want index 4 term 2", snap.Metadata, err)
	}
}

// TestMemoryStorageCompact checks Compact: entries before the index are
// dropped and the entry at it becomes the boundary (its term still known);
// compacting at or below the current boundary returns ErrCompacted and
// beyond the last index an error, both without changing the log.
func TestMemoryStorageCompact(t *testing.T) {
	st := newStorageWith(t, 3, 1, entriesFrom(4, 1, 2, 3, 4))
	tests := []struct {
		index              uint64
		wantErr            bool
		wantCompacted      bool
		wantFirst, wantLen uint64
	}{
		{2, true, true, 4, 4},
		{3, true, true, 4, 4},
		{8, true, false, 4, 4},
		{5, false, false, 6, 2},
		{5, true, true, 6, 2},
		{7, false, false, 8, 0},
	}
	for _, tt := range tests {
		err := st.Compact(tt.index)
		if (err != nil) != tt.wantErr || errors.Is(err, ErrCompacted) != tt.wantCompacted {
			t.Errorf("Compact(%d) error %v, want error %v (ErrCompacted %v)", tt.index, err, tt.wantErr, tt.wantCompacted)
		}
		first, _ := st.FirstIndex()
		if got := uint64(len(storedEntries(t, st))); first != tt.wantFirst || got != tt.wantLen {
			t.Errorf("after Compact(%d): first %d with %d entries, want %d with %d", tt.index, first, got, tt.wantFirst, tt.wantLen)
		}
	}
	if term, err := st.Term(7); err != nil || term != 4 {
		t.Errorf("Term(7) at the compaction boundary = (%d, %v), want (4, nil)", term, err)
	}
	if last, _ := st.LastIndex(); last != 7 {
		t.Errorf("LastIndex after compacting everything = %d, want 7", last)
	}
}

// TestMemoryStorageAppend checks Append: matching entries are kept, a
// conflicting suffix is replaced, new entries are added, entries at or
// below the compaction point are skipped, and a gap is an error that
// changes nothing.
func TestMemoryStorageAppend(t *testing.T) {
	// Snapshot at 3 (term 3), then 4:t4 5:t5.
	tests := []struct {
		name      string
		ents      []pb.Entry
		wantErr   bool
		wantTerms []uint64 // terms of 4.. after the append
	}{
		{"nothing", nil, false, []uint64{4, 5}},
		{"same entries", entriesFrom(4, 4, 5), false, []uint64{4, 5}},
		{"conflicting suffix", entriesFrom(4, 6, 6), false, []uint64{6, 6}},
		{"conflict at the last entry", entriesFrom(5, 6), false, []uint64{4, 6}},
		{"longer replacement", entriesFrom(4, 4, 6, 6), false, []uint64{4, 6, 6}},
		{"right after the end", entriesFrom(6, 5, 5), false, []uint64{4, 5, 5, 5}},
		{"all compacted", entriesFrom(1, 1, 2), false, []uint64{4, 5}},
		{"ending at the snapshot", entriesFrom(2, 2, 3), false, []uint64{4, 5}},
		{"compacted prefix skipped", entriesFrom(2, 2, 3, 4, 5, 5), false, []uint64{4, 5, 5}},
		{"compacted prefix then conflict", entriesFrom(3, 3, 7), false, []uint64{7}},
		{"gap", entriesFrom(7, 5), true, []uint64{4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStorageWith(t, 3, 3, entriesFrom(4, 4, 5))
			err := st.Append(tt.ents)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Append error %v, want error %v", err, tt.wantErr)
			}
			var terms []uint64
			for i, e := range storedEntries(t, st) {
				if e.Index != 4+uint64(i) {
					t.Fatalf("stored entry %d has index %d, want %d", i, e.Index, 4+uint64(i))
				}
				terms = append(terms, e.Term)
			}
			if !slices.Equal(terms, tt.wantTerms) {
				t.Errorf("stored terms %v, want %v", terms, tt.wantTerms)
			}
			if first, _ := st.FirstIndex(); first != 4 {
				t.Errorf("FirstIndex = %d, want 4", first)
			}
		})
	}
}

// TestMemoryStorageAppendKeepsReturnedSlices checks that replacing a
// conflicting suffix does not modify slices previously returned by Entries
// (the application or raft may still hold them), even when the storage
// array has spare capacity, and that the storage does not alias the
// caller's slice.
func TestMemoryStorageAppendKeepsReturnedSlices(t *testing.T) {
	st := NewMemoryStorage()
	// Appending one by one leaves spare capacity in the storage array.
	for i := uint64(1); i <= 6; i++ {
		if err := st.Append(entriesFrom(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	held, err := st.Entries(2, 7, noLimit)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(held)

	repl := entriesFrom(4, 2, 2, 2, 2)
	if err := st.Append(repl); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(held, want) {
		t.Errorf("a slice returned by Entries changed after a conflicting Append: %+v, want %+v", held, want)
	}
	if term, _ := st.Term(5); term != 2 {
		t.Errorf("Term(5) = %d after the replacement, want 2", term)
	}

	// Appending further (in place, if capacity allows) must not reach the
	// held slice either, nor must the caller's slice be aliased.
	if err := st.Append(entriesFrom(8, 2)); err != nil {
		t.Fatal(err)
	}
	repl[0].Term = 77
	if !reflect.DeepEqual(held, want) {
		t.Errorf("a held slice changed after a plain Append: %+v, want %+v", held, want)
	}
	if term, _ := st.Term(4); term != 2 {
		t.Errorf("storage aliases the caller's slice: Term(4) = %d, want 2", term)
	}
}

// TestMemoryStorageHardState checks that SetHardState is returned by
// InitialState.
func TestMemoryStorageHardState(t *testing.T) {
	st := NewMemoryStorage()
	if hs, cs, err := st.InitialState(); err != nil || !hs.IsEmpty() || len(cs.Voters) != 0 {
		t.Errorf("fresh InitialState = (%+v, %+v, %v), want empty", hs, cs, err)
	}
	want := pb.HardState{Term: 4, Vote: 2, Commit: 7}
	if err := st.SetHardState(want); err != nil {
		t.Fatal(err)
	}
	if hs, _, _ := st.InitialState(); hs != want {
		t.Errorf("InitialState hard state = %+v, want %+v", hs, want)
	}
}

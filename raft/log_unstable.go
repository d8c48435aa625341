package raft

import (
	"fmt"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// unstable holds what raft has accepted but the application has not yet
// persisted: at most one incoming snapshot and the entries after it.
//
// Invariants: if snapshot != nil, offset == snapshot.Metadata.Index+1;
// entries[i] has index offset+i; offsetInProgress is in
// [offset, offset+len(entries)] and entries before it were already handed
// out in a Ready (their write is in progress).
type unstable struct {
	snapshot           *pb.Snapshot
	entries            []pb.Entry
	offset             uint64
	snapshotInProgress bool
	offsetInProgress   uint64
}

// maybeFirstIndex returns the first index the log has if a snapshot is
// pending here.
func (u *unstable) maybeFirstIndex() (uint64, bool) {
	if u.snapshot != nil {
		return u.snapshot.Metadata.Index + 1, true
	}
	return 0, false
}

// maybeLastIndex returns the last index held here, if any.
func (u *unstable) maybeLastIndex() (uint64, bool) {
	if n := len(u.entries); n != 0 {
		return u.offset + uint64(n) - 1, true
	}
	if u.snapshot != nil {
		return u.snapshot.Metadata.Index, true
	}
	return 0, false
}

// maybeTerm returns the term of entry i if this part of the log knows it.
func (u *unstable) maybeTerm(i uint64) (uint64, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Metadata.Index == i {
			return u.snapshot.Metadata.Term, true
		}
		return 0, false
	}
	last, ok := u.maybeLastIndex()
	if !ok || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

// nextEntries returns the entries not yet handed out for persistence.
func (u *unstable) nextEntries() []pb.Entry {
	start := int(u.offsetInProgress - u.offset)
	if start == len(u.entries) {
		return nil
	}
	return u.entries[start:]
}

// nextSnapshot returns the snapshot if it was not yet handed out.
func (u *unstable) nextSnapshot() *pb.Snapshot {
	if u.snapshot == nil || u.snapshotInProgress {
		return nil
	}
	return u.snapshot
}

// acceptInProgress marks everything currently held as handed out.
func (u *unstable) acceptInProgress() {
	if len(u.entries) > 0 {
		u.offsetInProgress = u.offset + uint64(len(u.entries))
	}
	if u.snapshot != nil {
		u.snapshotInProgress = true
	}
}

// stableTo records that entries up to (i, t) are durable and drops them.
// A mismatching term means the entry was replaced after being handed out,
// and the call is ignored. It reports whether anything became stable.
func (u *unstable) stableTo(i, t uint64) bool {
	gt, ok := u.maybeTerm(i)
	if !ok || gt != t || i < u.offset {
		return false
	}
	n := int(i + 1 - u.offset)
	u.entries = u.entries[n:]
	u.offset = i + 1
	u.offsetInProgress = max(u.offsetInProgress, u.offset)
	u.shrinkEntriesArray()
	return true
}

// shrinkEntriesArray releases the backing array once most of it is unused,
// so that a long burst does not pin memory.
func (u *unstable) shrinkEntriesArray() {
	const lenMultiple = 2
	if len(u.entries) == 0 {
		u.entries = nil
	} else if len(u.entries)*lenMultiple < cap(u.entries) {
		u.entries = append([]pb.Entry(nil), u.entries...)
	}
}

// stableSnapTo records that the snapshot at index i is durable.
func (u *unstable) stableSnapTo(i uint64) bool {
	if u.snapshot != nil && u.snapshot.Metadata.Index == i {
		u.snapshot = nil
		u.snapshotInProgress = false
		return true
	}
	return false
}

// restore replaces everything by snapshot s.
func (u *unstable) restore(s pb.Snapshot) {
	u.offset = s.Metadata.Index + 1
	u.offsetInProgress = u.offset
	u.entries = nil
	u.snapshot = &s
	u.snapshotInProgress = false
}

// truncateAndAppend appends ents, first dropping any held entries at or
// after ents[0].Index.
func (u *unstable) truncateAndAppend(ents []pb.Entry) {
	from := ents[0].Index
	switch {
	case from == u.offset+uint64(len(u.entries)):
		u.entries = append(u.entries, ents...)
	case from <= u.offset:
		// Everything held is replaced. Copy so that the caller's slice is
		// not aliased by later appends.
		u.offset = from
		u.offsetInProgress = u.offset
		u.entries = append([]pb.Entry(nil), ents...)
	default:
		// Keep [offset, from) and replace the rest. The full slice
		// expression forces a copy, so entries handed out earlier are not
		// overwritten while the application persists them.
		keep := u.entries[: from-u.offset : from-u.offset]
		u.entries = append(keep, ents...)
		u.offsetInProgress = min(u.offsetInProgress, from)
	}
}

// slice returns entries [lo, hi), which must be held here.
func (u *unstable) slice(lo, hi uint64) []pb.Entry {
	u.mustCheckOutOfBounds(lo, hi)
	return u.entries[lo-u.offset : hi-u.offset : hi-u.offset]
}

func (u *unstable) mustCheckOutOfBounds(lo, hi uint64) {
	if lo > hi {
		panic(fmt.Sprintf("raft: invalid unstable slice [%d, %d)", lo, hi))
	}
	upper := u.offset + uint64(len(u.entries))
	if lo < u.offset || hi > upper {
		panic(fmt.Sprintf("raft: unstable slice [%d, %d) out of bounds [%d, %d)", lo, hi, u.offset, upper))
	}
}

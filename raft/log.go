package raft

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/synod-db/synod/internal/invariants"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// raftLog is raft's view of the log: the durable part in storage followed by
// the unstable part not yet persisted.
//
// Invariants: applied <= applying <= committed; committed entries are only
// handed to the application once they are durable here (see
// nextCommittedEnts), so the application may apply them without waiting for
// its own write.
type raftLog struct {
	storage  Storage
	unstable unstable

	// committed is the highest index known to be committed by a quorum.
	committed uint64
	// applying is the highest index handed out to be applied.
	applying uint64
	// applied is the highest index the application reported as applied.
	applied uint64

	// maxApplyingEntsSize bounds the payload of committed entries handed
	// out in one Ready.
	maxApplyingEntsSize uint64

	logger *slog.Logger
}

// newLog returns the log of storage, with nothing unstable.
func newLog(storage Storage, logger *slog.Logger, maxApplyingEntsSize uint64) (*raftLog, error) {
	firstIndex, err := storage.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: reading first index from storage: %w", err)
	}
	lastIndex, err := storage.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: reading last index from storage: %w", err)
	}
	return &raftLog{
		storage: storage,
		unstable: unstable{
			offset:           lastIndex + 1,
			offsetInProgress: lastIndex + 1,
		},
		committed:           firstIndex - 1,
		applying:            firstIndex - 1,
		applied:             firstIndex - 1,
		maxApplyingEntsSize: maxApplyingEntsSize,
		logger:              logger,
	}, nil
}

// maybeAppend appends ents after the entry (index, logTerm) if that entry
// matches ours (the Log Matching check), and advances the commit index to
// min(committed, last new index). It returns the last index of the
// appended run and whether the check passed.
func (l *raftLog) maybeAppend(index, logTerm, committed uint64, ents []pb.Entry) (lastNew uint64, ok bool) {
	if !l.matchTerm(index, logTerm) {
		return 0, false
	}
	lastNew = index + uint64(len(ents))
	ci := l.findConflict(ents)
	switch {
	case ci == 0:
		// Everything is already here.
	case ci <= l.committed:
		// A leader never rewrites committed entries; a message that would
		// is corrupt or from a broken peer. Refuse it instead of losing data.
		l.logger.Error("raft: append conflicts with a committed entry; ignoring it", "conflict", ci, "committed", l.committed)
		return 0, false
	default:
		l.append(ents[ci-(index+1):]...)
	}
	l.commitTo(min(committed, lastNew))
	return lastNew, true
}

// append adds ents to the unstable log, truncating a conflicting suffix.
func (l *raftLog) append(ents ...pb.Entry) uint64 {
	if len(ents) == 0 {
		return l.lastIndex()
	}
	if after := ents[0].Index - 1; after < l.committed {
		panic(fmt.Sprintf("raft: appending after %d would rewrite committed entries up to %d", after, l.committed))
	}
	if invariants.Enabled {
		l.checkAppend(ents)
	}
	l.unstable.truncateAndAppend(ents)
	return l.lastIndex()
}

// checkAppend checks the shape of entries about to be appended: they
// follow the log without a gap, their indexes are consecutive, and terms
// never decrease along the log (a leader's entries carry its term, and
// terms only grow).
func (l *raftLog) checkAppend(ents []pb.Entry) {
	after := ents[0].Index - 1
	invariants.Check(after <= l.lastIndex(), "raft: appending at %d leaves a gap after the last index %d", ents[0].Index, l.lastIndex())
	prevTerm, err := l.term(after)
	if err != nil {
		prevTerm = 0 // compacted: nothing to compare with
	}
	for i := range ents {
		invariants.Check(ents[i].Index == ents[0].Index+uint64(i), "raft: entry %d of an append has index %d, want %d", i, ents[i].Index, ents[0].Index+uint64(i))
		invariants.Check(ents[i].Term >= prevTerm, "raft: entry %d has term %d after term %d", ents[i].Index, ents[i].Term, prevTerm)
		prevTerm = ents[i].Term
	}
}

// findConflict returns the index of the first entry of ents that is not in
// our log with the same term (a conflict or a new entry), or 0 if all are
// present.
func (l *raftLog) findConflict(ents []pb.Entry) uint64 {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index <= index whose term is at most
// term, together with that term. A follower uses it to tell the leader where
// their logs may match, skipping whole terms at once (fast backtracking).
func (l *raftLog) findConflictByTerm(index, term uint64) (uint64, uint64) {
	for ; index > 0; index-- {
		t, err := l.term(index)
		if err != nil {
			// Compacted or unavailable: this is as far back as we can tell.
			return index, 0
		}
		if t <= term {
			return index, t
		}
	}
	return 0, 0
}

// nextUnstableEnts returns the entries to hand to the application for
// persistence.
func (l *raftLog) nextUnstableEnts() []pb.Entry { return l.unstable.nextEntries() }

func (l *raftLog) hasNextUnstableEnts() bool { return len(l.nextUnstableEnts()) > 0 }

// stableIndex is the last index known to be durable. Committed entries up
// to it may be applied.
func (l *raftLog) stableIndex() uint64 {
	if l.unstable.snapshot != nil {
		return 0
	}
	return l.unstable.offset - 1
}

// applyLimit is the highest index that may be handed out for applying.
func (l *raftLog) applyLimit() uint64 { return min(l.committed, l.stableIndex()) }

// hasNextCommittedEnts reports whether committed entries are waiting.
func (l *raftLog) hasNextCommittedEnts() bool {
	if l.hasNextOrInProgressSnapshot() {
		// The snapshot must be installed before any entry after it.
		return false
	}
	return l.applying < l.applyLimit()
}

// nextCommittedEnts returns the next durable committed entries to apply,
// limited to maxApplyingEntsSize bytes.
func (l *raftLog) nextCommittedEnts() []pb.Entry {
	if !l.hasNextCommittedEnts() {
		return nil
	}
	lo, hi := l.applying+1, l.applyLimit()+1
	ents, err := l.slice(lo, hi, l.maxApplyingEntsSize)
	if err != nil {
		panic(fmt.Sprintf("raft: reading committed entries [%d, %d): %v", lo, hi, err))
	}
	return ents
}

func (l *raftLog) nextSnapshot() *pb.Snapshot { return l.unstable.nextSnapshot() }

func (l *raftLog) hasNextOrInProgressSnapshot() bool { return l.unstable.snapshot != nil }

// snapshot returns the snapshot to send to a follower that needs one.
func (l *raftLog) snapshot() (pb.Snapshot, error) {
	if l.unstable.snapshot != nil {
		return *l.unstable.snapshot, nil
	}
	return l.storage.Snapshot()
}

// firstIndex is the first index the log holds.
func (l *raftLog) firstIndex() uint64 {
	if i, ok := l.unstable.maybeFirstIndex(); ok {
		return i
	}
	i, err := l.storage.FirstIndex()
	if err != nil {
		panic(fmt.Sprintf("raft: storage FirstIndex failed: %v", err))
	}
	return i
}

// lastIndex is the last index the log holds.
func (l *raftLog) lastIndex() uint64 {
	if i, ok := l.unstable.maybeLastIndex(); ok {
		return i
	}
	i, err := l.storage.LastIndex()
	if err != nil {
		panic(fmt.Sprintf("raft: storage LastIndex failed: %v", err))
	}
	return i
}

// commitTo raises the commit index, never beyond the last index.
func (l *raftLog) commitTo(tocommit uint64) {
	if tocommit <= l.committed {
		return
	}
	if last := l.lastIndex(); tocommit > last {
		// A leader only sends a commit index the follower's log covers;
		// anything else is a bug or a corrupt message, and committing past
		// our log would be unsafe. Clamp and report.
		l.logger.Error("raft: commit index beyond last index; clamping", "commit", tocommit, "last", last)
		tocommit = last
		if tocommit <= l.committed {
			return
		}
	}
	l.committed = tocommit
}

// acceptApplying records that entries up to i were handed out.
func (l *raftLog) acceptApplying(i uint64) {
	if i > l.applying {
		l.applying = i
	}
}

// appliedTo records that the application applied up to i.
func (l *raftLog) appliedTo(i uint64) {
	if i == 0 {
		return
	}
	if i > l.committed || i < l.applied {
		panic(fmt.Sprintf("raft: applied index %d out of range [applied %d, committed %d]", i, l.applied, l.committed))
	}
	l.applied = i
	l.applying = max(l.applying, i)
}

func (l *raftLog) stableTo(i, t uint64) bool { return l.unstable.stableTo(i, t) }

func (l *raftLog) stableSnapTo(i uint64) bool { return l.unstable.stableSnapTo(i) }

func (l *raftLog) acceptUnstable() { l.unstable.acceptInProgress() }

// lastTerm is the term of the last entry.
func (l *raftLog) lastTerm() uint64 {
	t, err := l.term(l.lastIndex())
	if err != nil {
		panic(fmt.Sprintf("raft: term of last entry: %v", err))
	}
	return t
}

// term returns the term of entry i, or an error if it was compacted or does
// not exist.
func (l *raftLog) term(i uint64) (uint64, error) {
	if t, ok := l.unstable.maybeTerm(i); ok {
		return t, nil
	}
	// The valid range is [firstIndex-1, lastIndex]: the entry before the
	// first one survives as the snapshot's index and term.
	if i+1 < l.firstIndex() {
		return 0, ErrCompacted
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	t, err := l.storage.Term(i)
	if err == nil || errors.Is(err, ErrCompacted) || errors.Is(err, ErrUnavailable) {
		return t, err
	}
	panic(fmt.Sprintf("raft: storage Term(%d) failed: %v", i, err))
}

// matchTerm reports whether entry i has the given term.
func (l *raftLog) matchTerm(i, term uint64) bool {
	t, err := l.term(i)
	return err == nil && t == term
}

// isUpToDate reports whether a log ending at (lasti, term) is at least as
// up to date as ours (Raft §5.4.1): a later last term wins, and with equal
// terms the longer log.
func (l *raftLog) isUpToDate(lasti, term uint64) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && lasti >= l.lastIndex())
}

// maybeCommit commits up to maxIndex if that entry is of the current term:
// a leader may only count replicas for entries of its own term (Raft §5.4.2,
// Figure 8); earlier entries commit with them.
func (l *raftLog) maybeCommit(maxIndex, term uint64) bool {
	if maxIndex <= l.committed {
		return false
	}
	t, err := l.term(maxIndex)
	if err != nil || t != term {
		return false
	}
	l.commitTo(maxIndex)
	return true
}

// restore replaces the log by snapshot s.
func (l *raftLog) restore(s pb.Snapshot) {
	l.logger.Info("raft: log restored from snapshot", "index", s.Metadata.Index, "term", s.Metadata.Term)
	l.committed = s.Metadata.Index
	l.unstable.restore(s)
}

// entries returns entries from i on, up to maxSize bytes.
func (l *raftLog) entries(i, maxSize uint64) ([]pb.Entry, error) {
	if i > l.lastIndex() {
		return nil, nil
	}
	return l.slice(i, l.lastIndex()+1, maxSize)
}

// slice returns entries [lo, hi) limited to maxSize bytes (at least one),
// reading storage for the durable part and unstable for the rest.
func (l *raftLog) slice(lo, hi, maxSize uint64) ([]pb.Entry, error) {
	if err := l.checkOutOfBounds(lo, hi); err != nil {
		return nil, err
	}
	if lo == hi {
		return nil, nil
	}
	var ents []pb.Entry
	if lo < l.unstable.offset {
		stored, err := l.storage.Entries(lo, min(hi, l.unstable.offset), maxSize)
		if errors.Is(err, ErrCompacted) {
			return nil, err
		} else if errors.Is(err, ErrUnavailable) {
			panic(fmt.Sprintf("raft: entries [%d, %d) unavailable from storage: %v", lo, min(hi, l.unstable.offset), err))
		} else if err != nil {
			panic(fmt.Sprintf("raft: storage Entries failed: %v", err))
		}
		// Storage returned fewer entries than asked: the size limit was hit.
		if uint64(len(stored)) < min(hi, l.unstable.offset)-lo {
			return stored, nil
		}
		ents = stored
	}
	if hi > l.unstable.offset {
		unst := l.unstable.slice(max(lo, l.unstable.offset), hi)
		if len(ents) > 0 {
			combined := make([]pb.Entry, len(ents), len(ents)+len(unst))
			copy(combined, ents)
			ents = append(combined, unst...)
		} else {
			ents = unst
		}
	}
	return limitSize(ents, maxSize), nil
}

// checkOutOfBounds returns ErrCompacted if lo precedes the log and
// panics if [lo, hi) is not a range within it.
func (l *raftLog) checkOutOfBounds(lo, hi uint64) error {
	if lo > hi {
		panic(fmt.Sprintf("raft: invalid slice [%d, %d)", lo, hi))
	}
	fi := l.firstIndex()
	if lo < fi {
		return ErrCompacted
	}
	if length := l.lastIndex() + 1 - fi; hi > fi+length {
		panic(fmt.Sprintf("raft: slice [%d, %d) out of bounds [%d, %d]", lo, hi, fi, l.lastIndex()))
	}
	return nil
}

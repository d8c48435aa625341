package raft

import (
	"errors"
	"fmt"
	"sync"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// ErrCompacted is returned by Storage when the requested index precedes the
// first available entry: the log was compacted into a snapshot.
var ErrCompacted = errors.New("raft: requested index is unavailable due to compaction")

// ErrSnapOutOfDate is returned by Storage.ApplySnapshot-like calls when the
// snapshot is older than the one already held.
var ErrSnapOutOfDate = errors.New("raft: requested index is older than the existing snapshot")

// ErrUnavailable is returned by Storage when the requested entry does not
// exist yet.
var ErrUnavailable = errors.New("raft: requested entry at index is unavailable")

// ErrSnapshotTemporarilyUnavailable may be returned by Storage.Snapshot when
// the snapshot is being prepared; raft retries later.
var ErrSnapshotTemporarilyUnavailable = errors.New("raft: snapshot is temporarily unavailable")

// Storage is the durable log as raft reads it. The application writes to it
// (entries and hard state from each Ready) and raft only reads.
//
// Entries before FirstIndex have been compacted into Snapshot. The entry at
// FirstIndex-1 survives as the snapshot's (index, term), so Term works one
// index before FirstIndex.
//
// Implementations must be safe for one reader (raft) concurrent with the
// application's writes if the application writes from another goroutine.
type Storage interface {
	// InitialState returns the persisted HardState and ConfState.
	InitialState() (pb.HardState, pb.ConfState, error)
	// Entries returns the entries in [lo, hi), limited to maxSize bytes of
	// payload but always at least one entry if any is in range.
	Entries(lo, hi, maxSize uint64) ([]pb.Entry, error)
	// Term returns the term of entry i, which must be in
	// [FirstIndex()-1, LastIndex()].
	Term(i uint64) (uint64, error)
	// LastIndex returns the index of the last entry.
	LastIndex() (uint64, error)
	// FirstIndex returns the index of the first entry still available.
	FirstIndex() (uint64, error)
	// Snapshot returns the most recent snapshot.
	Snapshot() (pb.Snapshot, error)
}

// MemoryStorage is a Storage held in memory, used by tests and by
// applications that persist elsewhere and keep a cache here.
type MemoryStorage struct {
	mu        sync.Mutex
	hardState pb.HardState
	snapshot  pb.Snapshot
	// ents[0] is a dummy entry carrying the snapshot's index and term; real
	// entries start at ents[1].
	ents []pb.Entry
}

// NewMemoryStorage returns an empty storage.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{ents: make([]pb.Entry, 1)}
}

// InitialState implements Storage.
func (ms *MemoryStorage) InitialState() (pb.HardState, pb.ConfState, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.hardState, ms.snapshot.Metadata.ConfState, nil
}

// SetHardState saves hs.
func (ms *MemoryStorage) SetHardState(hs pb.HardState) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.hardState = hs
	return nil
}

// Entries implements Storage.
func (ms *MemoryStorage) Entries(lo, hi, maxSize uint64) ([]pb.Entry, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.ents[0].Index
	if lo <= offset {
		return nil, ErrCompacted
	}
	if hi > ms.lastIndex()+1 {
		return nil, fmt.Errorf("raft: entries [%d, %d) requested beyond last index %d: %w", lo, hi, ms.lastIndex(), ErrUnavailable)
	}
	if lo >= hi {
		return nil, nil
	}
	ents := limitSize(ms.ents[lo-offset:hi-offset], maxSize)
	// The caller may append to the result; cap it so that appending copies
	// instead of overwriting our entries.
	return ents[:len(ents):len(ents)], nil
}

// Term implements Storage.
func (ms *MemoryStorage) Term(i uint64) (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.ents[0].Index
	if i < offset {
		return 0, ErrCompacted
	}
	if int(i-offset) >= len(ms.ents) {
		return 0, ErrUnavailable
	}
	return ms.ents[i-offset].Term, nil
}

// LastIndex implements Storage.
func (ms *MemoryStorage) LastIndex() (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.lastIndex(), nil
}

func (ms *MemoryStorage) lastIndex() uint64 {
	return ms.ents[0].Index + uint64(len(ms.ents)) - 1
}

// FirstIndex implements Storage.
func (ms *MemoryStorage) FirstIndex() (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.ents[0].Index + 1, nil
}

// Snapshot implements Storage.
func (ms *MemoryStorage) Snapshot() (pb.Snapshot, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.snapshot, nil
}

// ApplySnapshot replaces the whole log by snap (a snapshot received from the
// leader). A snapshot older than the current one is refused.
func (ms *MemoryStorage) ApplySnapshot(snap pb.Snapshot) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if snap.Metadata.Index <= ms.snapshot.Metadata.Index {
		return ErrSnapOutOfDate
	}
	ms.snapshot = snap
	ms.ents = []pb.Entry{{Term: snap.Metadata.Term, Index: snap.Metadata.Index}}
	return nil
}

// CreateSnapshot records a snapshot of the application's state at index i
// (which must be applied, hence in the log) with configuration cs. Call
// Compact afterwards to drop the entries it covers.
func (ms *MemoryStorage) CreateSnapshot(i uint64, cs *pb.ConfState, data []byte) (pb.Snapshot, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if i <= ms.snapshot.Metadata.Index {
		return pb.Snapshot{}, ErrSnapOutOfDate
	}
	offset := ms.ents[0].Index
	if i < offset {
		// Compacted past the snapshot: the entry's term is gone.
		return pb.Snapshot{}, ErrCompacted
	}
	if i > ms.lastIndex() {
		return pb.Snapshot{}, fmt.Errorf("raft: snapshot index %d is beyond last index %d: snapshot only applied entries", i, ms.lastIndex())
	}
	ms.snapshot.Metadata.Index = i
	ms.snapshot.Metadata.Term = ms.ents[i-offset].Term
	if cs != nil {
		ms.snapshot.Metadata.ConfState = *cs
	}
	ms.snapshot.Data = data
	return ms.snapshot, nil
}

// Compact drops the entries before compactIndex. The application must not
// compact beyond its applied index.
func (ms *MemoryStorage) Compact(compactIndex uint64) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.ents[0].Index
	if compactIndex <= offset {
		return ErrCompacted
	}
	if compactIndex > ms.lastIndex() {
		return fmt.Errorf("raft: compact index %d is beyond last index %d", compactIndex, ms.lastIndex())
	}
	i := compactIndex - offset
	ents := make([]pb.Entry, 1, uint64(len(ms.ents))-i)
	ents[0].Index = ms.ents[i].Index
	ents[0].Term = ms.ents[i].Term
	ents = append(ents, ms.ents[i+1:]...)
	ms.ents = ents
	return nil
}

// Append adds entries to the log, replacing any conflicting suffix. Entries
// that are already compacted are skipped.
func (ms *MemoryStorage) Append(entries []pb.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	first := ms.ents[0].Index + 1
	last := entries[0].Index + uint64(len(entries)) - 1
	if last < first {
		return nil
	}
	if first > entries[0].Index {
		entries = entries[first-entries[0].Index:]
	}
	offset := entries[0].Index - ms.ents[0].Index
	switch {
	case uint64(len(ms.ents)) > offset:
		// Truncate the conflicting suffix into a fresh array, so that slices
		// handed out by Entries keep their contents.
		ms.ents = append(ms.ents[:offset:offset], entries...)
	case uint64(len(ms.ents)) == offset:
		ms.ents = append(ms.ents, entries...)
	default:
		return fmt.Errorf("raft: appending entries at %d leaves a gap after last index %d", entries[0].Index, ms.lastIndex())
	}
	return nil
}

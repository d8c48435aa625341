// Package logstore is the raft.Storage of a synod member on disk: the
// newest snapshot plus the write-ahead log. Opening it restarts a member
// from disk; afterwards it is fed each Ready's entries and hard state
// (persisted with one WAL group commit) and snapshots.
//
// The recent log is cached in memory, up to a configured number of bytes;
// older entries, which raft rarely needs (a lagging follower), are read
// back from the WAL segment files on demand, each with a positioned read
// of just its record. The term of every entry, which raft asks far more
// often (every append, every rejection), is always answered from memory
// (the WAL's entry index). Memory is therefore bounded by configuration
// and the snapshot count, not by the bytes of the log.
package logstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/snap"
	"github.com/synod-db/synod/wal"
)

// Snapshots is what the store needs of a snapshot directory (package
// snap's Snapshotter provides it).
type Snapshots interface {
	// SaveFrom durably saves a snapshot, streaming its data.
	SaveFrom(meta pb.SnapshotMetadata, data io.Reader) error
	// LoadNewest returns the newest valid snapshot, or an error wrapping
	// snap.ErrNoSnapshot if there is none yet.
	LoadNewest() (pb.SnapshotMetadata, io.ReadCloser, error)
}

// DefaultCacheBytes bounds the payload of cached entries.
const DefaultCacheBytes = 64 << 20

// Options configure a Store.
type Options struct {
	// WAL configures the write-ahead log.
	WAL wal.Options
	// CacheBytes bounds the payload of entries kept in memory; zero means
	// DefaultCacheBytes. The newest entries are always cached.
	CacheBytes uint64
	// CatchUpEntries is how many entries before a snapshot created with
	// CreateSnapshot stay readable, so that a follower slightly behind
	// catches up from the log instead of receiving the whole snapshot.
	// After a restart the log starts at the snapshot again.
	CatchUpEntries uint64
	// CatchUpBytes, if not zero, also bounds those entries by their
	// payload bytes: a follower further behind gets the snapshot.
	CatchUpBytes uint64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Store is a raft.Storage backed by a WAL and snapshots. It is safe for
// concurrent use: raft reads while the raft loop writes.
type Store struct {
	w     *wal.WAL
	snaps Snapshots
	opts  Options

	mu   sync.Mutex
	hs   pb.HardState
	snap pb.SnapshotMetadata
	// first is the first readable index: snap.Index+1, or earlier by up
	// to CatchUpEntries after CreateSnapshot.
	first uint64
	// base is the snapshot (index and term) the log was opened or
	// replaced at: raft asks for the term of the entry before first, and
	// when that is base's index no entry of the WAL holds it (index 0 of a
	// new log, a snapshot's marker). It stays while CreateSnapshot keeps
	// entries from before its snapshot for catching up.
	base pb.SnapshotMetadata
	// cache holds entries [cache[0].Index, last]; it may start after
	// snap.Index+1 when older entries were evicted to the WAL files.
	cache      []pb.Entry
	cacheBytes uint64
	last       uint64
}

var _ raft.Storage = (*Store)(nil)

// Open restarts from walDir and snaps, creating a new WAL with metadata if
// there is none. It returns the store and the metadata recorded in the WAL
// (which the caller checks against its cluster and member IDs).
func Open(walDir string, snaps Snapshots, metadata []byte, opts Options) (*Store, []byte, error) {
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WAL.Logger == nil {
		opts.WAL.Logger = opts.Logger
	}
	// Restarting reads back into memory only what the cache would hold.
	opts.WAL.ReplayTailBytes = opts.CacheBytes
	var meta pb.SnapshotMetadata
	m, rc, err := snaps.LoadNewest()
	switch {
	case err == nil:
		rc.Close()
		meta = m
	case errors.Is(err, snap.ErrNoSnapshot):
	default:
		return nil, nil, fmt.Errorf("logstore: loading the newest snapshot: %w", err)
	}
	s := &Store{snaps: snaps, opts: opts, snap: meta, first: meta.Index + 1, base: meta}
	w, rp, err := wal.Open(walDir, wal.Marker{Index: meta.Index, Term: meta.Term}, opts.WAL)
	if errors.Is(err, wal.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		if meta.Index != 0 {
			return nil, nil, fmt.Errorf("logstore: a snapshot at index %d exists but %s has no WAL; the data directory is incomplete, restore it from a backup or another member", meta.Index, walDir)
		}
		w, err = wal.Create(walDir, metadata, opts.WAL)
		if err != nil {
			return nil, nil, err
		}
		s.w = w
		s.last = 0
		return s, metadata, nil
	}
	if err != nil {
		return nil, nil, err
	}
	s.w = w
	s.hs = rp.HardState
	if s.hs.Commit < meta.Index {
		// Commit indexes are saved without a sync, and the snapshot file
		// is synced before the WAL records it: after a power loss the
		// newest snapshot may be ahead of the last commit index that
		// reached the disk. A snapshot holds only committed entries, so
		// its index is committed.
		s.hs.Commit = meta.Index
	}
	s.last = meta.Index
	s.appendCache(rp.Entries)
	if rp.Repaired > 0 {
		opts.Logger.Warn("logstore: the WAL had a torn tail from a crash; it was cut", "bytes", rp.Repaired)
	}
	return s, rp.Metadata, nil
}

// Close closes the WAL.
func (s *Store) Close() error { return s.w.Close() }

// InitialState implements raft.Storage.
func (s *Store) InitialState() (pb.HardState, pb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hs, s.snap.ConfState, nil
}

// FirstIndex implements raft.Storage.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex implements raft.Storage.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// Snapshot implements raft.Storage. It returns the metadata only: the data
// can be large and is streamed from the snapshot file by whoever sends it.
func (s *Store) Snapshot() (pb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return pb.Snapshot{Metadata: s.snap}, nil
}

// Term implements raft.Storage.
func (s *Store) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	snap, last := s.snap, s.last
	if i == snap.Index {
		s.mu.Unlock()
		return snap.Term, nil
	}
	if i+1 < s.first {
		s.mu.Unlock()
		return 0, raft.ErrCompacted
	}
	if i == s.base.Index {
		t := s.base.Term
		s.mu.Unlock()
		return t, nil
	}
	if i > last {
		s.mu.Unlock()
		return 0, raft.ErrUnavailable
	}
	if len(s.cache) > 0 && i >= s.cache[0].Index {
		t := s.cache[i-s.cache[0].Index].Term
		s.mu.Unlock()
		return t, nil
	}
	s.mu.Unlock()
	// Invariant: the WAL's index holds the term of every entry from
	// first-1 to last, in memory. Answering Term must never read the
	// disk: raft asks it on its own goroutine, for every append it sends
	// and every rejection it handles.
	if t, ok := s.w.Term(i); ok {
		return t, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i+1 < s.first {
		return 0, raft.ErrCompacted // compacted meanwhile
	}
	return 0, fmt.Errorf("logstore: the WAL does not know the term of entry %d in [%d, %d]", i, s.first-1, s.last)
}

// Entries implements raft.Storage.
func (s *Store) Entries(lo, hi, maxSize uint64) ([]pb.Entry, error) {
	s.mu.Lock()
	if lo < s.first {
		s.mu.Unlock()
		return nil, raft.ErrCompacted
	}
	if hi > s.last+1 {
		last := s.last
		s.mu.Unlock()
		return nil, fmt.Errorf("logstore: entries [%d, %d) beyond last index %d: %w", lo, hi, last, raft.ErrUnavailable)
	}
	if lo >= hi {
		s.mu.Unlock()
		return nil, nil
	}
	cacheFirst := s.last + 1
	if len(s.cache) > 0 {
		cacheFirst = s.cache[0].Index
	}
	if lo >= cacheFirst {
		ents := limitSize(s.cache[lo-cacheFirst:hi-cacheFirst], maxSize)
		s.mu.Unlock()
		return ents[:len(ents):len(ents)], nil
	}
	s.mu.Unlock()
	// The oldest part comes from the WAL files, with reads bounded by
	// maxSize (see wal.ReadEntries).
	old, err := s.w.ReadEntries(lo, min(hi, cacheFirst), maxSize)
	if err != nil {
		s.mu.Lock()
		compacted := lo < s.first
		s.mu.Unlock()
		if compacted {
			return nil, raft.ErrCompacted // compacted meanwhile
		}
		return nil, fmt.Errorf("logstore: reading entries [%d, %d) from the WAL: %w", lo, min(hi, cacheFirst), err)
	}
	if uint64(len(old)) < min(hi, cacheFirst)-lo || hi <= cacheFirst {
		return old, nil
	}
	rest, err := s.Entries(cacheFirst, hi, maxSize)
	if err != nil {
		return old, nil
	}
	return limitSize(append(old, rest...), maxSize), nil
}

// Save persists a Ready's hard state and entries in one WAL write, synced
// if mustSync, then makes the entries readable.
func (s *Store) Save(hs pb.HardState, ents []pb.Entry, mustSync bool) error {
	if err := s.w.Save(hs, ents, mustSync); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !hs.IsEmpty() {
		s.hs = hs
	}
	if len(ents) > 0 {
		s.appendCache(ents)
	}
	return nil
}

// appendCache adds entries, replacing any at or after the first one, and
// evicts the oldest beyond CacheBytes (they stay in the WAL files). The
// caller holds mu.
func (s *Store) appendCache(ents []pb.Entry) {
	if len(ents) == 0 {
		return
	}
	first := ents[0].Index
	if len(s.cache) > 0 && first <= s.cache[len(s.cache)-1].Index {
		keep := max(int(first)-int(s.cache[0].Index), 0)
		for _, e := range s.cache[keep:] {
			s.cacheBytes -= e.PayloadSize()
		}
		// Copy so that slices handed out by Entries keep their contents.
		s.cache = append([]pb.Entry(nil), s.cache[:keep]...)
	}
	for _, e := range ents {
		s.cacheBytes += e.PayloadSize()
	}
	s.cache = append(s.cache, ents...)
	s.last = ents[len(ents)-1].Index
	if s.cacheBytes <= s.opts.CacheBytes {
		return
	}
	// Evict down to three quarters of the bound, so that the copy below
	// happens once per quarter of the cache written, not on every Save.
	n := 0
	for n < len(s.cache)-1 && s.cacheBytes > s.opts.CacheBytes/4*3 {
		s.cacheBytes -= s.cache[n].PayloadSize()
		n++
	}
	s.cache = append([]pb.Entry(nil), s.cache[n:]...)
}

// ApplySnapshot installs a snapshot received from the leader: it replaces
// the whole log. The WAL marker is written first, then the snapshot file;
// only then may the WAL purge segments before it.
func (s *Store) ApplySnapshot(meta pb.SnapshotMetadata, data io.Reader) error {
	return s.saveSnapshot(meta, data, true)
}

// CreateSnapshot records a snapshot of the application's state at
// meta.Index (which must be applied) and compacts the log before it; the
// entries after it stay.
func (s *Store) CreateSnapshot(meta pb.SnapshotMetadata, data io.Reader) error {
	return s.saveSnapshot(meta, data, false)
}

func (s *Store) saveSnapshot(meta pb.SnapshotMetadata, data io.Reader, replace bool) error {
	s.mu.Lock()
	if meta.Index <= s.snap.Index {
		cur := s.snap.Index
		s.mu.Unlock()
		return fmt.Errorf("logstore: snapshot at %d is not newer than the current one at %d: %w", meta.Index, cur, raft.ErrSnapOutOfDate)
	}
	if !replace && meta.Index > s.last {
		last := s.last
		s.mu.Unlock()
		return fmt.Errorf("logstore: snapshot at %d is beyond the last index %d; snapshot only applied entries", meta.Index, last)
	}
	s.mu.Unlock()
	if err := s.w.SaveSnapshot(wal.Marker{Index: meta.Index, Term: meta.Term, ReplacesLog: replace}); err != nil {
		return err
	}
	if err := s.snaps.SaveFrom(meta, data); err != nil {
		return fmt.Errorf("logstore: saving snapshot at %d: %w", meta.Index, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = meta
	if replace {
		s.w.ReleaseTo(meta.Index)
		s.cache, s.cacheBytes = nil, 0
		s.last = meta.Index
		s.first = meta.Index + 1
		s.base = meta
		return nil
	}
	keep := min(s.opts.CatchUpEntries, meta.Index)
	if s.opts.CatchUpBytes > 0 {
		keep = s.w.TailWithin(meta.Index, keep, s.opts.CatchUpBytes)
	}
	s.first = max(s.first, meta.Index+1-keep)
	// Keep the entry before first too: raft asks for its term.
	s.w.ReleaseTo(s.first - 1)
	n := 0
	for n < len(s.cache) && s.cache[n].Index+1 < s.first {
		s.cacheBytes -= s.cache[n].PayloadSize()
		n++
	}
	s.cache = append([]pb.Entry(nil), s.cache[n:]...)
	return nil
}

// limitSize returns the longest prefix of ents within maxSize bytes of
// payload, but at least one entry.
func limitSize(ents []pb.Entry, maxSize uint64) []pb.Entry {
	if len(ents) == 0 {
		return ents
	}
	size := ents[0].PayloadSize()
	for n := 1; n < len(ents); n++ {
		size += ents[n].PayloadSize()
		if size > maxSize {
			return ents[:n]
		}
	}
	return ents
}

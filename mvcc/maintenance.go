package mvcc

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// DiskSize returns the bytes the store's files take on disk, which the
// server compares with its space quota on every write. Computing it walks
// Pebble's metrics, which is too slow for every request, so the value is
// refreshed at most every diskSizeRefresh.
func (s *Store) DiskSize() int64 {
	now := time.Now().UnixNano()
	if last := s.sizeAt.Load(); now-last < int64(diskSizeRefresh) || !s.sizeAt.CompareAndSwap(last, now) {
		return s.size.Load()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0
	}
	size := int64(s.db.Metrics().DiskSpaceUsage())
	s.size.Store(size)
	return size
}

// diskSizeRefresh bounds how stale DiskSize may be.
const diskSizeRefresh = 100 * time.Millisecond

// Defragment rewrites the whole database so that space freed by
// compaction and deletions is returned to the file system (etcd's
// defrag). Reads and writes go on meanwhile.
func (s *Store) Defragment(ctx context.Context) error {
	s.mu.RLock()
	db := s.db
	if db == nil {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.snaps.Add(1) // keep Close and Restore from closing db under us
	s.mu.RUnlock()
	defer s.snaps.Done()
	if err := db.Compact(ctx, []byte{0}, []byte{0xff, 0xff, 0xff, 0xff}, true); err != nil {
		return fmt.Errorf("mvcc: defragment: %w", err)
	}
	return nil
}

// Sync makes every write committed so far durable (one fsync of Pebble's
// log). Writes are committed without syncing because the raft log can
// replay them; before the raft log is compacted the server calls Sync so
// that what the compaction drops is never needed again.
func (s *Store) Sync() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("mvcc: sync: %w", err)
	}
	return nil
}

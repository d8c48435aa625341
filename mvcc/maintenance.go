package mvcc

import (
	"context"
	"fmt"
)

// DiskSize returns the bytes the store's files take on disk, which the
// server compares with its space quota.
func (s *Store) DiskSize() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0
	}
	return int64(s.db.Metrics().DiskSpaceUsage())
}

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

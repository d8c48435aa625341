package mvcc

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// appMetaPrefix keeps the application's metadata (the server's member
// list, for one) apart from the store's own metadata in the m space.
const appMetaPrefix = "m/app/"

// Meta returns the application metadata stored under name, nil if none.
// It lives in the same database as the key space, so it is part of every
// snapshot and is restored with it.
func (s *Store) Meta(name string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	v, closer, err := s.db.Get([]byte(appMetaPrefix + name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mvcc: read metadata %q: %w", name, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// SetMeta stores value under name as the effect of raft entry raftIndex,
// in one batch with the consistent index, so that state the server keeps
// beside the key space (the member list) is applied exactly once, like
// any write. An entry at or below the consistent index is skipped; index
// 0 means "not from raft".
func (s *Store) SetMeta(raftIndex uint64, name string, value []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	if raftIndex != 0 && raftIndex <= s.ci {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set([]byte(appMetaPrefix+name), value, nil); err != nil {
		return err
	}
	if raftIndex != 0 {
		if err := putMeta(b, metaConsIndex, raftIndex); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("mvcc: write metadata %q: %w", name, err)
	}
	if raftIndex != 0 {
		s.ci = raftIndex
	}
	return nil
}

// ResetConsistentIndex sets the consistent index to idx even if it is
// lower than the current one. Only a restore from a backup needs it: the
// restored key space starts a new raft log whose indexes have nothing to
// do with the old cluster's.
func (s *Store) ResetConsistentIndex(idx uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := putMeta(b, metaConsIndex, idx); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("mvcc: reset consistent index: %w", err)
	}
	s.ci = idx
	return nil
}

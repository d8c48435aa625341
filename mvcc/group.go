package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/synod-db/synod/internal/invariants"
)

// ErrGroupUndo is returned by WriteGroup.Write when a write failed after
// changing the group's batch while earlier entries' changes were in it:
// a Pebble batch cannot drop the failed entry's changes alone, so the
// caller discards the group and applies its entries again, the failing
// one first in a group of its own (where Write can undo it).
var ErrGroupUndo = errors.New("mvcc: a failed write left changes in a shared group; apply the group again")

// WriteGroup applies the writes of several consecutive raft entries in
// one Pebble batch committed once. Each entry still gets its own
// revision, sees the entries before it, and is checked and recorded
// against the consistent index exactly as with Store.Write; the group
// saves what a commit costs per entry (the commit pipeline, Pebble's log
// record, the two metadata keys), which at thousands of small writes a
// second is a large part of applying them.
//
// Nothing of a group is visible to readers of the store (Rev, Range,
// ConsistentIndex) until Commit, so a caller that answers clients or
// notifies watchers must do so after Commit. An open group holds the
// store's writer lock: other writes wait until it is closed, so the
// goroutine that opened it must not write to the store in another way
// before closing it.
type WriteGroup struct {
	s   *Store
	b   *pebble.Batch
	rev int64  // the store's revision after the group's writes so far
	ci  uint64 // the consistent index after them
	// logical is the store's LogicalSize after them.
	logical int64
	writes  bool // whether b holds any entry's changes
	// written and iter serve a large group's lookups of keys' live
	// versions (c space), see current: written holds the c space values
	// the group wrote (nil for a deletion), iter reads the store as it
	// was when opened, which nothing but the group changes (the group
	// holds the writer lock). Pebble's Get builds an iterator over every
	// memtable and level per call, most of a put's cost once the c space
	// spans several tables; iter is built once per group.
	written map[string][]byte
	iter    *pebble.Iterator
	lookups int       // point lookups made before iter
	closer  io.Closer // of the last point lookup's value
}

// iterAfter is the number of point lookups a group makes before it opens
// an iterator for the rest: opening one costs about as much as a few
// point lookups save.
const iterAfter = 16

// Group opens a write group at the store's current revision and
// consistent index.
func (s *Store) Group() (*WriteGroup, error) {
	s.wmu.Lock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		s.wmu.Unlock()
		return nil, ErrClosed
	}
	return &WriteGroup{s: s, b: s.db.NewIndexedBatch(), rev: s.rev, ci: s.ci, logical: s.logical.Load()}, nil
}

// Write runs fn in a write transaction for raft entry raftIndex inside
// the group, with Store.Write's rules: an entry at or below the
// consistent index is skipped, raftIndex 0 is not from raft, and a
// failing fn changes nothing but still advances the consistent index.
// It returns the revision after the entry and its events; they become
// true only at Commit. If fn fails after writing while the group holds
// earlier entries' changes, the group is unusable and the error wraps
// ErrGroupUndo (and fn's own error).
func (g *WriteGroup) Write(raftIndex uint64, fn func(tx *WriteTxn) error) (int64, []Event, error) {
	if g.b == nil {
		return 0, nil, fmt.Errorf("mvcc: write to a closed group")
	}
	if raftIndex != 0 && raftIndex <= g.ci {
		return g.rev, nil, nil
	}
	before, logical := g.b.Count(), g.logical
	tx := &WriteTxn{s: g.s, g: g, b: g.b, rev: g.rev + 1}
	if ferr := fn(tx); ferr != nil {
		g.logical = logical
		if g.b.Count() != before {
			if g.writes {
				g.Close()
				return 0, nil, fmt.Errorf("%w: %w", ErrGroupUndo, ferr)
			}
			g.b.Reset()
			clear(g.written)
		}
		if raftIndex != 0 {
			g.ci = raftIndex
		}
		return g.rev, nil, ferr
	}
	if tx.sub > 0 {
		if invariants.Enabled {
			// One write is one revision, the one after the group's last,
			// and every change it made carries it.
			invariants.Check(tx.rev == g.rev+1, "mvcc: write of entry %d at revision %d after revision %d", raftIndex, tx.rev, g.rev)
			for i := range tx.events {
				invariants.Check(tx.events[i].KV.ModRevision == tx.rev, "mvcc: event of %q at revision %d in the write of revision %d", tx.events[i].KV.Key, tx.events[i].KV.ModRevision, tx.rev)
			}
		}
		g.rev = tx.rev
	}
	if raftIndex != 0 {
		g.ci = raftIndex
	}
	g.writes = g.writes || g.b.Count() != before
	return g.rev, tx.events, nil
}

// Size returns the bytes the group's batch holds, so that a caller can
// bound a group.
func (g *WriteGroup) Size() int {
	if g.b == nil {
		return 0
	}
	return g.b.Len()
}

// Commit writes the group's changes and its revision and consistent
// index in one batch (not synced: the raft log can replay them) and makes
// them visible. The group is closed afterwards.
func (g *WriteGroup) Commit() error {
	if g.b == nil {
		return fmt.Errorf("mvcc: commit of a closed group")
	}
	defer g.Close()
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	if g.rev != s.rev || g.logical != s.logical.Load() {
		if err := putRev(g.b, g.rev, g.logical); err != nil {
			return err
		}
	}
	if g.ci != s.ci {
		if err := putMeta(g.b, metaConsIndex, g.ci); err != nil {
			return err
		}
	}
	// Readers are out (mu): emptying the written keys' slots now, even if
	// the commit fails, leaves none of them a value older than the store.
	s.hot.commit()
	if !g.b.Empty() {
		if err := g.b.Commit(pebble.NoSync); err != nil {
			return err
		}
	}
	s.rev, s.ci = g.rev, g.ci
	s.logical.Store(g.logical)
	return nil
}

// Close discards what the group has not committed and lets other writers
// in. It may be called more than once.
func (g *WriteGroup) Close() {
	if g.closer != nil {
		g.closer.Close()
		g.closer = nil
	}
	if g.iter != nil {
		g.iter.Close()
		g.iter = nil
	}
	if g.b != nil {
		g.b.Close()
		g.b = nil
		g.s.hot.forget()
		g.s.wmu.Unlock()
	}
}

// current returns the c space value at ck as the group sees it, valid
// until the next call. The first lookups of a group are Pebble point
// lookups through the batch; from the iterAfter-th on, the group's own
// writes come from written and the rest from iter, whose cost is then
// spread over the many lookups of a large group.
func (g *WriteGroup) current(ck []byte) ([]byte, bool, error) {
	if g.closer != nil {
		g.closer.Close()
		g.closer = nil
	}
	if g.iter == nil && g.lookups < iterAfter {
		g.lookups++
		v, closer, err := g.b.Get(ck)
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		g.closer = closer
		return v, true, nil
	}
	if v, ok := g.written[string(ck)]; ok {
		return v, v != nil, nil
	}
	if g.iter == nil {
		it, err := g.s.db.NewIter(nil)
		if err != nil {
			return nil, false, err
		}
		g.iter = it
	}
	if !g.iter.SeekPrefixGE(ck) || !bytes.Equal(g.iter.Key(), ck) {
		return nil, false, g.iter.Error()
	}
	v, err := g.iter.ValueAndErr()
	return v, err == nil, err
}

// wroteCurrent records the group's write of c space key ck.
func (g *WriteGroup) wroteCurrent(ck, value []byte, deleted bool) {
	if g.written == nil {
		g.written = make(map[string][]byte)
	}
	if deleted {
		g.written[string(ck)] = nil
		return
	}
	g.written[string(ck)] = bytes.Clone(value)
}

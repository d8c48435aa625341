package mvcc

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// HistoryOptions select the events History returns.
type HistoryOptions struct {
	// Key and End select the keys with etcd's range_end rules: End empty
	// is the single key Key, End "\x00" every key >= Key, otherwise the
	// keys in [Key, End). Every key: Key empty and End "\x00".
	Key, End []byte
	// PrevKV fills each event's PrevKV (the version the change replaced)
	// from the key index, as the live events of Store.Write carry it.
	// It costs one seek per event, so watchers that do not ask for it
	// should not pay for it.
	PrevKV bool
	// Limit bounds the work of one call: once Limit stored changes have
	// been scanned, History stops at the end of the current revision and
	// reports where to continue in HistoryResult.Next. A revision is never
	// split, so a result may hold more events than Limit. 0: no limit.
	Limit int
}

// HistoryResult is the answer of History.
type HistoryResult struct {
	// Events are the selected events in revision order (and sub-revision
	// order within a revision), shaped exactly like the events
	// Store.Write returns.
	Events []Event
	// Next is the first revision not read: to+1 when the whole range was
	// read, less when Limit stopped the read early. The caller continues
	// from there.
	Next int64
	// Rev is the store's revision when the read started.
	Rev int64
	// Compacted is the store's compacted revision when the read started.
	Compacted int64
}

// History returns the events of the revisions [from, to] whose keys are
// selected by opts, read from the history (r) space, so a watcher that
// starts in the past or fell behind can replay exactly what it missed.
// to is capped at the current revision and from is raised to 1. It
// returns ErrCompacted if from is below the compacted revision; the
// compacted revision itself is complete (compaction keeps its deletions),
// so a watch may start there, as in etcd.
//
// The read runs on a point-in-time view, outside the store's lock, so
// a long replay never delays writes; Restore and Close wait for it.
// A single-key selection reads only that key's versions from the key
// index instead of scanning every revision.
func (s *Store) History(from, to int64, opts HistoryOptions) (HistoryResult, error) {
	s.mu.RLock()
	if s.db == nil {
		s.mu.RUnlock()
		return HistoryResult{}, ErrClosed
	}
	res := HistoryResult{Rev: s.rev, Compacted: s.compacted}
	if from < 1 {
		from = 1
	}
	if from < s.compacted {
		s.mu.RUnlock()
		return res, ErrCompacted
	}
	if to > s.rev {
		to = s.rev
	}
	res.Next = from
	if from > to {
		s.mu.RUnlock()
		return res, nil
	}
	s.snaps.Add(1)
	snap := s.db.NewSnapshot()
	s.mu.RUnlock()
	defer s.snaps.Done()
	defer snap.Close()

	var err error
	if len(opts.End) == 0 {
		err = historyOfKey(snap, from, to, &opts, &res)
	} else {
		err = historyByRev(snap, from, to, &opts, &res)
	}
	if err != nil {
		return HistoryResult{}, err
	}
	return res, nil
}

// keyInRange reports whether k is selected by (key, end) under etcd's
// range_end rules.
func keyInRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

// historyByRev scans the r space from revision from to to, keeping the
// changes of selected keys.
func historyByRev(snap *pebble.Snapshot, from, to int64, opts *HistoryOptions, res *HistoryResult) error {
	it, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: revKey(revision{from, 0}),
		UpperBound: revKey(revision{to + 1, 0}),
	})
	if err != nil {
		return err
	}
	defer it.Close()
	var kit *pebble.Iterator
	if opts.PrevKV {
		if kit, err = snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixKey}, UpperBound: []byte{prefixKeyHi}}); err != nil {
			return err
		}
		defer kit.Close()
	}
	scanned := 0
	last := int64(0)
	res.Next = to + 1
	for valid := it.First(); valid; valid = it.Next() {
		if len(it.Key()) != 17 {
			return fmt.Errorf("%w: history key %q", ErrCorrupt, it.Key())
		}
		at := decodeRev(it.Key()[1:])
		if at.main != last && opts.Limit > 0 && scanned >= opts.Limit {
			// The previous revision is complete and the budget is spent.
			res.Next = at.main
			break
		}
		last = at.main
		scanned++
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		r, err := decodeRecord(v, false)
		if err != nil {
			return err
		}
		if !keyInRange(r.key, opts.Key, opts.End) {
			continue
		}
		ev, err := historyEvent(snap, &r, at, kit)
		if err != nil {
			return err
		}
		res.Events = append(res.Events, ev)
	}
	return it.Error()
}

// historyOfKey reads the versions of one key with revisions in
// [from, to] from the k space: the key's own history, whatever the
// number of changes to other keys.
func historyOfKey(snap *pebble.Snapshot, from, to int64, opts *HistoryOptions, res *HistoryResult) error {
	prefix := keyPrefix(opts.Key)
	// Start one version early so that the PrevKV of the first event is
	// the previous step of the same iterator.
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: appendRev(append([]byte(nil), prefix...), revision{to + 1, 0})})
	if err != nil {
		return err
	}
	defer it.Close()
	scanned := 0
	res.Next = to + 1
	var prev []byte // value of the version before the current one
	var prevRev revision
	valid := opts.PrevKV && it.SeekLT(appendRev(append([]byte(nil), prefix...), revision{from, 0}))
	if valid {
		if prev, err = it.ValueAndErr(); err != nil {
			return err
		}
		prev = append([]byte(nil), prev...)
		prevRev = decodeRev(it.Key()[len(prefix):])
		valid = it.Next()
	} else {
		valid = it.SeekGE(appendRev(append([]byte(nil), prefix...), revision{from, 0}))
	}
	for ; valid; valid = it.Next() {
		k := it.Key()
		if len(k) != len(prefix)+16 {
			return fmt.Errorf("%w: key index entry %q", ErrCorrupt, k)
		}
		at := decodeRev(k[len(prefix):])
		if opts.Limit > 0 && scanned >= opts.Limit {
			// One key changes at most once per revision, so every
			// revision read so far is complete.
			res.Next = at.main
			break
		}
		scanned++
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		r, err := decodeRecord(v, false)
		if err != nil {
			return err
		}
		if err := r.loadValue(snap, at); err != nil {
			return err
		}
		ev := recordEvent(&r, at)
		if opts.PrevKV && prev != nil {
			pr, err := decodeRecord(prev, false)
			if err != nil {
				return err
			}
			if err := pr.loadValue(snap, prevRev); err != nil {
				return err
			}
			if !pr.tombstone {
				kv := pr.kv(prevRev, false)
				ev.PrevKV = &kv
			}
		}
		res.Events = append(res.Events, ev)
		if opts.PrevKV {
			prev = append(prev[:0], v...)
			prevRev = at
		}
	}
	return it.Error()
}

// recordEvent turns a stored change at revision at into an Event without
// PrevKV.
func recordEvent(r *record, at revision) Event {
	if r.tombstone {
		return Event{Type: EventDelete, KV: KeyValue{Key: append([]byte(nil), r.key...), ModRevision: at.main}}
	}
	return Event{Type: EventPut, KV: r.kv(at, false)}
}

// historyEvent turns a stored change into an Event, with its PrevKV
// looked up in the key index when kit is not nil.
func historyEvent(snap *pebble.Snapshot, r *record, at revision, kit *pebble.Iterator) (Event, error) {
	ev := recordEvent(r, at)
	// A put of version 1 created the key: nothing was replaced.
	if kit == nil || (!r.tombstone && r.version == 1) {
		return ev, nil
	}
	prefix := keyPrefix(r.key)
	if !kit.SeekLT(appendRev(prefix, at)) {
		return ev, kit.Error()
	}
	k := kit.Key()
	if len(k) != len(prefix)+16 || !bytes.HasPrefix(k, prefix) {
		return ev, nil
	}
	v, err := kit.ValueAndErr()
	if err != nil {
		return ev, err
	}
	pr, err := decodeRecord(v, false)
	if err != nil {
		return ev, err
	}
	prevRev := decodeRev(k[len(prefix):])
	if err := pr.loadValue(snap, prevRev); err != nil {
		return ev, err
	}
	if !pr.tombstone {
		kv := pr.kv(prevRev, false)
		ev.PrevKV = &kv
	}
	return ev, nil
}

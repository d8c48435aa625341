package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// Open opens the WAL in dir, replays it from the snapshot marker m and
// returns it ready for appending. A torn record at the tail of the last
// segment is cut away; any other damage is an error wrapping ErrCorrupt
// that names the file and offset.
func Open(dir string, m Marker, opts Options) (*WAL, *Replay, error) {
	opts.fill(dir)
	fs := opts.FS
	lock, err := fs.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, nil, err
	}
	w := newWAL(dir, opts, lock)
	rp, err := w.replay(m)
	if err != nil {
		w.closeFiles()
		return nil, nil, err
	}
	w.start()
	return w, rp, nil
}

// replay reads the segments from the one holding the marker on, and leaves
// the last one open for appending.
func (w *WAL) replay(m Marker) (*Replay, error) {
	segs, err := listSegments(w.fs, w.dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("%w: %s has no segment files; create a WAL first", ErrNotFound, w.dir)
	}
	start := -1
	for i, s := range segs {
		if s.first <= m.Index {
			start = i
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("%w: the oldest segment %s starts after the snapshot at index %d; the segments it needs were removed", ErrSnapshotNotFound, segs[0].name, m.Index)
	}
	rp := &Replay{}
	w.idx.reset(m.Index + 1)
	r := replayer{m: m, rp: rp, first: true, idx: &w.idx, tail: w.opts.ReplayTailBytes}
	for i := start; i < len(segs); i++ {
		last := i == len(segs)-1
		name := filepath.Join(w.dir, segs[i].name)
		f, err := w.fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
		if err != nil {
			return nil, fmt.Errorf("wal: opening %s: %w", name, err)
		}
		r.seq = uint32(segs[i].seq)
		end, err := r.readSegment(f, name, last, w)
		if err != nil {
			f.Close()
			return nil, err
		}
		if !last {
			f.Close()
			continue
		}
		w.f = f
		w.off = end
	}
	r.trim(r.tail)
	if !r.found {
		w.f.Close()
		w.f = nil
		return nil, fmt.Errorf("%w: no marker for the snapshot at index %d term %d in %s; the snapshot and the WAL do not belong together", ErrSnapshotNotFound, m.Index, m.Term, w.dir)
	}
	w.segments = segs
	w.crc = r.crc
	w.metadata = rp.Metadata
	w.state = rp.HardState
	// The log ends at the last entry after the marker, or at the marker:
	// entries before it may end earlier (a leader's snapshot past them).
	w.lastIndex = max(r.lastIndex, m.Index)
	if n := len(rp.Entries); n > 0 {
		w.lastIndex = rp.Entries[n-1].Index
	}
	if r.pendingReplace != nil {
		// A leader's snapshot was marked but its file never saved (a crash
		// between the two): it is void, and the member goes on from m.
		// Record m again so that the entries it appends next are not taken
		// for entries following the void snapshot.
		w.appendRecord(snapshotRecord, markerPayload(Marker{Index: m.Index, Term: m.Term}))
	}
	return rp, nil
}

// replayer accumulates what the segments say.
type replayer struct {
	m         Marker
	rp        *Replay
	crc       uint32
	first     bool
	found     bool
	lastIndex uint64
	// pendingReplace is a later log-replacing snapshot marker; no entry may
	// follow it in a replay that does not start from it.
	pendingReplace *Marker
	// idx is the WAL's entry index, built as the records are read; seq is
	// the segment being read and loc where its current record is.
	idx *entryIndex
	seq uint32
	loc entryLoc
	// tail bounds the payload bytes of rp.Entries (0: no bound); bytes is
	// their payload now.
	tail, bytes uint64
}

// readSegment decodes one segment and returns where its records end.
func (r *replayer) readSegment(f vfs.File, name string, last bool, w *WAL) (int64, error) {
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, fmt.Errorf("wal: reading %s: %w", name, err)
	}
	corrupt := func(off int, format string, args ...any) error {
		return fmt.Errorf("%w: %s at offset %d: %s; restore this member from a snapshot or another member", ErrCorrupt, name, off, fmt.Sprintf(format, args...))
	}
	off := 0
	for idx := 0; ; idx++ {
		seed := r.crc
		if idx == 0 {
			// The crc record carries the chain's value at the end of the
			// previous segment; the first segment replayed is trusted.
			prev, err := peekCRCRecord(data)
			if err != nil {
				return 0, corrupt(0, "%v", err)
			}
			if !r.first && prev != r.crc {
				return 0, corrupt(0, "segment does not continue the previous one (chain %#x, previous ended at %#x)", prev, r.crc)
			}
			seed = prev
		}
		t, payload, size, crc, extent, err := decodeRecord(data[off:], seed)
		if errors.Is(err, errEndOfRecords) {
			if idx == 0 {
				return 0, corrupt(0, "segment has no records")
			}
			if !allZero(data[off:]) {
				// Data after the end of the records: unsynced pages that
				// reached the disk out of order. In the last segment that
				// is a torn tail; anywhere else, damage.
				if !last {
					return 0, corrupt(off, "data follows the end of the records")
				}
				err = fmt.Errorf("%w: data follows an empty record header", errTorn)
				return r.cutTail(f, name, data, off, err, w)
			}
			break
		}
		if err != nil {
			if last && idx > 1 && isTornTail(data, off, extent) {
				return r.cutTail(f, name, data, off, err, w)
			}
			return 0, corrupt(off, "%v", err)
		}
		r.loc = entryLoc{off: int64(off), seq: r.seq, seed: seed, rec: uint32(size)}
		if err := r.apply(t, payload, idx); err != nil {
			return 0, corrupt(off, "%v", err)
		}
		r.crc = crc
		off += size
	}
	r.first = false
	return int64(off), nil
}

// cutTail truncates the last segment at off, where a write interrupted by
// a crash left a torn tail, and logs the repair.
func (r *replayer) cutTail(f vfs.File, name string, data []byte, off int, cause error, w *WAL) (int64, error) {
	if err := w.fs.Truncate(name, int64(off)); err != nil {
		return 0, fmt.Errorf("wal: cutting the torn tail of %s at offset %d: %w", name, off, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("wal: syncing %s after repair: %w", name, err)
	}
	r.rp.Repaired = int64(len(data) - off)
	w.opts.Logger.Warn("wal: cut a torn record at the tail of the log (a crash interrupted a write)",
		"file", name, "offset", off, "bytes", len(data)-off, "cause", cause)
	return int64(off), nil
}

// peekCRCRecord returns the chain value carried by a segment's first record.
func peekCRCRecord(data []byte) (uint32, error) {
	if len(data) < headerSize+5 || recordType(data[headerSize]) != crcRecord {
		return 0, errors.New("segment does not start with a crc record")
	}
	return binary.LittleEndian.Uint32(data[headerSize+1:]), nil
}

// apply folds one record into the replay.
func (r *replayer) apply(t recordType, payload []byte, idx int) error {
	rp := r.rp
	switch t {
	case crcRecord:
		if idx != 0 {
			return errors.New("crc record in the middle of a segment")
		}
	case metadataRecord:
		if rp.Metadata != nil && !bytes.Equal(rp.Metadata, payload) {
			return errors.New("metadata differs from the earlier segments': the segments come from different members")
		}
		rp.Metadata = bytes.Clone(payload)
	case stateRecord:
		hs, err := pb.UnmarshalHardState(payload)
		if err != nil {
			return err
		}
		rp.HardState = hs
	case snapshotRecord:
		m, err := parseMarker(payload)
		if err != nil {
			return err
		}
		if r.pendingReplace != nil && m.Index < r.pendingReplace.Index {
			// Only Open writes a marker older than one before it: the
			// replacing snapshot was void, the member restarted from an
			// older one and went on with its log (see replay).
			r.pendingReplace = nil
		}
		if m.Index == r.m.Index {
			if m.Term != r.m.Term {
				return fmt.Errorf("snapshot marker at index %d has term %d, want %d", m.Index, m.Term, r.m.Term)
			}
			r.found = true
			if m.ReplacesLog {
				// The snapshot replaced the log: entries saved before it
				// are gone.
				r.rp.Entries, r.bytes = nil, 0
				r.idx.reset(m.Index + 1)
			}
		} else if m.ReplacesLog && m.Index > r.m.Index {
			// A leader's snapshot whose file is not the one replayed from:
			// if entries follow, they continue a log this replay lacks.
			r.pendingReplace = &m
		}
	case entryRecord:
		if r.pendingReplace != nil {
			return fmt.Errorf("entries follow the snapshot at index %d that replaced the log, but replay starts from the snapshot at %d: that snapshot file is missing or damaged", r.pendingReplace.Index, r.m.Index)
		}
		var e pb.Entry
		if err := pb.UnmarshalEntry(payload, &e); err != nil {
			return err
		}
		return r.addEntry(e)
	}
	return nil
}

// addEntry appends e to the replayed entries and the index, replacing any
// entries at or after its index, as raft's log truncation did when it was
// written.
func (r *replayer) addEntry(e pb.Entry) error {
	r.lastIndex = e.Index
	if e.Index <= r.m.Index {
		// It replaced the entries after it, all of those replayed so far.
		r.rp.Entries, r.bytes = nil, 0
		r.idx.reset(r.m.Index + 1)
		return nil
	}
	switch {
	case r.idx.empty():
		if e.Index != r.m.Index+1 {
			return fmt.Errorf("entry %d follows the snapshot at %d: entries are missing", e.Index, r.m.Index)
		}
	case e.Index > r.idx.last()+1:
		return fmt.Errorf("entry %d follows entry %d: entries are missing", e.Index, r.idx.last())
	}
	r.loc.size = uint32(e.PayloadSize())
	r.idx.add(&e, r.loc)
	ents := r.rp.Entries
	if n := len(ents); n > 0 && e.Index <= ents[n-1].Index {
		keep := int(max(e.Index, ents[0].Index) - ents[0].Index)
		for i := keep; i < n; i++ {
			r.bytes -= ents[i].PayloadSize()
		}
		ents = ents[:keep]
	}
	e.Data = bytes.Clone(e.Data)
	r.rp.Entries = append(ents, e)
	r.bytes += e.PayloadSize()
	if r.tail > 0 && r.bytes > 2*r.tail {
		// Trimming to half the slack copies once per tail's worth of
		// entries read, not once per entry.
		r.trim(r.tail)
	}
	return nil
}

// trim drops the oldest replayed entries until their payload is within
// limit bytes, keeping the last entry (0: no limit). The index still
// locates the dropped ones.
func (r *replayer) trim(limit uint64) {
	ents := r.rp.Entries
	if limit == 0 || r.bytes <= limit {
		return
	}
	n := 0
	for n < len(ents)-1 && r.bytes > limit {
		r.bytes -= ents[n].PayloadSize()
		n++
	}
	r.rp.Entries = append([]pb.Entry(nil), ents[n:]...)
}

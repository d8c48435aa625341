package wal

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// ErrUnavailable is returned by ReadEntries when the requested entries are
// not in the WAL (purged, or never written).
var ErrUnavailable = errors.New("wal: entries unavailable")

// ReadEntries reads entries [lo, hi) back from the segment files, as the
// log stood after every overwrite, stopping once maxSize bytes of payload
// are collected (at least one entry is returned). It serves entries that a
// log store no longer caches. It reads exactly the records of the entries
// returned, with positioned reads located by the in-memory entry index,
// so its cost follows what is asked, not the size of the log or of a
// segment; each record is checked against the crc chain.
func (w *WAL) ReadEntries(lo, hi, maxSize uint64) ([]pb.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	w.mu.Lock()
	if err := w.usable(); err != nil {
		w.mu.Unlock()
		return nil, err
	}
	if lo < w.idx.first || hi-1 > w.idx.last() || w.idx.empty() {
		first, last := w.idx.first, w.idx.last()
		w.mu.Unlock()
		return nil, fmt.Errorf("%w: entries [%d, %d) are not all in the WAL in %s, which holds [%d, %d]", ErrUnavailable, lo, hi, w.dir, first, last)
	}
	locs := w.idx.span(lo, hi, maxSize)
	if locs[len(locs)-1].seq == uint32(w.segments[len(w.segments)-1].seq) {
		// Part of what is asked may still be buffered.
		if err := w.flush(); err != nil {
			w.mu.Unlock()
			return nil, err
		}
	}
	names := make(map[uint32]string, 2)
	for _, s := range w.segments {
		if uint32(s.seq) >= locs[0].seq && uint32(s.seq) <= locs[len(locs)-1].seq {
			names[uint32(s.seq)] = filepath.Join(w.dir, s.name)
		}
	}
	w.mu.Unlock()

	ents := make([]pb.Entry, 0, len(locs))
	var f vfs.File
	var open uint32
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for len(locs) > 0 {
		// One read covers a run of entries of one segment, through the
		// small records (hard states) that may lie between them.
		n := 1
		for n < len(locs) && locs[n].seq == locs[0].seq && locs[n].off >= locs[n-1].off+int64(locs[n-1].rec) &&
			locs[n].off-(locs[n-1].off+int64(locs[n-1].rec)) <= maxReadGap {
			n++
		}
		run := locs[:n]
		locs = locs[n:]
		name, ok := names[run[0].seq]
		if !ok {
			return nil, fmt.Errorf("%w: the segment holding entry %d was removed from %s", ErrUnavailable, lo+uint64(len(ents)), w.dir)
		}
		if f == nil || open != run[0].seq {
			if f != nil {
				f.Close()
			}
			var err error
			if f, err = w.fs.Open(name); err != nil {
				f = nil
				return nil, fmt.Errorf("wal: opening %s: %w", name, err)
			}
			open = run[0].seq
		}
		var err error
		if ents, err = readRun(f, name, run, ents); err != nil {
			return nil, err
		}
	}
	if ents[0].Index != lo {
		return nil, fmt.Errorf("%w: the index of %s places entry %d where entry %d is", ErrCorrupt, w.dir, lo, ents[0].Index)
	}
	return ents, nil
}

// TailWithin returns how many of the n entries up to and including
// index (at most) fit in maxBytes of payload, counting back from index:
// entries the WAL does not hold end the count.
func (w *WAL) TailWithin(index, n, maxBytes uint64) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var k, size uint64
	for ; k < n && index-k >= w.idx.first && index-k <= w.idx.last() && !w.idx.empty(); k++ {
		size += uint64(w.idx.at(index - k).size)
		if size > maxBytes {
			break
		}
	}
	return k
}

// Term returns the term of entry i, from memory, if the WAL holds the
// entry (see ReleaseTo).
func (w *WAL) Term(i uint64) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.idx.term(i)
}

// maxReadGap is how many bytes of other records one read may span between
// two entries rather than be split in two reads.
const maxReadGap = 4 << 10

// readRun reads the entries at run (one segment, ascending offsets) with
// one positioned read and appends them to ents. Records between them are
// decoded for the crc chain and skipped: hard states, and entries a later
// write overwrote.
func readRun(f vfs.File, name string, run []entryLoc, ents []pb.Entry) ([]pb.Entry, error) {
	end := run[len(run)-1].off + int64(run[len(run)-1].rec)
	buf := make([]byte, end-run[0].off)
	if _, err := f.ReadAt(buf, run[0].off); err != nil {
		return nil, fmt.Errorf("wal: reading %s at offset %d: %w", name, run[0].off, err)
	}
	seed := run[0].seed
	for off, k := 0, 0; k < len(run); {
		at := run[0].off + int64(off)
		t, payload, size, crc, _, err := decodeRecord(buf[off:], seed)
		if err != nil {
			return nil, fmt.Errorf("%w: %s at offset %d: %v; restore this member from a snapshot or another member", ErrCorrupt, name, at, err)
		}
		seed = crc
		off += size
		if at != run[k].off {
			continue
		}
		if t != entryRecord {
			return nil, fmt.Errorf("%w: %s at offset %d: a %v record where the index has an entry", ErrCorrupt, name, at, t)
		}
		var e pb.Entry
		if err := pb.UnmarshalEntry(payload, &e); err != nil {
			return nil, fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, name, at, err)
		}
		if n := len(ents); n > 0 && e.Index != ents[n-1].Index+1 {
			return nil, fmt.Errorf("%w: %s at offset %d: entry %d where the index has entry %d", ErrCorrupt, name, at, e.Index, ents[n-1].Index+1)
		}
		ents = append(ents, e)
		k++
	}
	return ents, nil
}

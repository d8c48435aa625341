package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// ErrUnavailable is returned by ReadEntries when the requested entries are
// not in the WAL (purged, or never written).
var ErrUnavailable = errors.New("wal: entries unavailable")

// ReadEntries reads entries [lo, hi) back from the segment files, as the
// log stood after every overwrite, stopping once maxSize bytes of payload
// are collected (at least one entry is returned). It serves entries that a
// log store no longer caches; entries still buffered are not visible, so
// callers read only what they saved before.
func (w *WAL) ReadEntries(lo, hi, maxSize uint64) ([]pb.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	w.mu.Lock()
	if err := w.usable(); err != nil {
		w.mu.Unlock()
		return nil, err
	}
	if err := w.flush(); err != nil {
		w.mu.Unlock()
		return nil, err
	}
	segs := append([]segment(nil), w.segments...)
	w.mu.Unlock()

	start := -1
	for i, s := range segs {
		if s.first <= lo {
			start = i
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("%w: entry %d precedes the oldest segment %s", ErrUnavailable, lo, segs[0].name)
	}
	var got []pb.Entry
	for _, s := range segs[start:] {
		name := filepath.Join(w.dir, s.name)
		f, err := w.fs.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("wal: opening %s: %w", name, err)
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("wal: reading %s: %w", name, err)
		}
		got, err = collectEntries(got, data, name, lo, hi)
		if err != nil {
			return nil, err
		}
	}
	if len(got) == 0 || got[0].Index != lo {
		return nil, fmt.Errorf("%w: entry %d is not in the WAL in %s", ErrUnavailable, lo, w.dir)
	}
	var size uint64
	for i := range got {
		size += got[i].PayloadSize()
		if i > 0 && size > maxSize {
			return got[:i], nil
		}
	}
	return got, nil
}

// collectEntries folds the entry records of one segment into got, which
// holds entries from lo on, applying overwrites. The segment's own crc
// chain is checked.
func collectEntries(got []pb.Entry, data []byte, name string, lo, hi uint64) ([]pb.Entry, error) {
	seed, err := peekCRCRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	for off := 0; off < len(data); {
		t, payload, size, crc, _, err := decodeRecord(data[off:], seed)
		if errors.Is(err, errEndOfRecords) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, name, off, err)
		}
		seed = crc
		off += size
		if t != entryRecord {
			continue
		}
		var e pb.Entry
		if err := pb.UnmarshalEntry(payload, &e); err != nil {
			return nil, fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, name, off-size, err)
		}
		switch {
		case e.Index < lo:
			// An overwrite from before lo replaces everything after it.
			got = got[:0]
		case e.Index-lo <= uint64(len(got)):
			if e.Index < hi {
				e.Data = append([]byte(nil), e.Data...)
				got = append(got[:e.Index-lo], e)
			} else if e.Index-lo < uint64(len(got)) {
				got = got[:e.Index-lo]
			}
		}
	}
	return got, nil
}

package wal

import (
	"sort"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// entryLoc is where one entry's record lies in the segment files: enough
// to read it back with one positioned read of exactly its bytes, and to
// check it against the crc chain without reading what precedes it.
type entryLoc struct {
	off  int64  // offset of the record in its segment
	seq  uint32 // the segment's sequence number
	seed uint32 // the running crc before the record (its chain seed)
	rec  uint32 // the record's size, header included
	size uint32 // the entry's payload size (pb.Entry.PayloadSize)
}

// termRun says that the entries from first on, up to the next run's
// first, have term term.
type termRun struct{ first, term uint64 }

// entryIndex knows, for every entry of the log that may still be read,
// where its record is and what its term is. A log store that keeps only
// the newest entries in memory answers Term from it without touching the
// disk, and reads older entries with positioned reads bounded by what
// was asked, never by the size of a segment.
//
// Memory: 24 bytes per entry, and 16 per term change. The entries it holds
// are those after the newest snapshot and its catch-up entries (ReleaseTo
// drops the rest), which the snapshot count bounds. Locations are kept in
// chunks of fixed size, so that growing never copies the whole index and
// dropping the oldest entries frees whole chunks.
//
// Invariants: the entries are contiguous, first to first+n-1; entry
// first+i is at position skip+i of the concatenated chunks; every chunk
// but the last is full; runs are ordered by first, and no run starts
// after the last entry.
type entryIndex struct {
	first  uint64
	n      int
	skip   int
	chunks [][]entryLoc
	runs   []termRun
}

// chunkLen is the number of locations per chunk (24 KiB); tests shrink
// it to cross chunk boundaries often.
var chunkLen = 1024

// last returns the index of the last entry; first-1 when empty.
func (x *entryIndex) last() uint64 { return x.first + uint64(x.n) - 1 }

// empty reports whether the index holds no entry.
func (x *entryIndex) empty() bool { return x.n == 0 }

// at returns the location of entry i, which the index holds.
func (x *entryIndex) at(i uint64) entryLoc {
	p := x.skip + int(i-x.first)
	return x.chunks[p/chunkLen][p%chunkLen]
}

// reset empties the index; the next entry added is at index next.
func (x *entryIndex) reset(next uint64) {
	*x = entryIndex{first: next}
}

// add records e, written at loc. As raft overwrites its log, an entry at
// or before the last one replaces it and everything after it; an entry
// that does not follow the log (before its first, or past a gap) starts
// the index anew at it.
func (x *entryIndex) add(e *pb.Entry, loc entryLoc) {
	switch {
	case e.Index < x.first || e.Index > x.last()+1:
		x.reset(e.Index)
	case e.Index <= x.last():
		x.truncateBack(e.Index)
	}
	if k := len(x.chunks); k == 0 || len(x.chunks[k-1]) == chunkLen {
		x.chunks = append(x.chunks, make([]entryLoc, 0, chunkLen))
	}
	k := len(x.chunks) - 1
	x.chunks[k] = append(x.chunks[k], loc)
	x.n++
	if n := len(x.runs); n == 0 || x.runs[n-1].term != e.Term {
		x.runs = append(x.runs, termRun{first: e.Index, term: e.Term})
	}
}

// truncateBack drops the entries from index on (first <= index <= last).
func (x *entryIndex) truncateBack(index uint64) {
	p := x.skip + int(index-x.first)
	x.chunks = x.chunks[:p/chunkLen+1]
	x.chunks[p/chunkLen] = x.chunks[p/chunkLen][:p%chunkLen]
	x.n = int(index - x.first)
	n := sort.Search(len(x.runs), func(k int) bool { return x.runs[k].first >= index })
	x.runs = x.runs[:n]
}

// truncateFront drops the entries before index, which are never read
// again, freeing the chunks that held only those.
func (x *entryIndex) truncateFront(index uint64) {
	if index <= x.first {
		return
	}
	if index > x.last() {
		x.reset(index)
		return
	}
	p := x.skip + int(index-x.first)
	x.chunks = append([][]entryLoc(nil), x.chunks[p/chunkLen:]...)
	x.skip = p % chunkLen
	x.n -= int(index - x.first)
	// The run holding index starts at index now.
	k := sort.Search(len(x.runs), func(k int) bool { return x.runs[k].first > index }) - 1
	runs := append([]termRun(nil), x.runs[k:]...)
	runs[0].first = index
	x.first, x.runs = index, runs
}

// term returns the term of entry i, if the index holds it.
func (x *entryIndex) term(i uint64) (uint64, bool) {
	if x.empty() || i < x.first || i > x.last() {
		return 0, false
	}
	k := sort.Search(len(x.runs), func(k int) bool { return x.runs[k].first > i }) - 1
	return x.runs[k].term, true
}

// span returns the locations of entries [lo, hi), cut after the first
// entry once maxSize bytes of payload would be exceeded (as raft limits
// what it asks of storage). The caller checked that the index holds them.
func (x *entryIndex) span(lo, hi, maxSize uint64) []entryLoc {
	locs := []entryLoc{x.at(lo)}
	size := uint64(locs[0].size)
	for i := lo + 1; i < hi; i++ {
		l := x.at(i)
		size += uint64(l.size)
		if size > maxSize {
			break
		}
		locs = append(locs, l)
	}
	return locs
}

// Package wal is synod's write-ahead log: the durable record of raft log
// entries and hard state, written before a member acts on them.
//
// The log is a directory of segment files named
// <sequence %016x>-<first index %016x>.wal. Each segment is a chain of
// CRC-checked records (see record.go) opened by a crc record that continues
// the chain of the previous segment and a metadata record. Writes go to the
// last segment; when it exceeds the segment size, the log moves to a new
// segment that a background goroutine has already created and
// preallocated, so the write path never waits for file creation.
//
// Durability: Save appends the entries and hard state of one raft Ready and,
// when asked, makes them durable with one fdatasync. Concurrent Saves share
// a sync (group commit). After a crash, Open replays from a snapshot marker;
// a record torn by the crash at the very end of the last segment is cut
// away (and logged), while any other damage is an error naming the file
// and offset: a WAL never silently skips data.
package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/synod-db/synod/diskfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// Errors callers can test for with errors.Is.
var (
	// ErrCorrupt is wrapped by errors about damaged or inconsistent WAL
	// files: a bad record before the tail, a missing segment, a broken chain.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrSnapshotNotFound means the snapshot marker to open from is not in
	// the WAL: the snapshot file and the WAL do not belong together.
	ErrSnapshotNotFound = errors.New("wal: snapshot marker not found")
	// ErrExists is returned by Create when the directory already has a WAL.
	ErrExists = errors.New("wal: directory already holds a WAL")
	// ErrNotFound is returned by Open when the directory has no WAL.
	ErrNotFound = errors.New("wal: no WAL in directory")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("wal: closed")
)

// DefaultSegmentSize is the size at which the log moves to a new segment.
const DefaultSegmentSize = 64 << 20

// DefaultMaxSegments is how many segments Purge keeps (etcd's --max-wals).
const DefaultMaxSegments = 5

// Options configure a WAL. Zero values take the documented defaults.
type Options struct {
	// FS is the file system; nil means diskfs.Default.
	FS diskfs.FS
	// SegmentSize is the size at which a new segment is started; zero means
	// DefaultSegmentSize.
	SegmentSize int64
	// PreallocBytes is how much of each segment is reserved on disk
	// before it is written (the current one and the one prepared next),
	// so that appends do not allocate; the rest is allocated as written.
	// Zero means SegmentSize, or a sixteenth of the file system if that
	// is less: on a small disk two segments reserved whole would leave
	// little room for the data itself.
	PreallocBytes int64
	// MaxSegments is how many segment files the background purge keeps at
	// least; it only removes segments wholly before the latest snapshot.
	// Zero means DefaultMaxSegments; negative means never purge.
	MaxSegments int
	// Logger receives repairs and purges; nil means slog.Default().
	Logger *slog.Logger
	// ReplayTailBytes bounds the entries Open returns in Replay.Entries to
	// the newest ones within this many bytes of payload (at least the last
	// entry), so that restarting with a long log does not hold all of it
	// in memory; the older ones stay readable with ReadEntries. Zero
	// returns them all.
	ReplayTailBytes uint64
}

func (o *Options) fill(dir string) {
	if o.FS == nil {
		o.FS = diskfs.Default
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.PreallocBytes <= 0 {
		o.PreallocBytes = min(o.SegmentSize, diskfs.Size(o.FS, dir)/16)
	}
	if o.MaxSegments == 0 {
		o.MaxSegments = DefaultMaxSegments
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Marker names a saved snapshot: the WAL is replayed from the entry after
// it.
type Marker struct {
	Index, Term uint64
	// ReplacesLog is set for a snapshot received from the leader, which
	// replaces the whole log: entries saved before it with higher indexes
	// are not part of the log any more. A snapshot taken locally to compact
	// the log leaves the entries after it in place. Open ignores this field.
	ReplacesLog bool
}

// Replay is what Open read back.
type Replay struct {
	// Metadata is what Create was given.
	Metadata []byte
	// HardState is the last hard state saved.
	HardState pb.HardState
	// Entries are the entries after the marker, with later writes of an
	// index replacing earlier ones (and everything after them), as raft
	// overwrites its log. With Options.ReplayTailBytes they are only the
	// newest of them.
	Entries []pb.Entry
	// Repaired is the number of bytes cut from a torn tail (0 if none).
	Repaired int64
}

// segment describes one segment file.
type segment struct {
	seq, first uint64
	name       string
}

func segmentName(seq, first uint64) string { return fmt.Sprintf("%016x-%016x.wal", seq, first) }

func parseSegmentName(name string) (segment, bool) {
	var s segment
	if !strings.HasSuffix(name, ".wal") || len(name) != 16+1+16+4 {
		return s, false
	}
	if _, err := fmt.Sscanf(name, "%016x-%016x.wal", &s.seq, &s.first); err != nil {
		return s, false
	}
	s.name = name
	return s, true
}

// WAL is an open write-ahead log. Its methods are safe for concurrent use.
type WAL struct {
	dir  string
	opts Options
	fs   diskfs.FS
	lock io.Closer

	mu   sync.Mutex
	cond *sync.Cond
	// segments lists the segment files, oldest first; the last is open.
	segments []segment
	f        vfs.File
	// off is the size of the current segment counting buffered bytes.
	off int64
	// buf holds records not yet written to the file.
	buf       []byte
	crc       uint32
	metadata  []byte
	lastIndex uint64
	state     pb.HardState
	// writeSeq counts Saves; syncedSeq is the last one known durable.
	writeSeq, syncedSeq uint64
	syncing             bool
	// err is sticky: after a failed write or sync the WAL's durable state
	// is unknown (a failed fsync cannot be retried safely), so every later
	// write fails with it.
	err    error
	closed bool
	// snapIndex is the index of the newest snapshot marker saved.
	snapIndex uint64
	// idx locates and gives the term of every entry that may be read.
	idx entryIndex

	pipe      *pipeline
	purgeKick chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup
}

// Create makes a new WAL in dir (created if needed) recording metadata
// (for synod, the cluster and member IDs).
func Create(dir string, metadata []byte, opts Options) (*WAL, error) {
	opts.fill(dir)
	fs := opts.FS
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: creating %s: %w", dir, err)
	}
	lock, err := fs.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, err
	}
	segs, err := listSegments(fs, dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	if len(segs) > 0 {
		lock.Close()
		return nil, fmt.Errorf("%w: %s has %d segments; open it instead, or remove it to start over", ErrExists, dir, len(segs))
	}
	w := newWAL(dir, opts, lock)
	w.metadata = bytes.Clone(metadata)
	w.idx.reset(1)
	name := segmentName(0, 0)
	// The first segment is written under a temporary name (one the
	// pipeline reuses, so a crash leaves no litter) and renamed once its
	// head is durable: a crash during Create leaves no segment, or a
	// complete one.
	tmp := filepath.Join(dir, "0.wal.tmp")
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err == nil {
		if err = f.Preallocate(0, opts.PreallocBytes); err != nil {
			f.Close()
		}
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("wal: creating first segment in %s: %w", dir, err)
	}
	w.f = f
	w.segments = []segment{{seq: 0, first: 0, name: name}}
	w.appendRecord(crcRecord, crcPayload(0))
	w.appendRecord(metadataRecord, w.metadata)
	// A marker for the empty snapshot, so that Open(Marker{}) finds it.
	w.appendRecord(snapshotRecord, markerPayload(Marker{}))
	if err := w.flushAndSync(); err != nil {
		w.closeFiles()
		return nil, err
	}
	if err := fs.Rename(tmp, filepath.Join(dir, name)); err != nil {
		w.closeFiles()
		return nil, fmt.Errorf("wal: installing the first segment in %s: %w", dir, err)
	}
	if err := diskfs.SyncDir(fs, dir); err != nil {
		w.closeFiles()
		return nil, fmt.Errorf("wal: syncing %s: %w", dir, err)
	}
	w.start()
	return w, nil
}

func newWAL(dir string, opts Options, lock io.Closer) *WAL {
	w := &WAL{dir: dir, opts: opts, fs: opts.FS, lock: lock, purgeKick: make(chan struct{}, 1), stop: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// start launches the background goroutines: segment preparation and purge.
func (w *WAL) start() {
	w.pipe = newPipeline(w.fs, w.dir, w.opts.PreallocBytes, w.opts.Logger)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.purgeLoop()
	}()
}

func listSegments(fs diskfs.FS, dir string) ([]segment, error) {
	names, err := diskfs.List(fs, dir)
	if err != nil {
		return nil, fmt.Errorf("wal: listing %s: %w", dir, err)
	}
	var segs []segment
	for _, n := range names {
		if s, ok := parseSegmentName(n); ok {
			segs = append(segs, s)
		}
	}
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, fmt.Errorf("%w: segment %d missing between %s and %s in %s", ErrCorrupt, segs[i-1].seq+1, segs[i-1].name, segs[i].name, dir)
		}
		if segs[i].first < segs[i-1].first {
			return nil, fmt.Errorf("%w: segment %s starts before its predecessor %s in %s", ErrCorrupt, segs[i].name, segs[i-1].name, dir)
		}
	}
	return segs, nil
}

func crcPayload(crc uint32) []byte { return binary.LittleEndian.AppendUint32(nil, crc) }

func markerPayload(m Marker) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 17), m.Index)
	b = binary.LittleEndian.AppendUint64(b, m.Term)
	if m.ReplacesLog {
		return append(b, 1)
	}
	return append(b, 0)
}

func parseMarker(p []byte) (Marker, error) {
	if len(p) != 17 || p[16] > 1 {
		return Marker{}, fmt.Errorf("snapshot record of %d bytes is malformed", len(p))
	}
	return Marker{
		Index:       binary.LittleEndian.Uint64(p),
		Term:        binary.LittleEndian.Uint64(p[8:]),
		ReplacesLog: p[16] == 1,
	}, nil
}

// appendRecord adds a record to the buffer; the caller holds mu.
func (w *WAL) appendRecord(t recordType, payload []byte) {
	start := len(w.buf)
	w.buf, w.crc = appendRecord(w.buf, w.crc, t, payload)
	w.off += int64(len(w.buf) - start)
}

// appendEntry adds an entry record, encoding the entry in place, and
// records where it is.
func (w *WAL) appendEntry(e *pb.Entry) {
	start := len(w.buf)
	loc := entryLoc{off: w.off, seq: uint32(w.segments[len(w.segments)-1].seq), seed: w.crc, size: uint32(e.PayloadSize())}
	w.buf = append(w.buf, make([]byte, headerSize)...)
	w.buf = append(w.buf, byte(entryRecord))
	w.buf = pb.AppendEntry(w.buf, e)
	w.crc = sealRecord(w.buf[start:], w.crc)
	loc.rec = uint32(len(w.buf) - start)
	w.off += int64(loc.rec)
	w.idx.add(e, loc)
}

// Save appends entries and, if it changed, the hard state. With sync it
// returns once they are durable, sharing one fdatasync with concurrent
// callers; without, they become durable with a later synced Save.
func (w *WAL) Save(hs pb.HardState, ents []pb.Entry, sync bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	for i := range ents {
		w.appendEntry(&ents[i])
	}
	if n := len(ents); n > 0 {
		w.lastIndex = ents[n-1].Index
	}
	if !hs.IsEmpty() && hs != w.state {
		w.appendRecord(stateRecord, pb.AppendHardState(nil, hs))
		w.state = hs
	}
	w.writeSeq++
	seq := w.writeSeq
	if w.off >= w.opts.SegmentSize {
		if err := w.cut(); err != nil {
			return err
		}
	} else if len(w.buf) >= flushThreshold {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if !sync {
		return nil
	}
	return w.waitSynced(seq)
}

// flushThreshold is how much is buffered before it is written to the file
// even without a sync, bounding the memory held by unsynced Saves.
const flushThreshold = 1 << 20

func (w *WAL) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// waitSynced returns once Save number seq is durable. The first waiter
// becomes the sync leader: it writes out the buffer, releases the lock
// while fdatasync runs (so others keep appending), and wakes everyone it
// covered. The caller holds mu.
func (w *WAL) waitSynced(seq uint64) error {
	for w.syncedSeq < seq {
		if err := w.usable(); err != nil {
			return err
		}
		if w.syncing {
			w.cond.Wait()
			continue
		}
		w.syncing = true
		target := w.writeSeq
		err := w.flush()
		f := w.f
		w.mu.Unlock()
		if err == nil {
			err = f.Sync()
		}
		w.mu.Lock()
		w.syncing = false
		if err != nil {
			w.fail(fmt.Errorf("wal: syncing %s: %w", w.currentName(), err))
		} else if target > w.syncedSeq {
			w.syncedSeq = target
		}
		w.cond.Broadcast()
	}
	return nil
}

func (w *WAL) currentName() string {
	return filepath.Join(w.dir, w.segments[len(w.segments)-1].name)
}

// fail makes err sticky. The caller holds mu.
func (w *WAL) fail(err error) {
	if w.err == nil {
		w.err = err
		w.opts.Logger.Error("wal: write failed; refusing further writes", "err", err)
	}
}

// flush writes the buffer to the current file. The caller holds mu.
func (w *WAL) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	// Writes are positioned: the file's own offset is never used, so
	// that opening a segment to append needs no seek.
	if _, err := w.f.WriteAt(w.buf, w.off-int64(len(w.buf))); err != nil {
		w.fail(fmt.Errorf("wal: writing %s: %w", w.currentName(), err))
		return w.err
	}
	w.buf = w.buf[:0]
	return nil
}

// flushAndSync writes and syncs synchronously (used outside group commit,
// where nobody else can be appending).
func (w *WAL) flushAndSync() error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.fail(fmt.Errorf("wal: syncing %s: %w", w.currentName(), err))
		return w.err
	}
	w.syncedSeq = w.writeSeq
	return nil
}

// cut finishes the current segment and continues in a new one. The old
// segment is made durable and trimmed first, so that only the last segment
// can ever have a torn tail. The caller holds mu.
func (w *WAL) cut() error {
	for w.syncing {
		// A sync leader is using the current file without the lock.
		w.cond.Wait()
	}
	if err := w.flushAndSync(); err != nil {
		return err
	}
	name := w.currentName()
	if err := w.fs.Truncate(w.currentName(), w.off); err != nil {
		w.fail(fmt.Errorf("wal: trimming %s: %w", name, err))
		return w.err
	}
	if err := w.f.Sync(); err != nil {
		w.fail(fmt.Errorf("wal: syncing %s: %w", name, err))
		return w.err
	}
	next, err := w.pipe.take()
	if err != nil {
		w.fail(fmt.Errorf("wal: preparing the next segment in %s: %w", w.dir, err))
		return w.err
	}
	last := w.segments[len(w.segments)-1]
	// After an overwrite lastIndex may be below the previous segment's
	// first index; names stay ordered (replay only needs first to exceed
	// the last index at the time of the cut).
	seg := segment{seq: last.seq + 1, first: max(w.lastIndex+1, last.first)}
	seg.name = segmentName(seg.seq, seg.first)
	// The new segment's head is written and synced while the file is still
	// temporary: once it has a segment's name, a crash may tear its tail,
	// never its head.
	head, crc := appendRecord(nil, w.crc, crcRecord, crcPayload(w.crc))
	head, crc = appendRecord(head, crc, metadataRecord, w.metadata)
	if !w.state.IsEmpty() {
		head, crc = appendRecord(head, crc, stateRecord, pb.AppendHardState(nil, w.state))
	}
	_, err = next.f.WriteAt(head, 0)
	if err == nil {
		err = next.f.Sync()
	}
	if err != nil {
		next.f.Close()
		w.fail(fmt.Errorf("wal: writing the head of segment %s: %w", seg.name, err))
		return w.err
	}
	if err := w.fs.Rename(next.name, filepath.Join(w.dir, seg.name)); err != nil {
		next.f.Close()
		w.fail(fmt.Errorf("wal: installing segment %s: %w", seg.name, err))
		return w.err
	}
	if err := diskfs.SyncDir(w.fs, w.dir); err != nil {
		next.f.Close()
		w.fail(fmt.Errorf("wal: syncing %s: %w", w.dir, err))
		return w.err
	}
	if err := w.f.Close(); err != nil {
		w.opts.Logger.Warn("wal: closing finished segment", "file", name, "err", err)
	}
	w.f = next.f
	w.segments = append(w.segments, seg)
	w.off = int64(len(head))
	w.crc = crc
	return nil
}

// SaveSnapshot records, durably, that a snapshot at m is being saved, so
// that the WAL can later be replayed from it. Write the marker before the
// snapshot file: then every snapshot file on disk has its marker, even
// after a crash between the two. Segments are only purged once ReleaseTo
// says the snapshot file itself is durable.
func (w *WAL) SaveSnapshot(m Marker) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	w.appendRecord(snapshotRecord, markerPayload(m))
	if m.ReplacesLog {
		// The log now ends at the snapshot, possibly past the last entry:
		// segments cut from here on must be named after it, or replay
		// from it would start past its marker.
		w.lastIndex = m.Index
		w.idx.reset(m.Index + 1)
	}
	w.writeSeq++
	return w.waitSynced(w.writeSeq)
}

// ReleaseTo lets the background purge remove segments wholly before the
// snapshot at index, whose file is durable: replay will start from it.
// Entries before index are not readable any more (the entry at index
// stays, for its term).
func (w *WAL) ReleaseTo(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index <= w.snapIndex {
		return
	}
	w.snapIndex = index
	w.idx.truncateFront(index)
	select {
	case w.purgeKick <- struct{}{}:
	default:
	}
}

// Close makes everything saved durable, stops the background goroutines
// and releases the directory lock. It is idempotent.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	for w.syncing {
		w.cond.Wait()
	}
	var err error
	if w.err == nil {
		err = w.flushAndSync()
		if err == nil {
			// Trim the preallocated tail; reopening appends after the data.
			err = w.fs.Truncate(w.currentName(), w.off)
		}
	}
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	close(w.stop)
	w.wg.Wait()
	if w.pipe != nil {
		w.pipe.close()
	}
	w.closeFiles()
	return err
}

func (w *WAL) closeFiles() {
	if w.f != nil {
		w.f.Close()
	}
	if w.lock != nil {
		w.lock.Close()
	}
}

// Dir returns the WAL's directory.
func (w *WAL) Dir() string { return w.dir }

// Segments returns the names of the segment files, oldest first.
func (w *WAL) Segments() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, len(w.segments))
	for i, s := range w.segments {
		names[i] = s.name
	}
	return names
}

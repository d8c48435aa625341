package mvcc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/synod-db/synod/diskfs"
)

// Store is a multi-version key space stored in one Pebble database. It is
// safe for concurrent use: writes (Write, Put, DeleteRange, Compact,
// Restore) are serialized; reads run concurrently with each other.
type Store struct {
	dir  string
	opts Options

	wmu       sync.Mutex // serializes writers: held by an open WriteGroup and by every other write (taken before mu)
	mu        sync.RWMutex
	snaps     sync.WaitGroup // Snapshot streams in progress (they outlive mu)
	size      atomic.Int64   // DiskSize's cached value
	sizeAt    atomic.Int64   // when size was computed (unix ns)
	db        *pebble.DB
	rev       int64  // current revision
	compacted int64  // compacted revision (0 if never compacted)
	ci        uint64 // consistent index
	// logical is the size of the history (see LogicalSize); written
	// under wmu and mu, read without a lock on every write request.
	logical atomic.Int64

	// Buffers a write builds its batch keys and values in (Pebble copies
	// them into the batch), so that a put allocates none; guarded by wmu.
	keyBuf, valBuf, refBuf []byte

	hot *hotReads // current values of recently read keys

	// compactHashes are the hashes of the history up to each of the last
	// compactions' revisions, taken just before the compaction removed
	// anything (guarded by mu). HashByRev answers them for those
	// revisions, so that a hash taken to compare members gives the same
	// answer before and after compaction and defragmentation at that
	// revision, as etcd's does (it keeps the last 10 the same way). They
	// live in memory only: after a restart the hash is computed from
	// what compaction kept, again as in etcd.
	compactHashes []revHash
}

// revHash is the hash of the history up to a revision.
type revHash struct {
	rev  int64
	hash uint32
}

// maxCompactHashes is how many compactions' hashes a store remembers.
const maxCompactHashes = 10

// pebbleLogger passes Pebble's logs on: its informational ones (every
// flush and compaction) at debug level, its background errors (a failed
// flush or compaction, a table it cannot delete) at error level, where an
// operator sees them. A nil logger drops them.
type pebbleLogger struct{ lg *slog.Logger }

// Infof logs at debug level.
func (l pebbleLogger) Infof(format string, args ...interface{}) {
	if l.lg != nil && l.lg.Enabled(context.Background(), slog.LevelDebug) {
		l.lg.Debug("pebble: " + fmt.Sprintf(format, args...))
	}
}

// Errorf logs at error level.
func (l pebbleLogger) Errorf(format string, args ...interface{}) {
	if l.lg != nil {
		l.lg.Error("pebble: " + fmt.Sprintf(format, args...))
	}
}

// Fatalf logs and panics: Pebble calls it only on unrecoverable
// corruption.
func (l pebbleLogger) Fatalf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	if l.lg != nil {
		l.lg.Error("pebble: fatal: " + msg)
	}
	panic(msg)
}

// DefaultCacheSize is the Pebble block cache size used when
// Options.CacheSize is 0. Pebble's own default (8 MiB) makes reads of a
// store with some history go to disk and decompress blocks on every call.
const DefaultCacheSize = 64 << 20

// Options tune the store.
type Options struct {
	// CacheSize is the Pebble block cache size in bytes (0: DefaultCacheSize).
	CacheSize int64
	// FS is the file system the store lives on; nil means
	// diskfs.Default. Crash tests pass one that loses unsynced writes
	// (diskfs.MemFS).
	FS diskfs.FS
	// OnNoSpace, if set, is called with the file's name when a write to
	// the store's files fails for lack of space, before Pebble sees the
	// failure (see noSpaceFS for why). It should end the process; if it
	// returns, the error goes on to Pebble.
	OnNoSpace func(path string, err error)
	// Logger receives the storage engine's logs (see pebbleLogger); nil
	// drops them.
	Logger *slog.Logger
}

// fs returns the file system the options name.
func (o Options) fs() diskfs.FS {
	if o.FS == nil {
		return diskfs.Default
	}
	return o.FS
}

func openDB(dir string, o Options) (*pebble.DB, error) {
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	po := pebbleOptions(o)
	size := diskfs.Size(po.FS, dir)
	po.FS = newNoSpaceFS(po.FS, size, o.OnNoSpace)
	// Pebble keeps up to four logs of 110% of the memtable size each (the
	// current one and three recycled): on a small disk that reserve would
	// take much of the space, so memtables shrink with the disk there.
	po.MemTableSize = uint64(max(min(memTableSize, size/48), minMemTableSize))
	return pebble.Open(dir, po)
}

// Pebble's defaults suit a database that is mostly read; the key space
// takes a steady stream of small writes, each stored three times (in the
// r, k and c spaces), and on a small machine the flushes and compactions
// of that stream cost more CPU than applying it (a fifth of a loaded
// leader's CPU with the defaults). These settings cut that work:
const (
	// memTableSize: a larger memtable flushes less often, drops the
	// overwritten c-space versions of hot keys before they reach a table,
	// and makes each L0 file larger, so that the L0-to-base compactions,
	// which rewrite the overlapping base level (all of the k space),
	// happen fewer times for the same data. But Pebble keeps two of them
	// resident (the one being filled and a flushed one it recycles), so
	// their size is a member's largest fixed memory cost: at 16 MiB a
	// member's peak RSS under load was 15 MiB above what it is at 8 MiB,
	// for 0-7% less CPU per put in the mvcc layer (BenchmarkSustainedPut
	// at one core) now that large write groups look keys up through one
	// iterator instead of a Get per key.
	memTableSize = 8 << 20
	// minMemTableSize is the smallest memtable used on a small disk.
	minMemTableSize = 1 << 20
	// l0CompactionThreshold and l0StopWritesThreshold: more L0 files
	// before a compaction, for the same reason (bloom filters keep point
	// reads from probing every one of them).
	l0CompactionThreshold = 8
	l0StopWritesThreshold = 32
	// blockSize: larger blocks mean fewer blocks, index entries and
	// writes per table.
	blockSize = 16 << 10
)

// pebbleOptions returns the database options for o.
func pebbleOptions(o Options) *pebble.Options {
	po := &pebble.Options{
		Logger:                pebbleLogger{o.Logger},
		CacheSize:             o.CacheSize,
		FS:                    o.fs(),
		MemTableSize:          memTableSize,
		L0CompactionThreshold: l0CompactionThreshold,
		L0StopWritesThreshold: l0StopWritesThreshold,
	}
	for i := range po.Levels {
		po.Levels[i].BlockSize = blockSize
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// Values are often already compact (or random, like IDs and keys);
	// compressing them costs CPU on every flush and compaction for little
	// space, and etcd's bbolt does not compress either.
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	return po
}

// Open opens (creating if needed) the store in dir with default Options.
func Open(dir string) (*Store, error) {
	return OpenWithOptions(dir, Options{})
}

// OpenWithOptions opens (creating if needed) the store in dir and restores
// its revision, compaction point and consistent index.
func OpenWithOptions(dir string, o Options) (*Store, error) {
	if err := finishRestore(o.fs(), dir); err != nil {
		return nil, err
	}
	db, err := openDB(dir, o)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: o, db: db, hot: newHotReads()}
	if err := s.loadMeta(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.ensureCurrentSpace(); err != nil {
		db.Close()
		return nil, fmt.Errorf("mvcc: build the current-version index: %w", err)
	}
	return s, nil
}

func (s *Store) loadMeta() error {
	s.rev, s.compacted, s.ci = 1, 0, 0
	s.logical.Store(-1)
	for _, m := range []struct {
		k []byte
		f func([]byte)
	}{
		{metaRev, func(v []byte) {
			s.rev = int64(binary.BigEndian.Uint64(v))
			if len(v) == 16 {
				s.logical.Store(int64(binary.BigEndian.Uint64(v[8:])))
			}
		}},
		{metaCompacted, func(v []byte) { s.compacted = int64(binary.BigEndian.Uint64(v)) }},
		{metaConsIndex, func(v []byte) { s.ci = binary.BigEndian.Uint64(v) }},
	} {
		v, c, err := s.db.Get(m.k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if len(v) != 8 && !(len(v) == 16 && bytes.Equal(m.k, metaRev)) {
			c.Close()
			return fmt.Errorf("%w: metadata %q", ErrCorrupt, m.k)
		}
		m.f(v)
		c.Close()
	}
	if s.logical.Load() < 0 {
		// A store written before the size was kept: measure it once.
		n, err := s.measureLogical()
		if err != nil {
			return err
		}
		s.logical.Store(n)
	}
	return nil
}

// LogicalSize returns the bytes of the key space's history: every
// revision kept (key, value, lease and versions, as the r space holds
// them), however many times Pebble has them on disk. It is what the
// space quota is compared with, as etcd compares its database size: the
// data a user stored, not the engine's logs, obsolete tables not yet
// deleted, or its indexes. Every member computes the same value from the
// same history; compaction lowers it.
func (s *Store) LogicalSize() int64 { return s.logical.Load() }

// SizeInUse is the size Status reports as in use (etcd's dbSizeInUse):
// LogicalSize plus the store's own records in the m space (revision,
// indexes, membership, leases). It is measured, so it costs a scan of
// the m space, and it is never 0 for an open store, as etcd's is not.
func (s *Store) SizeInUse() (int64, error) {
	s.mu.RLock()
	if s.db == nil {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	n := s.logical.Load()
	s.snaps.Add(1)
	snap := s.db.NewSnapshot()
	s.mu.RUnlock()
	defer s.snaps.Done()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte("m/"), UpperBound: []byte("m0")})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, err
		}
		n += int64(len(it.Key()) + len(v))
	}
	return n, it.Error()
}

// measureLogical sums the r space.
func (s *Store) measureLogical() (int64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRev}, UpperBound: []byte{prefixRev + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, err
		}
		n += int64(len(it.Key()) + len(v))
	}
	return n, it.Error()
}

func putMeta(b *pebble.Batch, k []byte, v uint64) error {
	return b.Set(k, binary.BigEndian.AppendUint64(nil, v), nil)
}

// putRev records the revision and the logical size together in m/rev:
// a write that adds history always makes a revision, so one key serves
// both. Stores written before the size was kept have 8 bytes there.
func putRev(b *pebble.Batch, rev, logical int64) error {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(rev))
	return b.Set(metaRev, binary.BigEndian.AppendUint64(v, uint64(logical)), nil)
}

// Close closes the store, after waiting for Snapshot streams in
// progress. Further calls return ErrClosed.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	s.snaps.Wait()
	err := s.db.Close()
	s.db = nil
	return err
}

// Rev returns the current revision (1 for an empty store).
func (s *Store) Rev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// CompactedRev returns the revision of the last compaction, 0 if none.
func (s *Store) CompactedRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compacted
}

// ConsistentIndex returns the raft index of the last applied entry.
func (s *Store) ConsistentIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ci
}

// SetConsistentIndex durably records idx as applied without changing the
// key space (for raft entries that do not touch the store). Indexes not
// greater than the current one are ignored.
func (s *Store) SetConsistentIndex(idx uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	if idx <= s.ci {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := putMeta(b, metaConsIndex, idx); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	s.ci = idx
	return nil
}

// reader is what Range needs: a Pebble DB, batch or snapshot.
type reader interface {
	getter
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

// Range reads the keys in [key, end) (etcd's range_end rules: empty end
// is the single key, end "\x00" is every key >= key) at opts.Rev.
func (s *Store) Range(key, end []byte, opts RangeOptions) (RangeResult, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return RangeResult{}, ErrClosed
	}
	if len(end) == 0 && len(key) > 0 && (opts.Rev == 0 || opts.Rev == s.rev) {
		return s.rangeCurrent(key, &opts)
	}
	return rangeAt(s.db, key, end, opts, s.rev, s.compacted)
}

// rangeCurrent reads one key at the current revision from the c space
// (the caller holds mu.RLock, so the database is at s.rev).
func (s *Store) rangeCurrent(key []byte, opts *RangeOptions) (RangeResult, error) {
	res := RangeResult{Rev: s.rev}
	v := s.hot.get(key)
	if v == nil {
		got, closer, err := s.db.Get(curKey(key))
		if errors.Is(err, pebble.ErrNotFound) {
			return res, nil
		}
		if err != nil {
			return RangeResult{}, err
		}
		defer closer.Close()
		v = got
		s.hot.fill(key, v)
	}
	if len(v) < 16 {
		return RangeResult{}, fmt.Errorf("%w: current version of %q", ErrCorrupt, key)
	}
	r, err := decodeRecord(v[16:], false)
	if err != nil {
		return RangeResult{}, err
	}
	res.Count = 1
	mod := decodeRev(v[:16])
	if opts.CountOnly || !passFilters(opts, r.create, mod.main) {
		return res, nil
	}
	if !opts.KeysOnly {
		if err := r.loadValue(s.db, mod); err != nil {
			return RangeResult{}, err
		}
	}
	res.KVs = []KeyValue{r.kv(mod, opts.KeysOnly)}
	return res, nil
}

// ensureCurrentSpace builds the c space of a store written before it
// existed (m/format missing): the newest live version of every key.
func (s *Store) ensureCurrentSpace() error {
	v, c, err := s.db.Get(metaFormat)
	if err == nil {
		defer c.Close()
		switch f := binary.BigEndian.Uint64(append(make([]byte, 8-min(len(v), 8)), v...)); {
		case f > formatCurrent:
			return fmt.Errorf("the key space in %s has format %d, newer than this synod's %d: it was written by a newer synod; run that one", s.dir, f, formatCurrent)
		case f < formatCurrent:
			// Formats 1 and 2 are read as they are; newer records come
			// as written.
			return s.db.Set(metaFormat, binary.BigEndian.AppendUint64(nil, formatCurrent), pebble.Sync)
		}
		return nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixKey}, UpperBound: []byte{prefixKeyHi}})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; {
		p, _, ok := splitVersionKey(it.Key())
		if !ok {
			return fmt.Errorf("%w: key index entry %q", ErrCorrupt, it.Key())
		}
		prefix := append([]byte(nil), p...)
		if latestAt(it, prefix, s.rev) {
			val, err := it.ValueAndErr()
			if err != nil {
				return err
			}
			r, err := decodeRecord(val, true)
			if err != nil {
				return err
			}
			rev := decodeRev(it.Key()[len(prefix):])
			if err := r.loadValue(s.db, rev); err != nil {
				return err
			}
			if err := setCurrent(b, curKey(r.key), r.encode(appendRev(nil, rev)), r.tombstone); err != nil {
				return err
			}
		}
		valid = it.SeekGE(prefixEnd(prefix))
	}
	if err := it.Error(); err != nil {
		return err
	}
	if err := b.Set(metaFormat, binary.BigEndian.AppendUint64(nil, formatCurrent), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

func checkRev(rev, cur, compacted int64) (int64, error) {
	if rev <= 0 {
		return cur, nil
	}
	if rev > cur {
		return 0, ErrFutureRev
	}
	if rev < compacted {
		return 0, ErrCompacted
	}
	return rev, nil
}

// latestAt positions it on the newest version of the key with the given
// prefix at or below rev; it reports whether one exists.
func latestAt(it *pebble.Iterator, prefix []byte, rev int64) bool {
	target := appendRev(append(make([]byte, 0, len(prefix)+16), prefix...), revision{rev + 1, 0})
	if !it.SeekLT(target) {
		return false
	}
	k := it.Key()
	return len(k) == len(prefix)+16 && bytes.HasPrefix(k, prefix)
}

func rangeAt(rd reader, key, end []byte, opts RangeOptions, cur, compacted int64) (RangeResult, error) {
	rev, err := checkRev(opts.Rev, cur, compacted)
	if err != nil {
		return RangeResult{}, err
	}
	res := RangeResult{Rev: cur}
	filtered := opts.MinCreateRev != 0 || opts.MaxCreateRev != 0 || opts.MinModRev != 0 || opts.MaxModRev != 0
	naturalOrder := opts.SortTarget == SortByKey && opts.SortOrder != SortDescend
	// With the natural order and no filter, results past Limit+1 are only
	// counted, never decoded into KVs.
	stopAt := int64(-1)
	if naturalOrder && !filtered && opts.Limit > 0 {
		stopAt = opts.Limit + 1
	}
	if rev == cur {
		err = rangeLive(rd, key, end, &res, &opts, stopAt, filtered)
	} else {
		err = rangeHistory(rd, key, end, rev, &res, &opts, stopAt, filtered)
	}
	if err != nil {
		return RangeResult{}, err
	}
	if !naturalOrder {
		sortKVs(res.KVs, opts.SortTarget, opts.SortOrder == SortDescend)
	}
	if opts.Limit > 0 && int64(len(res.KVs)) > opts.Limit {
		res.KVs = res.KVs[:opts.Limit]
		res.More = true
	}
	return res, nil
}

// rangeLive reads [key, end) at the current revision from the c space:
// one entry per live key, so a range costs one seek and a step per key,
// whatever the keys' histories.
func rangeLive(rd reader, key, end []byte, res *RangeResult, opts *RangeOptions, stopAt int64, filtered bool) error {
	lo, hi := curKey(key), []byte{prefixCur + 1}
	switch {
	case len(end) == 0:
		hi = append(curKey(key), 0)
	case len(end) == 1 && end[0] == 0:
	default:
		hi = curKey(end)
	}
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid && !res.full(opts, stopAt); valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) < 17 {
			return fmt.Errorf("%w: current version of %q", ErrCorrupt, it.Key()[1:])
		}
		if v[16]&recTombstone != 0 {
			continue
		}
		res.Count++
		if opts.CountOnly || (stopAt >= 0 && int64(len(res.KVs)) >= stopAt) {
			continue
		}
		r, err := decodeRecord(v[16:], false)
		if err != nil {
			return err
		}
		mod := decodeRev(v[:16])
		if filtered && !passFilters(opts, r.create, mod.main) {
			continue
		}
		if !opts.KeysOnly {
			if err := r.loadValue(rd, mod); err != nil {
				return err
			}
		}
		res.KVs = append(res.KVs, r.kv(mod, opts.KeysOnly))
	}
	return it.Error()
}

// rangeHistory reads [key, end) at an older revision from the k space.
func rangeHistory(rd reader, key, end []byte, rev int64, res *RangeResult, opts *RangeOptions, stopAt int64, filtered bool) error {
	lo, hi := rangeBounds(key, end)
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	// Visit each user key once: find its first entry, then SeekLT to its
	// newest version at or below rev; then step to the next key (Next
	// usually gets there when reading at the newest revision). A single-key
	// range knows its prefix and seeks straight to the version.
	var prefix []byte
	single := len(end) == 0
	if single {
		prefix = lo
	}
	valid := single || it.SeekGE(lo)
	for valid && !res.full(opts, stopAt) {
		if !single {
			p, _, ok := splitVersionKey(it.Key())
			if !ok {
				return fmt.Errorf("%w: key index entry %q", ErrCorrupt, it.Key())
			}
			prefix = append(prefix[:0], p...)
		}
		found := latestAt(it, prefix, rev)
		if found {
			if err := visit(rd, it, prefix, res, opts, stopAt, filtered); err != nil {
				return err
			}
		}
		if single {
			break
		}
		if found && it.Next() && !bytes.HasPrefix(it.Key(), prefix) {
			continue
		}
		valid = it.SeekGE(prefixEnd(prefix))
	}
	return it.Error()
}

// full reports that a NoTotal read has found all it needs: stopAt
// results, one more than its limit.
func (res *RangeResult) full(opts *RangeOptions, stopAt int64) bool {
	return opts.NoTotal && stopAt >= 0 && int64(len(res.KVs)) >= stopAt
}

// visit adds the version under it (the newest of its key at the read
// revision) to res, unless it is a deletion.
func visit(g getter, it *pebble.Iterator, prefix []byte, res *RangeResult, opts *RangeOptions, stopAt int64, filtered bool) error {
	v, err := it.ValueAndErr()
	if err != nil {
		return err
	}
	if len(v) == 0 {
		return ErrCorrupt
	}
	if v[0]&recTombstone != 0 {
		return nil
	}
	res.Count++
	if opts.CountOnly || (stopAt >= 0 && int64(len(res.KVs)) >= stopAt) {
		return nil
	}
	r, err := decodeRecord(v, false)
	if err != nil {
		return err
	}
	mod := decodeRev(it.Key()[len(prefix):])
	if filtered && !passFilters(opts, r.create, mod.main) {
		return nil
	}
	if !opts.KeysOnly {
		if err := r.loadValue(g, mod); err != nil {
			return err
		}
	}
	res.KVs = append(res.KVs, r.kv(mod, opts.KeysOnly))
	return nil
}

func passFilters(o *RangeOptions, create, mod int64) bool {
	if o.MinCreateRev != 0 && create < o.MinCreateRev {
		return false
	}
	if o.MaxCreateRev != 0 && create > o.MaxCreateRev {
		return false
	}
	if o.MinModRev != 0 && mod < o.MinModRev {
		return false
	}
	if o.MaxModRev != 0 && mod > o.MaxModRev {
		return false
	}
	return true
}

func sortKVs(kvs []KeyValue, target SortTarget, desc bool) {
	var cmp func(a, b *KeyValue) int
	switch target {
	case SortByVersion:
		cmp = func(a, b *KeyValue) int { return cmpInt(a.Version, b.Version) }
	case SortByCreate:
		cmp = func(a, b *KeyValue) int { return cmpInt(a.CreateRevision, b.CreateRevision) }
	case SortByMod:
		cmp = func(a, b *KeyValue) int { return cmpInt(a.ModRevision, b.ModRevision) }
	case SortByValue:
		cmp = func(a, b *KeyValue) int { return bytes.Compare(a.Value, b.Value) }
	default:
		cmp = func(a, b *KeyValue) int { return bytes.Compare(a.Key, b.Key) }
	}
	sort.SliceStable(kvs, func(i, j int) bool {
		c := cmp(&kvs[i], &kvs[j])
		if desc {
			return c > 0
		}
		return c < 0
	})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// WriteTxn is a write transaction: every change made through it belongs
// to one revision (the store's revision + 1), with one sub-revision per
// change. Reads through it see its own writes. A WriteTxn is valid only
// inside the function passed to Store.Write.
type WriteTxn struct {
	s      *Store
	g      *WriteGroup
	b      *pebble.Batch
	rev    int64 // revision of the changes
	sub    int64 // next sub-revision
	events []Event
}

// Rev returns the revision the transaction reads at: the store's revision
// before the transaction if it has changed nothing yet, else the new one.
func (tx *WriteTxn) Rev() int64 {
	if tx.sub == 0 {
		return tx.rev - 1
	}
	return tx.rev
}

// Range reads through the transaction (seeing its writes); opts.Rev 0
// reads at tx.Rev().
func (tx *WriteTxn) Range(key, end []byte, opts RangeOptions) (RangeResult, error) {
	return rangeAt(tx.b, key, end, opts, tx.Rev(), tx.s.compacted)
}

// Get returns the live version of key at tx.Rev() (nil if none); a
// helper for the server's Txn compares.
func (tx *WriteTxn) Get(key []byte) (*KeyValue, error) {
	r, rev, ok, err := tx.latest(key)
	if err != nil || !ok {
		return nil, err
	}
	kv := r.ownedKV(rev)
	return &kv, nil
}

// latest returns the newest live record of key in the transaction's view,
// a point lookup in the c space (the indexed batch sees the transaction's
// own writes).
func (tx *WriteTxn) latest(key []byte) (record, revision, bool, error) {
	s := tx.s
	s.keyBuf = append(append(s.keyBuf[:0], prefixCur), key...)
	v, ok, err := tx.g.current(s.keyBuf)
	if err != nil || !ok {
		return record{}, revision{}, false, err
	}
	if len(v) < 16 {
		return record{}, revision{}, false, fmt.Errorf("%w: current version of %q", ErrCorrupt, key)
	}
	r, err := decodeRecord(v[16:], true)
	if err != nil {
		return record{}, revision{}, false, err
	}
	rev := decodeRev(v[:16])
	if err := r.loadValue(tx.b, rev); err != nil {
		return record{}, revision{}, false, err
	}
	return r, rev, true, nil
}

// write stores one change at the next sub-revision.
func (tx *WriteTxn) write(r *record) (revision, error) {
	rev := revision{tx.rev, tx.sub}
	s := tx.s
	// The c space value is the revision then the record: encode it once
	// and use its tail for the r space.
	s.valBuf = r.encode(appendRev(s.valBuf[:0], rev))
	s.keyBuf = appendRev(append(s.keyBuf[:0], prefixRev), rev)
	if err := tx.b.Set(s.keyBuf, s.valBuf[16:], nil); err != nil {
		return rev, err
	}
	tx.g.logical += int64(len(s.keyBuf) + len(s.valBuf) - 16)
	s.keyBuf = appendRev(appendVersionPrefix(s.keyBuf[:0], r.key), rev)
	s.refBuf = r.encodeRef(s.refBuf[:0])
	if err := tx.b.Set(s.keyBuf, s.refBuf, nil); err != nil {
		return rev, err
	}
	s.keyBuf = append(append(s.keyBuf[:0], prefixCur), r.key...)
	cur := s.valBuf
	if len(r.value) >= largeValue {
		cur = r.encodeCurrent(appendRev(s.refBuf[:0], rev))
		s.refBuf = cur
	}
	if err := setCurrent(tx.b, s.keyBuf, cur, r.tombstone); err != nil {
		return rev, err
	}
	tx.g.wroteCurrent(s.keyBuf, cur, r.tombstone)
	s.hot.written(r.key)
	tx.sub++
	return rev, nil
}

// setCurrent records a key's newest version (value: revision, record) at
// its c space key ck, or removes the key from the c space on a deletion,
// so that reading one key at the current revision is a point lookup
// instead of an iterator seek.
func setCurrent(b *pebble.Batch, ck, value []byte, tombstone bool) error {
	if tombstone {
		return b.Delete(ck, nil)
	}
	return b.Set(ck, value, nil)
}

// Put writes key=value with the given lease. With opts.PrevKV the
// replaced version (nil if none) is returned.
func (tx *WriteTxn) Put(key, value []byte, lease int64, opts PutOptions) (*KeyValue, error) {
	if len(key) == 0 {
		return nil, ErrEmptyKey
	}
	prev, prevRev, ok, err := tx.latest(key)
	if err != nil {
		return nil, err
	}
	if !ok && (opts.IgnoreValue || opts.IgnoreLease) {
		return nil, ErrKeyNotFound
	}
	r := record{key: key, value: value, lease: lease, version: 1, create: tx.rev}
	if ok {
		r.create, r.version = prev.create, prev.version+1
		if opts.IgnoreValue {
			r.value = prev.value
		}
		if opts.IgnoreLease {
			r.lease = prev.lease
		}
	}
	rev, err := tx.write(&r)
	if err != nil {
		return nil, err
	}
	ev := Event{Type: EventPut, KV: r.kv(rev, false)}
	var pkv *KeyValue
	if ok {
		kv := prev.ownedKV(prevRev)
		pkv = &kv
		ev.PrevKV = pkv
	}
	tx.events = append(tx.events, ev)
	if !opts.PrevKV {
		return nil, nil
	}
	return pkv, nil
}

// DeleteRange deletes the live keys in [key, end) (etcd's range_end
// rules) and returns how many were deleted and, with prevKV, their last
// versions.
func (tx *WriteTxn) DeleteRange(key, end []byte, prevKV bool) (int64, []KeyValue, error) {
	res, err := tx.Range(key, end, RangeOptions{})
	if err != nil {
		return 0, nil, err
	}
	for i := range res.KVs {
		kv := &res.KVs[i]
		rev, err := tx.write(&record{key: kv.Key, tombstone: true})
		if err != nil {
			return 0, nil, err
		}
		tx.events = append(tx.events, Event{
			Type:   EventDelete,
			KV:     KeyValue{Key: kv.Key, ModRevision: rev.main},
			PrevKV: kv,
		})
	}
	if !prevKV {
		return int64(len(res.KVs)), nil, nil
	}
	return int64(len(res.KVs)), res.KVs, nil
}

// Write runs fn in a write transaction applied as raft entry raftIndex
// and commits its changes, together with the consistent index, in one
// Pebble batch. It returns the store's revision after the write and the
// events of the changes. If raftIndex is not greater than the consistent
// index the entry was already applied: Write does nothing and returns the
// current revision. raftIndex 0 means "not from raft" (no check, no
// update). If fn fails nothing is changed, but the consistent index still
// advances (replaying the entry would fail the same way).
func (s *Store) Write(raftIndex uint64, fn func(tx *WriteTxn) error) (int64, []Event, error) {
	g, err := s.Group()
	if err != nil {
		return 0, nil, err
	}
	defer g.Close()
	rev, events, ferr := g.Write(raftIndex, fn)
	if err := g.Commit(); err != nil {
		return 0, nil, err
	}
	return rev, events, ferr
}

// Put writes one key as its own revision (see WriteTxn.Put). It returns
// the new revision and, with opts.PrevKV, the previous version.
func (s *Store) Put(raftIndex uint64, key, value []byte, lease int64, opts PutOptions) (int64, *KeyValue, error) {
	var prev *KeyValue
	rev, _, err := s.Write(raftIndex, func(tx *WriteTxn) error {
		var err error
		prev, err = tx.Put(key, value, lease, opts)
		return err
	})
	return rev, prev, err
}

// DeleteRange deletes [key, end) as one revision (no new revision when
// nothing is deleted). It returns the revision after the delete, the
// number deleted and, with prevKV, the deleted versions.
func (s *Store) DeleteRange(raftIndex uint64, key, end []byte, prevKV bool) (int64, int64, []KeyValue, error) {
	var n int64
	var prev []KeyValue
	rev, _, err := s.Write(raftIndex, func(tx *WriteTxn) error {
		var err error
		n, prev, err = tx.DeleteRange(key, end, prevKV)
		return err
	})
	return rev, n, prev, err
}

// Compact physically removes every version superseded at or before rev:
// for each key only its newest version at or below rev survives, and not
// even that one if it is a deletion made before rev. Reads below rev then fail with
// ErrCompacted. It is applied as raft entry raftIndex (0: not from raft)
// in one atomic batch.
func (s *Store) Compact(raftIndex uint64, rev int64) error {
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
	if rev > s.rev {
		return ErrFutureRev
	}
	if rev <= s.compacted {
		return ErrCompacted
	}
	b := s.db.NewBatch()
	defer b.Close()
	rit, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixRev},
		UpperBound: revKey(revision{rev + 1, 0}),
	})
	if err != nil {
		return err
	}
	defer rit.Close()
	kit, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixKey}, UpperBound: []byte{prefixKeyHi}})
	if err != nil {
		return err
	}
	defer kit.Close()
	logical := s.logical.Load()
	// The loop visits every revision up to rev, as HashByRev does: its
	// hash is that of the history before the compaction.
	h := newHistoryHash()
	for valid := rit.First(); valid; valid = rit.Next() {
		v, err := rit.ValueAndErr()
		if err != nil {
			return err
		}
		h.Write(rit.Key())
		h.Write(v)
		r, err := decodeRecord(v, false)
		if err != nil {
			return err
		}
		if len(rit.Key()) != 17 {
			return ErrCorrupt
		}
		at := decodeRev(rit.Key()[1:])
		prefix := keyPrefix(r.key)
		if !latestAt(kit, prefix, rev) {
			return fmt.Errorf("%w: revision %v missing from key index", ErrCorrupt, at)
		}
		newest := decodeRev(kit.Key()[len(prefix):])
		// Keep each key's newest version at rev, and a deletion only if it
		// happened at rev itself: then the history of revision rev stays
		// complete and a watch may still start there, as in etcd.
		if newest == at && (!r.tombstone || at.main == rev) {
			continue
		}
		if err := b.Delete(rit.Key(), nil); err != nil {
			return err
		}
		logical -= int64(len(rit.Key()) + len(v))
		if err := b.Delete(appendRev(prefix, at), nil); err != nil {
			return err
		}
	}
	if err := rit.Error(); err != nil {
		return err
	}
	if err := putMeta(b, metaCompacted, uint64(rev)); err != nil {
		return err
	}
	if err := putRev(b, s.rev, logical); err != nil {
		return err
	}
	if raftIndex != 0 {
		if err := putMeta(b, metaConsIndex, raftIndex); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	s.compacted = rev
	s.logical.Store(logical)
	if raftIndex != 0 {
		s.ci = raftIndex
	}
	s.compactHashes = append(s.compactHashes, revHash{rev: rev, hash: h.Sum32()})
	if n := len(s.compactHashes); n > maxCompactHashes {
		s.compactHashes = slices.Delete(s.compactHashes, 0, n-maxCompactHashes)
	}
	return nil
}

// finishRestore settles a Restore interrupted by a crash. Restore loads
// <dir>.restore completely (synced), renames dir to <dir>.old, renames
// <dir>.restore to dir, then removes <dir>.old. So: dir missing with a
// <dir>.restore present means the second rename is still to do; otherwise
// any leftover .restore (incomplete load) or .old is garbage.
func finishRestore(fs vfs.FS, dir string) error {
	tmpDir, oldDir := dir+".restore", dir+".old"
	exists := func(name string) bool { _, err := fs.Stat(name); return err == nil }
	if _, err := fs.Stat(dir); errors.Is(err, os.ErrNotExist) && exists(tmpDir) && exists(oldDir) {
		if err := fs.Rename(tmpDir, dir); err != nil {
			return err
		}
	}
	if exists(dir) {
		if err := fs.RemoveAll(tmpDir); err != nil {
			return err
		}
		return fs.RemoveAll(oldDir)
	}
	return nil
}

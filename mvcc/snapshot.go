package mvcc

import (
	"bufio"
	"encoding/binary"

	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/synod-db/synod/diskfs"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newHistoryHash starts the hash of a history (HashByRev, and Compact for
// compactHashes). It begins with the name of what is hashed, "key", as
// etcd's begins with the name of its key bucket, so that even an empty
// history hashes to a value other than 0: the JSON gateway leaves a 0
// out, and tools read a missing hash as no answer.
func newHistoryHash() hash.Hash32 {
	h := crc32.New(castagnoli)
	h.Write([]byte("key"))
	return h
}

// HashByRev returns a CRC-32C over every stored version with a revision
// at or below rev (0: the current revision), in revision order, and the
// compacted revision the hash was taken after. Members that applied the
// same entries (including the same compactions) return the same hash.
// At the revision of one of the last compactions it is the hash taken
// just before that compaction (see Store.compactHashes).
func (s *Store) HashByRev(rev int64) (uint32, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0, 0, ErrClosed
	}
	rev, err := checkRev(rev, s.rev, s.compacted)
	if err != nil {
		return 0, 0, err
	}
	for _, rh := range s.compactHashes {
		if rh.rev == rev {
			return rh.hash, s.compacted, nil
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixRev},
		UpperBound: revKey(revision{rev + 1, 0}),
	})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	h := newHistoryHash()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, err
		}
		h.Write(it.Key())
		h.Write(v)
	}
	if err := it.Error(); err != nil {
		return 0, 0, err
	}
	return h.Sum32(), s.compacted, nil
}

// Hash is HashByRev at the current revision.
func (s *Store) Hash() (uint32, error) {
	h, _, err := s.HashByRev(0)
	return h, err
}

const snapMagic = "synod-mvcc-snapshot-v1\n"

// Snapshot writes a consistent point-in-time copy of the whole store
// (data and metadata, including the consistent index) to w. The stream is
// the magic line, then (uvarint key length, key, uvarint value length,
// value) per entry, then a zero key length, then the big-endian CRC-32C of
// everything before it. Writes may proceed while the snapshot streams.
func (s *Store) Snapshot(w io.Writer) error {
	snap, err := s.OpenSnapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	return snap.Stream(w)
}

// PointInTime is a frozen view of the whole store, taken at once and
// streamed later: the apply loop takes it between two entries (so it is
// exactly the state at the consistent index it reports) and a background
// goroutine streams it, so applying never waits for a snapshot to be
// written.
type PointInTime struct {
	s    *Store
	snap *pebble.Snapshot
	ci   uint64
	rev  int64
	once sync.Once
}

// OpenSnapshot freezes the store's current state. The caller must Close
// the result; until then Restore waits for it.
func (s *Store) OpenSnapshot() (*PointInTime, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	s.snaps.Add(1)
	return &PointInTime{s: s, snap: s.db.NewSnapshot(), ci: s.ci, rev: s.rev}, nil
}

// ConsistentIndex is the raft index of the last entry applied in the view.
func (p *PointInTime) ConsistentIndex() uint64 { return p.ci }

// Rev is the store revision in the view.
func (p *PointInTime) Rev() int64 { return p.rev }

// Close releases the view.
func (p *PointInTime) Close() {
	p.once.Do(func() {
		p.snap.Close()
		p.s.snaps.Done()
	})
}

// Stream writes the view in the format documented on Store.Snapshot.
func (p *PointInTime) Stream(w io.Writer) error {
	it, err := p.snap.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	bw := bufio.NewWriterSize(w, 64<<10)
	h := crc32.New(castagnoli)
	out := io.MultiWriter(bw, h)
	var tmp []byte
	if _, err := io.WriteString(out, snapMagic); err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		tmp = binary.AppendUvarint(tmp[:0], uint64(len(it.Key())))
		tmp = append(tmp, it.Key()...)
		tmp = binary.AppendUvarint(tmp, uint64(len(v)))
		if _, err := out.Write(tmp); err != nil {
			return err
		}
		if _, err := out.Write(v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if _, err := out.Write([]byte{0}); err != nil {
		return err
	}
	if _, err := bw.Write(binary.BigEndian.AppendUint32(nil, h.Sum32())); err != nil {
		return err
	}
	return bw.Flush()
}

// Restore replaces the whole store with a stream written by Snapshot. The
// stream is loaded into a fresh database next to the store's directory
// (<dir>.restore) and checked; only then is it swapped in by renaming, so
// a bad stream leaves the store unchanged. It waits for Snapshot streams
// in progress. If the swap itself fails (a file system error) the store is
// left closed.
func (s *Store) Restore(r io.Reader) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	fs := s.opts.fs()
	tmpDir, oldDir := s.dir+".restore", s.dir+".old"
	if err := fs.RemoveAll(tmpDir); err != nil {
		return err
	}
	if err := loadSnapshot(tmpDir, r, fs); err != nil {
		fs.RemoveAll(tmpDir)
		return err
	}
	s.snaps.Wait()
	if err := s.db.Close(); err != nil {
		return err
	}
	s.db = nil
	s.hot.clear()
	if err := fs.RemoveAll(oldDir); err != nil {
		return err
	}
	if err := fs.Rename(s.dir, oldDir); err != nil {
		return err
	}
	if err := fs.Rename(tmpDir, s.dir); err != nil {
		return err
	}
	db, err := openDB(s.dir, s.opts)
	if err != nil {
		return err
	}
	s.db = db
	if err := s.loadMeta(); err != nil {
		return err
	}
	if err := s.ensureCurrentSpace(); err != nil {
		return err
	}
	return fs.RemoveAll(oldDir)
}

// crcReader hashes what it reads.
type crcReader struct {
	r *bufio.Reader
	h hash.Hash32
}

// ReadByte reads and hashes one byte (for binary.ReadUvarint).
func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.h.Write([]byte{b})
	}
	return b, err
}

func (c *crcReader) readFull(n uint64) ([]byte, error) {
	if n > 1<<30 {
		return nil, fmt.Errorf("%w: snapshot entry too large", ErrCorrupt)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return nil, err
	}
	c.h.Write(b)
	return b, nil
}

func loadSnapshot(dir string, r io.Reader, fs diskfs.FS) (err error) {
	db, err := openDB(dir, Options{CacheSize: 1 << 20, FS: fs})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	cr := &crcReader{r: bufio.NewReaderSize(r, 64<<10), h: crc32.New(castagnoli)}
	magic, err := cr.readFull(uint64(len(snapMagic)))
	if err != nil || string(magic) != snapMagic {
		return fmt.Errorf("%w: bad snapshot header", ErrCorrupt)
	}
	b := db.NewBatch()
	defer func() { b.Close() }()
	for {
		kl, err := binary.ReadUvarint(cr)
		if err != nil {
			return fmt.Errorf("%w: truncated snapshot: %v", ErrCorrupt, err)
		}
		if kl == 0 {
			break
		}
		k, err := cr.readFull(kl)
		if err != nil {
			return fmt.Errorf("%w: truncated snapshot: %v", ErrCorrupt, err)
		}
		if k[0] != prefixRev && k[0] != prefixKey && k[0] != prefixCur && k[0] != 'm' {
			return fmt.Errorf("%w: unexpected snapshot key %q", ErrCorrupt, k)
		}
		vl, err := binary.ReadUvarint(cr)
		if err != nil {
			return fmt.Errorf("%w: truncated snapshot: %v", ErrCorrupt, err)
		}
		v, err := cr.readFull(vl)
		if err != nil {
			return fmt.Errorf("%w: truncated snapshot: %v", ErrCorrupt, err)
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b.Close()
			b = db.NewBatch()
		}
	}
	want := cr.h.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(cr.r, sum[:]); err != nil {
		return fmt.Errorf("%w: truncated snapshot: %v", ErrCorrupt, err)
	}
	if binary.BigEndian.Uint32(sum[:]) != want {
		return fmt.Errorf("%w: snapshot checksum mismatch", ErrCorrupt)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	return nil
}

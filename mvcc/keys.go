package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// Layout of the Pebble key space (see the package documentation).
const (
	prefixRev   = 'r' // r<main 8B BE><sub 8B BE> -> record
	prefixKey   = 'k' // k<escaped key>\x00\x01<main><sub> -> record without its value
	prefixKeyHi = 'l' // first byte after the k/ space
	prefixCur   = 'c' // c<key> -> <main 8B BE><sub 8B BE> record: each live key's newest version
)

var (
	metaRev       = []byte("m/rev")
	metaCompacted = []byte("m/compacted")
	metaConsIndex = []byte("m/consistent_index")
	metaFormat    = []byte("m/format")
)

// formatCurrent is the m/format value of a store that keeps the c space.
// Stores of format 1 may hold k space records with their values inline
// (written before values moved to the r space only); readers take both.
// Format 2 adds c space records of large values that refer to the r space
// (see largeValue), which a reader of format 1 would take for empty
// values: a store of a newer format than the binary's is refused.
// Format 3 changes nothing in the key space: it marks a data directory
// whose raft log may hold entries in synod's envelope (server/entry.go),
// which builds of format 2 would skip; they refuse the directory instead.
const formatCurrent = 3

// largeValue is the size from which a live version's value is kept in
// the history (r space) only, its c space record referring to it: a
// large value is then written once to Pebble, not twice, which halves the
// bytes its logs, flushes and compactions move and the disk it takes,
// for one more point lookup when it is read at the current revision,
// small next to copying the value. Smaller values stay in both, so that
// reading them is one lookup.
const largeValue = 4 << 10

// curKey is key's entry in the c space.
func curKey(key []byte) []byte {
	b := make([]byte, 0, 1+len(key))
	return append(append(b, prefixCur), key...)
}

// revision is a (main, sub) revision pair.
type revision struct {
	main, sub int64
}

func appendRev(dst []byte, r revision) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.main))
	return binary.BigEndian.AppendUint64(dst, uint64(r.sub))
}

func decodeRev(b []byte) revision {
	return revision{int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))}
}

// revKey returns the r/ key of a revision.
func revKey(r revision) []byte {
	return appendRev(append(make([]byte, 0, 17), prefixRev), r)
}

// keyPrefix returns k + escape(key) + terminator: the common prefix of all
// versions of key in the k/ space. Escaping (0x00 -> 0x00 0xff, terminator
// 0x00 0x01) keeps the byte order of user keys and makes the prefix unique.
func keyPrefix(key []byte) []byte {
	return appendVersionPrefix(make([]byte, 0, len(key)+2+2+16), key)
}

// appendVersionPrefix appends keyPrefix(key) to b.
func appendVersionPrefix(b, key []byte) []byte {
	b = append(b, prefixKey)
	b = appendEscaped(b, key)
	return append(b, 0x00, 0x01)
}

func appendEscaped(b, key []byte) []byte {
	for _, c := range key {
		if c == 0 {
			b = append(b, 0x00, 0xff)
		} else {
			b = append(b, c)
		}
	}
	return b
}

// keyBound returns the k/ space bound that sorts before every version of
// every user key >= key.
func keyBound(key []byte) []byte {
	return appendEscaped(append(make([]byte, 0, len(key)+1), prefixKey), key)
}

// prefixEnd returns the smallest key greater than every key with prefix p
// (p is a keyPrefix, which ends in 0x01, so incrementing is safe).
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	e[len(e)-1]++
	return e
}

// splitVersionKey splits a k/ key into its key prefix (including the
// terminator) and its revision.
func splitVersionKey(k []byte) (prefix []byte, r revision, ok bool) {
	if len(k) < 1+2+16 || k[0] != prefixKey {
		return nil, revision{}, false
	}
	p := k[:len(k)-16]
	if p[len(p)-2] != 0x00 || p[len(p)-1] != 0x01 {
		return nil, revision{}, false
	}
	return p, decodeRev(k[len(k)-16:]), true
}

// rangeBounds turns etcd's (key, end) into k/ space iterator bounds.
func rangeBounds(key, end []byte) (lo, hi []byte) {
	switch {
	case len(end) == 0:
		p := keyPrefix(key)
		return p, prefixEnd(p)
	case len(end) == 1 && end[0] == 0:
		return keyBound(key), []byte{prefixKeyHi}
	default:
		return keyBound(key), keyBound(end)
	}
}

// record is the stored form of one version: a put or a tombstone.
type record struct {
	key       []byte
	value     []byte
	create    int64
	version   int64
	lease     int64
	tombstone bool
	// valueInRev: the value is not here but in the record of the same
	// revision in the r space (the k space keeps no values).
	valueInRev bool
}

// Record flags.
const (
	recTombstone  = 1
	recValueInRev = 2
)

// encode appends the record: flags, create, version, lease (varints), key
// length (uvarint), key, value.
func (r *record) encode(dst []byte) []byte {
	var flags byte
	if r.tombstone {
		flags |= recTombstone
	}
	if r.valueInRev {
		flags |= recValueInRev
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, r.create)
	dst = binary.AppendVarint(dst, r.version)
	dst = binary.AppendVarint(dst, r.lease)
	dst = binary.AppendUvarint(dst, uint64(len(r.key)))
	dst = append(dst, r.key...)
	return append(dst, r.value...)
}

// decodeRecord decodes a record; key and value alias b unless copy is set.
func decodeRecord(b []byte, copyBytes bool) (record, error) {
	var r record
	if len(b) < 1 {
		return r, ErrCorrupt
	}
	r.tombstone = b[0]&recTombstone != 0
	r.valueInRev = b[0]&recValueInRev != 0
	b = b[1:]
	var n int
	for _, p := range []*int64{&r.create, &r.version, &r.lease} {
		*p, n = binary.Varint(b)
		if n <= 0 {
			return r, ErrCorrupt
		}
		b = b[n:]
	}
	kl, n := binary.Uvarint(b)
	if n <= 0 || kl > uint64(len(b)-n) {
		return r, ErrCorrupt
	}
	b = b[n:]
	r.key, r.value = b[:kl], b[kl:]
	if copyBytes {
		r.key = append([]byte(nil), r.key...)
		r.value = append([]byte(nil), r.value...)
	}
	return r, nil
}

// encodeCurrent appends the record's c space form (after the revision):
// the whole record, or for a large value its reference form.
func (r *record) encodeCurrent(dst []byte) []byte {
	if len(r.value) >= largeValue {
		return r.encodeRef(dst)
	}
	return r.encode(dst)
}

// encodeRef appends the record's k space form: everything but the value,
// which only the r space record of the same revision holds. A put's value
// is thus stored twice (history and current version), not three times,
// and the k space, whose new entries land among all the old ones, stays
// small for the compactions that rewrite it.
func (r *record) encodeRef(dst []byte) []byte {
	ref := *r
	ref.valueInRev = !r.tombstone
	ref.value = nil
	return ref.encode(dst)
}

// getter is a Pebble DB, batch or snapshot.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// loadValue fills in the value of a record read from the k space, from
// the r space record of its revision; records that carry their value are
// left alone.
func (r *record) loadValue(g getter, rev revision) error {
	if !r.valueInRev {
		return nil
	}
	v, closer, err := g.Get(revKey(rev))
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("%w: revision %d.%d of %q is in the key index but not in the history", ErrCorrupt, rev.main, rev.sub, r.key)
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	full, err := decodeRecord(v, false)
	if err != nil {
		return err
	}
	if !bytes.Equal(full.key, r.key) {
		return fmt.Errorf("%w: revision %d.%d holds key %q, the key index says %q", ErrCorrupt, rev.main, rev.sub, full.key, r.key)
	}
	r.value = append([]byte(nil), full.value...)
	r.valueInRev = false
	return nil
}

// ownedKV builds the public KeyValue of a record stored at rev whose key
// and value are private copies (decoded with copyBytes), handing them
// over instead of copying them again.
func (r *record) ownedKV(rev revision) KeyValue {
	return KeyValue{Key: r.key, Value: r.value, CreateRevision: r.create, ModRevision: rev.main, Version: r.version, Lease: r.lease}
}

// kv builds the public KeyValue of a record stored at rev.
func (r *record) kv(rev revision, keysOnly bool) KeyValue {
	kv := KeyValue{
		Key:            append([]byte(nil), r.key...),
		CreateRevision: r.create,
		ModRevision:    rev.main,
		Version:        r.version,
		Lease:          r.lease,
	}
	if !keysOnly {
		kv.Value = append([]byte(nil), r.value...)
	}
	return kv
}

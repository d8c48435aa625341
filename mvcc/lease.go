package mvcc

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Leases are stored beside the key space so that granting, checkpointing
// and revoking one is applied exactly once, like any write: the record
// goes into the same Pebble batch as the consistent index (and, for a
// revocation, as the deletion of the lease's keys). Each lease is one
// entry in the metadata space, which every snapshot carries:
//
//	m/lease/<id 8B BE> -> format byte (2), TTL, remaining TTL (varints),
//	                      grant index (uvarint)
//
// Format 1 (before grant indexes were kept) has no grant index; it reads
// as 0.
//
// Which keys belong to which lease is not stored a second time: it is the
// Lease field of each key's live version, and the server rebuilds its
// attachments from it (ForEachLeasedKey) when it opens the store.
var leasePrefix = []byte("m/lease/")

// leaseFormat is the first byte of a stored lease record;
// leaseFormatNoGrant is the older format without the grant index.
const (
	leaseFormat        = 2
	leaseFormatNoGrant = 1
)

// LeaseRecord is the durable state of one lease.
type LeaseRecord struct {
	// ID is the lease ID (never 0).
	ID int64
	// TTL is the granted time to live in seconds.
	TTL int64
	// RemainingTTL is the time to live left at the last checkpoint, in
	// seconds; 0 means none was taken since the lease was granted or last
	// renewed, so a new leader counts the whole TTL.
	RemainingTTL int64
	// GrantIndex is the raft index of the entry that granted the lease
	// (0 for records written before it was kept).
	GrantIndex uint64
}

func leaseKey(id int64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(leasePrefix)+8), leasePrefix...), uint64(id))
}

func (r *LeaseRecord) encode() []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64)
	b = append(b, leaseFormat)
	b = binary.AppendVarint(b, r.TTL)
	b = binary.AppendVarint(b, r.RemainingTTL)
	return binary.AppendUvarint(b, r.GrantIndex)
}

func decodeLease(k, v []byte) (LeaseRecord, error) {
	bad := func() (LeaseRecord, error) {
		return LeaseRecord{}, fmt.Errorf("%w: lease record %x=%x", ErrCorrupt, k, v)
	}
	if len(k) != len(leasePrefix)+8 || len(v) < 1 || (v[0] != leaseFormat && v[0] != leaseFormatNoGrant) {
		return bad()
	}
	format := v[0]
	r := LeaseRecord{ID: int64(binary.BigEndian.Uint64(k[len(leasePrefix):]))}
	v = v[1:]
	var n int
	if r.TTL, n = binary.Varint(v); n <= 0 {
		return bad()
	}
	v = v[n:]
	if r.RemainingTTL, n = binary.Varint(v); n <= 0 {
		return bad()
	}
	v = v[n:]
	if format == leaseFormat {
		if r.GrantIndex, n = binary.Uvarint(v); n <= 0 {
			return bad()
		}
		v = v[n:]
	}
	if len(v) != 0 {
		return bad()
	}
	return r, nil
}

// PutLease stores (creates or replaces) a lease record as part of the
// transaction. It does not change the key space, so a transaction that only
// stores leases makes no new revision.
func (tx *WriteTxn) PutLease(r LeaseRecord) error {
	if r.ID == 0 {
		return fmt.Errorf("mvcc: lease ID 0 is reserved for \"no lease\"")
	}
	return tx.b.Set(leaseKey(r.ID), r.encode(), nil)
}

// DeleteLease removes a lease record as part of the transaction; deleting
// the lease's keys is the caller's business (in the same transaction, so
// that the revocation is atomic).
func (tx *WriteTxn) DeleteLease(id int64) error {
	return tx.b.Delete(leaseKey(id), nil)
}

// Leases returns every stored lease record, in ID order (as unsigned
// 64-bit numbers).
func (s *Store) Leases() ([]LeaseRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	hi := append([]byte(nil), leasePrefix...)
	hi[len(hi)-1]++
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: leasePrefix, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []LeaseRecord
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		r, err := decodeLease(it.Key(), v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, it.Error()
}

// ForEachLeasedKey calls fn for every live key (at the current revision)
// attached to a lease, in key order, with the lease ID. The key slice is
// only valid during the call. The server calls it when it opens the store
// (and after installing a snapshot) to rebuild which keys each lease must
// delete. It reads the current-version space in one sequential pass, one
// entry per live key, whatever the history. fn's error stops the walk and
// is returned.
func (s *Store) ForEachLeasedKey(fn func(key []byte, lease int64) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCur}, UpperBound: []byte{prefixCur + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) < 16 {
			return fmt.Errorf("%w: current version of %q", ErrCorrupt, it.Key()[1:])
		}
		r, err := decodeRecord(v[16:], false)
		if err != nil {
			return err
		}
		if !r.tombstone && r.lease != 0 {
			if err := fn(it.Key()[1:], r.lease); err != nil {
				return err
			}
		}
	}
	return it.Error()
}

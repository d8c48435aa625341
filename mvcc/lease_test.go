package mvcc

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

type leasedKey struct {
	key   string
	lease int64
}

func leasedKeys(t *testing.T, s *Store) []leasedKey {
	t.Helper()
	var out []leasedKey
	if err := s.ForEachLeasedKey(func(k []byte, l int64) error {
		out = append(out, leasedKey{string(k), l})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustLeases(t *testing.T, s *Store) []LeaseRecord {
	t.Helper()
	ls, err := s.Leases()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// TestLeaseRecords stores, replaces and deletes lease records in the
// consistent index's batch, without new revisions, and finds them again
// after a reopen and in a snapshot.
func TestLeaseRecords(t *testing.T) {
	s, dir := openTest(t)
	rev0 := s.Rev()
	write := func(idx uint64, fn func(tx *WriteTxn) error) {
		t.Helper()
		if _, _, err := s.Write(idx, fn); err != nil {
			t.Fatal(err)
		}
	}
	write(1, func(tx *WriteTxn) error { return tx.PutLease(LeaseRecord{ID: 7, TTL: 10}) })
	write(2, func(tx *WriteTxn) error { return tx.PutLease(LeaseRecord{ID: -1, TTL: 5, RemainingTTL: 3}) })
	write(3, func(tx *WriteTxn) error { return tx.PutLease(LeaseRecord{ID: 9, TTL: 20}) })
	write(4, func(tx *WriteTxn) error { return tx.PutLease(LeaseRecord{ID: 7, TTL: 10, RemainingTTL: 4}) })
	write(5, func(tx *WriteTxn) error { return tx.DeleteLease(9) })
	// Already applied: skipped.
	write(5, func(tx *WriteTxn) error { return tx.PutLease(LeaseRecord{ID: 100, TTL: 1}) })
	if s.Rev() != rev0 || s.ConsistentIndex() != 5 {
		t.Fatalf("rev %d (want %d), consistent index %d (want 5)", s.Rev(), rev0, s.ConsistentIndex())
	}
	want := []LeaseRecord{{ID: 7, TTL: 10, RemainingTTL: 4}, {ID: -1, TTL: 5, RemainingTTL: 3}}
	if got := mustLeases(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("leases %+v, want %+v", got, want)
	}
	if _, _, err := s.Write(6, func(tx *WriteTxn) error { return tx.PutLease(LeaseRecord{}) }); err == nil {
		t.Fatal("lease 0 stored")
	}

	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := mustLeases(t, s2); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: leases %+v, want %+v", got, want)
	}
	other, _ := openTest(t)
	if err := other.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if got := mustLeases(t, other); !reflect.DeepEqual(got, want) {
		t.Fatalf("after restore: leases %+v, want %+v", got, want)
	}
}

// TestRevokeOneRevision deletes a lease's keys and its record in one
// write: one revision, one delete event per key.
func TestRevokeOneRevision(t *testing.T) {
	s, _ := openTest(t)
	if _, _, err := s.Write(1, func(tx *WriteTxn) error {
		if err := tx.PutLease(LeaseRecord{ID: 3, TTL: 10}); err != nil {
			return err
		}
		for _, k := range []string{"a", "b", "c"} {
			if _, err := tx.Put([]byte(k), []byte("v"), 3, PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rev, evs, err := s.Write(2, func(tx *WriteTxn) error {
		for _, k := range []string{"a", "b", "c"} {
			if _, _, err := tx.DeleteRange([]byte(k), nil, false); err != nil {
				return err
			}
		}
		return tx.DeleteLease(3)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for _, ev := range evs {
		if ev.Type != EventDelete || ev.KV.ModRevision != rev || ev.PrevKV == nil || ev.PrevKV.Lease != 3 {
			t.Fatalf("event %+v (prev %+v), want a delete at %d of a key of lease 3", ev, ev.PrevKV, rev)
		}
	}
	if len(mustLeases(t, s)) != 0 || len(leasedKeys(t, s)) != 0 {
		t.Fatalf("lease or keys survived: %+v %+v", mustLeases(t, s), leasedKeys(t, s))
	}
}

// TestForEachLeasedKey lists the live version's lease of every key,
// whatever the history before it.
func TestForEachLeasedKey(t *testing.T) {
	s, _ := openTest(t)
	put := func(k string, lease int64) {
		t.Helper()
		if _, _, err := s.Put(0, []byte(k), []byte("v"), lease, PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", 1)
	put("a", 2) // moved to lease 2
	put("b", 1)
	put("b", 0) // detached
	put("c", 1)
	mustDel(t, s, "c", "") // deleted
	put("d", 3)
	put("e\x00x", 4) // escaped key
	put("e", 5)
	put("f", 0)
	put("g", 6)
	put("g", 6)
	if err := s.Compact(0, s.Rev()-1); err != nil {
		t.Fatal(err)
	}
	want := []leasedKey{{"a", 2}, {"d", 3}, {"e", 5}, {"e\x00x", 4}, {"g", 6}}
	if got := leasedKeys(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("leased keys %+v, want %+v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err := s.ForEachLeasedKey(func([]byte, int64) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("stop: err %v after %d calls", err, n)
	}
}

// TestLeaseRecordGrantIndex checks that a record keeps its grant index,
// and that a record of the older format without one reads as index 0.
func TestLeaseRecordGrantIndex(t *testing.T) {
	s, _ := openTest(t)
	if _, _, err := s.Write(1, func(tx *WriteTxn) error {
		return tx.PutLease(LeaseRecord{ID: 5, TTL: 10, RemainingTTL: 3, GrantIndex: 1 << 40})
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Set(leaseKey(6), []byte{leaseFormatNoGrant, 40, 2}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	got, err := s.Leases()
	want := []LeaseRecord{{ID: 5, TTL: 10, RemainingTTL: 3, GrantIndex: 1 << 40}, {ID: 6, TTL: 20, RemainingTTL: 1}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("leases %+v, %v; want %+v", got, err, want)
	}
}

// TestLeaseRecordCorrupt reports a damaged record instead of guessing.
func TestLeaseRecordCorrupt(t *testing.T) {
	s, _ := openTest(t)
	for _, v := range [][]byte{nil, {3, 2, 2, 2}, {leaseFormat}, {leaseFormat, 2}, {leaseFormat, 2, 2}, {leaseFormat, 2, 2, 2, 2},
		{leaseFormatNoGrant, 2, 2, 2}, {leaseFormat, 0xff}} {
		if err := s.db.Set(leaseKey(1), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Leases(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("record %x: err %v, want ErrCorrupt", v, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Leases(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
	if err := s.ForEachLeasedKey(func([]byte, int64) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

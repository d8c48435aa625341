package mvcc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/synod-db/synod/diskfs"
)

func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func mustPut(t testing.TB, s *Store, key, val string) int64 {
	t.Helper()
	rev, _, err := s.Put(0, []byte(key), []byte(val), 0, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func mustDel(t testing.TB, s *Store, key, end string) int64 {
	t.Helper()
	rev, _, _, err := s.DeleteRange(0, []byte(key), []byte(end), false)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func keysOf(kvs []KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// rangeFixture builds a store whose state at revision 11 is
// a(c2 m5 v2 "v4"), ab(c6 m6 v1 "v0"), b(c3 m10 v3 "v6"),
// b\x00(c11 m11 v1 "v7"), d(c7 m7 v1 "v9").
func rangeFixture(t *testing.T) *Store {
	s, _ := openTest(t)
	mustPut(t, s, "a", "v1")     // 2
	mustPut(t, s, "b", "v3")     // 3
	mustPut(t, s, "c", "v2")     // 4
	mustPut(t, s, "a", "v4")     // 5
	mustPut(t, s, "ab", "v0")    // 6
	mustPut(t, s, "d", "v9")     // 7
	mustDel(t, s, "c", "")       // 8
	mustPut(t, s, "b", "v5")     // 9
	mustPut(t, s, "b", "v6")     // 10
	mustPut(t, s, "b\x00", "v7") // 11
	if s.Rev() != 11 {
		t.Fatalf("rev %d", s.Rev())
	}
	return s
}

// TestRangeOptions checks every Range option (range ends, limit, count,
// more, sort targets and orders, filters, keys-only, count-only) on a
// fixed history, at the current and older revisions.
func TestRangeOptions(t *testing.T) {
	s := rangeFixture(t)
	all := []string{"a", "ab", "b", "b\x00", "d"}
	tests := []struct {
		name     string
		key, end string
		opts     RangeOptions
		want     []string
		count    int64
		more     bool
		err      error
	}{
		{name: "single", key: "a", want: []string{"a"}, count: 1},
		{name: "single missing", key: "zz", want: []string{}, count: 0},
		{name: "single deleted", key: "c", want: []string{}, count: 0},
		{name: "single with zero byte", key: "b\x00", want: []string{"b\x00"}, count: 1},
		{name: "interval", key: "a", end: "c", want: []string{"a", "ab", "b", "b\x00"}, count: 4},
		{name: "prefix b", key: "b", end: "c", want: []string{"b", "b\x00"}, count: 2},
		{name: "prefix a", key: "a", end: "b", want: []string{"a", "ab"}, count: 2},
		{name: "end exclusive", key: "a", end: "ab", want: []string{"a"}, count: 1},
		{name: "end b zero", key: "b", end: "b\x00", want: []string{"b"}, count: 1},
		{name: "from key", key: "ab", end: "\x00", want: []string{"ab", "b", "b\x00", "d"}, count: 4},
		{name: "all", key: "\x00", end: "\x00", want: all, count: 5},
		{name: "empty interval", key: "e", end: "f", want: []string{}, count: 0},
		{name: "limit", key: "\x00", end: "\x00", opts: RangeOptions{Limit: 2}, want: []string{"a", "ab"}, count: 5, more: true},
		{name: "limit exact", key: "\x00", end: "\x00", opts: RangeOptions{Limit: 5}, want: all, count: 5},
		{name: "limit over", key: "\x00", end: "\x00", opts: RangeOptions{Limit: 10}, want: all, count: 5},
		{name: "rev 4", key: "\x00", end: "\x00", opts: RangeOptions{Rev: 4}, want: []string{"a", "b", "c"}, count: 3},
		{name: "rev 8", key: "\x00", end: "\x00", opts: RangeOptions{Rev: 8}, want: []string{"a", "ab", "b", "d"}, count: 4},
		{name: "rev 1", key: "\x00", end: "\x00", opts: RangeOptions{Rev: 1}, want: []string{}, count: 0},
		{name: "future rev", key: "a", opts: RangeOptions{Rev: 12}, err: ErrFutureRev},
		{name: "key asc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortAscend}, want: all, count: 5},
		{name: "key desc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortDescend}, want: []string{"d", "b\x00", "b", "ab", "a"}, count: 5},
		{name: "key desc limit", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortDescend, Limit: 2}, want: []string{"d", "b\x00"}, count: 5, more: true},
		{name: "version asc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortAscend, SortTarget: SortByVersion}, want: []string{"ab", "b\x00", "d", "a", "b"}, count: 5},
		{name: "version none is asc", key: "\x00", end: "\x00", opts: RangeOptions{SortTarget: SortByVersion}, want: []string{"ab", "b\x00", "d", "a", "b"}, count: 5},
		{name: "version desc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortDescend, SortTarget: SortByVersion}, want: []string{"b", "a", "ab", "b\x00", "d"}, count: 5},
		{name: "create asc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortAscend, SortTarget: SortByCreate}, want: []string{"a", "b", "ab", "d", "b\x00"}, count: 5},
		{name: "create desc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortDescend, SortTarget: SortByCreate}, want: []string{"b\x00", "d", "ab", "b", "a"}, count: 5},
		{name: "mod asc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortAscend, SortTarget: SortByMod}, want: []string{"a", "ab", "d", "b", "b\x00"}, count: 5},
		{name: "mod desc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortDescend, SortTarget: SortByMod}, want: []string{"b\x00", "b", "d", "ab", "a"}, count: 5},
		{name: "mod desc limit", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortDescend, SortTarget: SortByMod, Limit: 3}, want: []string{"b\x00", "b", "d"}, count: 5, more: true},
		{name: "value asc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortAscend, SortTarget: SortByValue}, want: []string{"ab", "a", "b", "b\x00", "d"}, count: 5},
		{name: "value desc", key: "\x00", end: "\x00", opts: RangeOptions{SortOrder: SortDescend, SortTarget: SortByValue}, want: []string{"d", "b\x00", "b", "a", "ab"}, count: 5},
		{name: "count only", key: "\x00", end: "\x00", opts: RangeOptions{CountOnly: true}, want: []string{}, count: 5},
		{name: "count only limit", key: "\x00", end: "\x00", opts: RangeOptions{CountOnly: true, Limit: 1}, want: []string{}, count: 5},
		{name: "min create", key: "\x00", end: "\x00", opts: RangeOptions{MinCreateRev: 6}, want: []string{"ab", "b\x00", "d"}, count: 5},
		{name: "max create", key: "\x00", end: "\x00", opts: RangeOptions{MaxCreateRev: 3}, want: []string{"a", "b"}, count: 5},
		{name: "min mod", key: "\x00", end: "\x00", opts: RangeOptions{MinModRev: 7}, want: []string{"b", "b\x00", "d"}, count: 5},
		{name: "max mod", key: "\x00", end: "\x00", opts: RangeOptions{MaxModRev: 6}, want: []string{"a", "ab"}, count: 5},
		{name: "create window", key: "\x00", end: "\x00", opts: RangeOptions{MinCreateRev: 3, MaxCreateRev: 7}, want: []string{"ab", "b", "d"}, count: 5},
		{name: "filter and limit", key: "\x00", end: "\x00", opts: RangeOptions{MinModRev: 7, Limit: 1}, want: []string{"b"}, count: 5, more: true},
		{name: "filter sort limit", key: "\x00", end: "\x00", opts: RangeOptions{MinModRev: 7, Limit: 2, SortOrder: SortDescend, SortTarget: SortByMod}, want: []string{"b\x00", "b"}, count: 5, more: true},
		{name: "filter at rev", key: "\x00", end: "\x00", opts: RangeOptions{Rev: 6, MaxModRev: 4}, want: []string{"b", "c"}, count: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Range([]byte(tc.key), []byte(tc.end), tc.opts)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(res.KVs); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("keys = %q, want %q", got, tc.want)
			}
			if res.Count != tc.count || res.More != tc.more || res.Rev != 11 {
				t.Fatalf("count/more/rev = %d/%v/%d, want %d/%v/11", res.Count, res.More, res.Rev, tc.count, tc.more)
			}
			for _, kv := range res.KVs {
				if tc.opts.KeysOnly != (kv.Value == nil) {
					t.Fatalf("value presence wrong for %q", kv.Key)
				}
			}
		})
	}
}

// TestRangeValuesAndKeysOnly checks the values returned and their
// absence with KeysOnly.
func TestRangeValuesAndKeysOnly(t *testing.T) {
	s := rangeFixture(t)
	res, err := s.Range([]byte("\x00"), []byte("\x00"), RangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyValue{
		{Key: []byte("a"), Value: []byte("v4"), CreateRevision: 2, ModRevision: 5, Version: 2},
		{Key: []byte("ab"), Value: []byte("v0"), CreateRevision: 6, ModRevision: 6, Version: 1},
		{Key: []byte("b"), Value: []byte("v6"), CreateRevision: 3, ModRevision: 10, Version: 3},
		{Key: []byte("b\x00"), Value: []byte("v7"), CreateRevision: 11, ModRevision: 11, Version: 1},
		{Key: []byte("d"), Value: []byte("v9"), CreateRevision: 7, ModRevision: 7, Version: 1},
	}
	if !reflect.DeepEqual(res.KVs, want) {
		t.Fatalf("got %+v\nwant %+v", res.KVs, want)
	}
	res, err = s.Range([]byte("a"), nil, RangeOptions{KeysOnly: true, Rev: 4})
	if err != nil {
		t.Fatal(err)
	}
	w := []KeyValue{{Key: []byte("a"), CreateRevision: 2, ModRevision: 2, Version: 1}}
	if !reflect.DeepEqual(res.KVs, w) {
		t.Fatalf("got %+v want %+v", res.KVs, w)
	}
}

// TestVersionBookkeeping checks create and mod revisions and versions
// across put, delete and put again, and the Put and DeleteRange options.
func TestVersionBookkeeping(t *testing.T) {
	s, _ := openTest(t)
	get := func(rev int64) *KeyValue {
		t.Helper()
		res, err := s.Range([]byte("k"), nil, RangeOptions{Rev: rev})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.KVs) == 0 {
			return nil
		}
		return &res.KVs[0]
	}
	check := func(rev int64, create, mod, ver int64, val string) {
		t.Helper()
		kv := get(rev)
		if kv == nil || kv.CreateRevision != create || kv.ModRevision != mod || kv.Version != ver || string(kv.Value) != val {
			t.Fatalf("at %d got %+v want c%d m%d v%d %q", rev, kv, create, mod, ver, val)
		}
	}
	if s.Rev() != 1 {
		t.Fatalf("empty store rev %d", s.Rev())
	}
	mustPut(t, s, "k", "1") // 2
	mustPut(t, s, "k", "2") // 3
	if rev := mustDel(t, s, "k", ""); rev != 4 {
		t.Fatalf("delete rev %d", rev)
	}
	if rev := mustDel(t, s, "k", ""); rev != 4 {
		t.Fatalf("deleting nothing made revision %d", rev)
	}
	mustPut(t, s, "k", "3") // 5
	check(2, 2, 2, 1, "1")
	check(3, 2, 3, 2, "2")
	if get(4) != nil {
		t.Fatal("deleted key visible")
	}
	check(5, 5, 5, 1, "3")
	check(0, 5, 5, 1, "3")

	// Put options.
	rev, prev, err := s.Put(0, []byte("k"), []byte("4"), 9, PutOptions{PrevKV: true})
	if err != nil || rev != 6 || prev == nil || string(prev.Value) != "3" || prev.ModRevision != 5 {
		t.Fatalf("put prev: %d %+v %v", rev, prev, err)
	}
	if _, prev, _ = s.Put(0, []byte("new"), []byte("x"), 0, PutOptions{PrevKV: true}); prev != nil {
		t.Fatalf("prev for new key: %+v", prev)
	}
	if _, _, err = s.Put(0, []byte("k"), nil, 0, PutOptions{IgnoreValue: true}); err != nil {
		t.Fatal(err)
	}
	kv := get(0)
	if string(kv.Value) != "4" || kv.Lease != 0 || kv.Version != 3 {
		t.Fatalf("ignore value: %+v", kv)
	}
	if _, _, err = s.Put(0, []byte("k"), []byte("5"), 0, PutOptions{IgnoreLease: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err = s.Put(0, []byte("k"), nil, 0, PutOptions{IgnoreValue: true, IgnoreLease: true}); err != nil {
		t.Fatal(err)
	}
	kv = get(0)
	if string(kv.Value) != "5" || kv.Lease != 0 || kv.Version != 5 {
		t.Fatalf("ignore lease: %+v", kv)
	}
	s.Put(0, []byte("k"), []byte("6"), 42, PutOptions{})
	s.Put(0, []byte("k"), []byte("7"), 0, PutOptions{IgnoreLease: true})
	if kv = get(0); kv.Lease != 42 || string(kv.Value) != "7" {
		t.Fatalf("ignore lease kept: %+v", kv)
	}
	before := s.Rev()
	for _, o := range []PutOptions{{IgnoreValue: true}, {IgnoreLease: true}} {
		if _, _, err := s.Put(0, []byte("missing"), []byte("x"), 0, o); !errors.Is(err, ErrKeyNotFound) || err.Error() != "etcdserver: key not found" {
			t.Fatalf("ignore on missing: %v", err)
		}
	}
	if s.Rev() != before {
		t.Fatal("failed put changed revision")
	}
	if _, _, err := s.Put(0, nil, []byte("x"), 0, PutOptions{}); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("empty key: %v", err)
	}

	// DeleteRange with prev_kv.
	mustPut(t, s, "p/1", "a")
	mustPut(t, s, "p/2", "b")
	rev, n, prevs, err := s.DeleteRange(0, []byte("p/"), []byte("p0"), true)
	if err != nil || n != 2 || len(prevs) != 2 || string(prevs[1].Value) != "b" || rev != s.Rev() {
		t.Fatalf("delete range: %d %d %+v %v", rev, n, prevs, err)
	}
	res, _ := s.Range([]byte("p/"), []byte("p0"), RangeOptions{Rev: rev - 1})
	if res.Count != 2 {
		t.Fatalf("history lost: %+v", res)
	}
}

// TestTxnOneRevision checks that a write transaction is one revision with
// sub-revisions, sees its own writes, and leaves nothing when it fails.
func TestTxnOneRevision(t *testing.T) {
	s, _ := openTest(t)
	mustPut(t, s, "x", "0") // 2
	rev, events, err := s.Write(0, func(tx *WriteTxn) error {
		if tx.Rev() != 2 {
			return fmt.Errorf("tx rev before writes %d", tx.Rev())
		}
		if kv, err := tx.Get([]byte("x")); err != nil || string(kv.Value) != "0" {
			return fmt.Errorf("get: %+v %v", kv, err)
		}
		if _, err := tx.Put([]byte("a"), []byte("1"), 0, PutOptions{}); err != nil {
			return err
		}
		if _, err := tx.Put([]byte("a"), []byte("2"), 0, PutOptions{}); err != nil {
			return err
		}
		if _, err := tx.Put([]byte("b"), []byte("3"), 0, PutOptions{}); err != nil {
			return err
		}
		if tx.Rev() != 3 {
			return fmt.Errorf("tx rev after writes %d", tx.Rev())
		}
		res, err := tx.Range([]byte("a"), []byte("c"), RangeOptions{})
		if err != nil {
			return err
		}
		if len(res.KVs) != 2 || string(res.KVs[0].Value) != "2" || res.KVs[0].Version != 2 || res.KVs[0].ModRevision != 3 || res.KVs[0].CreateRevision != 3 {
			return fmt.Errorf("txn range: %+v", res.KVs)
		}
		n, _, err := tx.DeleteRange([]byte("x"), nil, false)
		if err != nil || n != 1 {
			return fmt.Errorf("delete: %d %v", n, err)
		}
		if kv, _ := tx.Get([]byte("x")); kv != nil {
			return fmt.Errorf("deleted key visible in txn")
		}
		res, err = tx.Range([]byte("x"), nil, RangeOptions{Rev: 2})
		if err != nil || len(res.KVs) != 1 {
			return fmt.Errorf("old rev in txn: %+v %v", res, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rev != 3 || s.Rev() != 3 {
		t.Fatalf("txn rev %d store rev %d", rev, s.Rev())
	}
	if len(events) != 4 || events[3].Type != EventDelete || events[3].KV.ModRevision != 3 || events[1].PrevKV == nil || string(events[1].PrevKV.Value) != "1" {
		t.Fatalf("events %+v", events)
	}
	// A read-only txn does not make a revision; a failing txn changes nothing.
	if rev, _, err := s.Write(0, func(tx *WriteTxn) error { _, err := tx.Range([]byte("a"), nil, RangeOptions{}); return err }); err != nil || rev != 3 {
		t.Fatalf("read-only txn: %d %v", rev, err)
	}
	boom := errors.New("boom")
	if _, _, err := s.Write(0, func(tx *WriteTxn) error {
		tx.Put([]byte("z"), []byte("z"), 0, PutOptions{})
		return boom
	}); err != boom {
		t.Fatal(err)
	}
	if res, _ := s.Range([]byte("z"), nil, RangeOptions{}); len(res.KVs) != 0 || s.Rev() != 3 {
		t.Fatal("failed txn applied")
	}
}

// TestCompaction checks that compaction removes superseded versions,
// keeps reads at and after it exact, and refuses reads before it.
func TestCompaction(t *testing.T) {
	s, _ := openTest(t)
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "a", "2") // 3
	mustPut(t, s, "b", "1") // 4
	mustDel(t, s, "b", "")  // 5
	mustPut(t, s, "c", "1") // 6
	mustPut(t, s, "a", "3") // 7
	h7, _ := s.Hash()
	if err := s.Compact(0, 8); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("future compaction: %v", err)
	}
	if err := s.Compact(0, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(0, 5); !errors.Is(err, ErrCompacted) {
		t.Fatalf("recompaction: %v", err)
	}
	if err := s.Compact(0, 4); !errors.Is(err, ErrCompacted) {
		t.Fatalf("older compaction: %v", err)
	}
	if s.CompactedRev() != 5 {
		t.Fatal(s.CompactedRev())
	}
	for _, rev := range []int64{1, 2, 4} {
		if _, err := s.Range([]byte("a"), nil, RangeOptions{Rev: rev}); !errors.Is(err, ErrCompacted) || err.Error() != "mvcc: required revision has been compacted" {
			t.Fatalf("read at %d: %v", rev, err)
		}
	}
	if _, _, err := s.HashByRev(4); !errors.Is(err, ErrCompacted) {
		t.Fatal(err)
	}
	res, err := s.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: 5})
	if err != nil || len(res.KVs) != 1 || string(res.KVs[0].Value) != "2" || res.KVs[0].Version != 2 || res.KVs[0].CreateRevision != 2 {
		t.Fatalf("at compaction rev: %+v %v", res, err)
	}
	res, _ = s.Range([]byte("\x00"), []byte("\x00"), RangeOptions{})
	if got := keysOf(res.KVs); !reflect.DeepEqual(got, []string{"a", "c"}) {
		t.Fatal(got)
	}
	// Physically: a@2, b@4 gone; a@3, b@5 (a deletion at the compaction
	// revision, kept until the next compaction), c@6, a@7 left.
	n := 0
	it, _ := s.db.NewIter(nil)
	for ok := it.First(); ok; ok = it.Next() {
		if it.Key()[0] == prefixRev {
			n++
		}
	}
	it.Close()
	if n != 4 {
		t.Fatalf("%d revision records left, want 4", n)
	}
	if h, _ := s.Hash(); h == h7 {
		t.Fatal("hash unchanged by compaction")
	}
	if _, err := s.Range([]byte("a"), nil, RangeOptions{Rev: 8}); !errors.Is(err, ErrFutureRev) || err.Error() != "mvcc: required revision is a future revision" {
		t.Fatal(err)
	}
	if err := s.Compact(0, 7); err != nil {
		t.Fatal(err)
	}
	res, _ = s.Range([]byte("a"), nil, RangeOptions{})
	if len(res.KVs) != 1 || res.KVs[0].Version != 3 || res.KVs[0].CreateRevision != 2 {
		t.Fatalf("after second compaction %+v", res.KVs)
	}
}

// TestReopen checks that a closed store reopens with all its state.
func TestReopen(t *testing.T) {
	s, dir := openTest(t)
	mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "1")
	mustPut(t, s, "a", "2")
	mustDel(t, s, "b", "")
	if _, _, err := s.Put(7, []byte("c"), []byte("3"), 5, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(8, 3); err != nil {
		t.Fatal(err)
	}
	h, _ := s.Hash()
	before, _ := s.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: 4})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Range([]byte("a"), nil, RangeOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Rev() != 6 || s2.CompactedRev() != 3 || s2.ConsistentIndex() != 8 {
		t.Fatalf("rev %d compacted %d ci %d", s2.Rev(), s2.CompactedRev(), s2.ConsistentIndex())
	}
	if h2, _ := s2.Hash(); h2 != h {
		t.Fatal("hash changed across reopen")
	}
	after, _ := s2.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: 4})
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("%+v != %+v", before, after)
	}
	if rev := mustPut(t, s2, "d", "x"); rev != 7 {
		t.Fatal(rev)
	}
}

// TestConsistentIndex checks that the raft index is stored with the data
// it applied, so that replaying an applied entry is a no-op.
func TestConsistentIndex(t *testing.T) {
	s, dir := openTest(t)
	apply := func(idx uint64) int64 {
		rev, _, err := s.Write(idx, func(tx *WriteTxn) error {
			_, err := tx.Put([]byte("k"), []byte(fmt.Sprint(idx)), 0, PutOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	if r := apply(1); r != 2 {
		t.Fatal(r)
	}
	if r := apply(2); r != 3 {
		t.Fatal(r)
	}
	if r := apply(2); r != 3 {
		t.Fatalf("replayed entry applied again: rev %d", r)
	}
	if r := apply(1); r != 3 {
		t.Fatal(r)
	}
	if err := s.SetConsistentIndex(5); err != nil {
		t.Fatal(err)
	}
	if r := apply(4); r != 3 {
		t.Fatal(r)
	}
	if err := s.Compact(5, 2); err != nil || s.CompactedRev() != 0 {
		t.Fatalf("replayed compaction: %v %d", err, s.CompactedRev())
	}
	// A failing entry still counts as applied.
	if _, _, err := s.Put(6, []byte("nope"), nil, 0, PutOptions{IgnoreValue: true}); !errors.Is(err, ErrKeyNotFound) {
		t.Fatal(err)
	}
	if s.ConsistentIndex() != 6 {
		t.Fatal(s.ConsistentIndex())
	}
	if _, _, _, err := s.DeleteRange(7, []byte("k"), nil, false); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.ConsistentIndex() != 7 || s2.Rev() != 4 {
		t.Fatalf("ci %d rev %d", s2.ConsistentIndex(), s2.Rev())
	}
	if _, _, _, err := s2.DeleteRange(7, []byte("\x00"), []byte("\x00"), false); err != nil || s2.Rev() != 4 {
		t.Fatal("replay after reopen applied")
	}
}

// TestSnapshotRestore checks a snapshot stream round trip and that a
// corrupt or truncated stream leaves the store unchanged.
func TestSnapshotRestore(t *testing.T) {
	s := rangeFixture(t)
	if err := s.Compact(9, 5); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	h, _ := s.Hash()
	data := buf.Bytes()

	d, _ := openTest(t)
	mustPut(t, d, "junk", "1")
	mustPut(t, d, "junk", "2")
	// Corrupt and truncated streams are refused and leave the store as is.
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0xff
	for _, b := range [][]byte{bad, data[:len(data)-3], data[:10], nil} {
		if err := d.Restore(bytes.NewReader(b)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bad stream: %v", err)
		}
		if d.Rev() != 3 {
			t.Fatal("store changed by failed restore")
		}
	}
	if err := d.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if d.Rev() != 11 || d.CompactedRev() != 5 || d.ConsistentIndex() != 9 {
		t.Fatalf("rev %d compacted %d ci %d", d.Rev(), d.CompactedRev(), d.ConsistentIndex())
	}
	if h2, _ := d.Hash(); h2 != h {
		t.Fatal("hash differs after restore")
	}
	for _, rev := range []int64{0, 5, 8, 10} {
		a, err1 := s.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: rev})
		b, err2 := d.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: rev})
		if err1 != nil || err2 != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("rev %d: %+v %v / %+v %v", rev, a, err1, b, err2)
		}
	}
	if res, _ := d.Range([]byte("junk"), nil, RangeOptions{}); len(res.KVs) != 0 {
		t.Fatal("old data survived restore")
	}
	if rev := mustPut(t, d, "e", "1"); rev != 12 {
		t.Fatal(rev)
	}
}

// TestConcurrentReadersWritersSnapshots checks that no reader ever sees
// half of a transaction while writers and snapshots run.
func TestConcurrentReadersWritersSnapshots(t *testing.T) {
	s, _ := openTest(t)
	done := make(chan struct{})
	errc := make(chan error, 3)
	go func() {
		defer close(done)
		for i := 0; i < 300; i++ {
			if _, _, err := s.Write(uint64(i+1), func(tx *WriteTxn) error {
				tx.Put([]byte(fmt.Sprintf("k%02d", i%20)), []byte(fmt.Sprint(i)), 0, PutOptions{})
				tx.Put([]byte("counter"), []byte(fmt.Sprint(i)), 0, PutOptions{})
				return nil
			}); err != nil {
				errc <- err
				return
			}
			if i%100 == 99 {
				if err := s.Compact(0, s.Rev()-10); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	go func() {
		for {
			select {
			case <-done:
				errc <- nil
				return
			default:
			}
			rev := s.Rev()
			res, err := s.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: rev})
			if errors.Is(err, ErrCompacted) {
				continue
			}
			if err != nil {
				errc <- err
				return
			}
			// Both keys of a txn appear together: counter's mod revision
			// is the read revision.
			if rev > 1 && (len(res.KVs) == 0 || res.KVs[0].ModRevision != rev) {
				errc <- fmt.Errorf("torn read at %d: %+v", rev, res.KVs)
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case <-done:
				errc <- nil
				return
			default:
			}
			var buf bytes.Buffer
			if err := s.Snapshot(&buf); err != nil {
				errc <- err
				return
			}
		}
	}()
	for i := 0; i < 3; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

// TestHash checks that equal histories hash equal and that the hash at a
// revision ignores later writes.
func TestHash(t *testing.T) {
	a, _ := openTest(t)
	b, _ := openTest(t)
	for _, s := range []*Store{a, b} {
		mustPut(t, s, "x", "1")
		mustPut(t, s, "y", "2")
		mustDel(t, s, "x", "")
	}
	ha, _ := a.Hash()
	hb, _ := b.Hash()
	if ha != hb {
		t.Fatal("same history, different hashes")
	}
	mustPut(t, b, "z", "3")
	if hb2, _ := b.Hash(); hb2 == ha {
		t.Fatal("hash ignores a put")
	}
	if h, c, err := b.HashByRev(4); err != nil || h != ha || c != 0 {
		t.Fatalf("HashByRev(4) = %d, %d, %v; want %d", h, c, err, ha)
	}
	if _, _, err := b.HashByRev(6); !errors.Is(err, ErrFutureRev) {
		t.Fatal(err)
	}
	a.Compact(0, 3)
	b.Compact(0, 3)
	ha, _, _ = a.HashByRev(4)
	hb, c, _ := b.HashByRev(4)
	if ha != hb || c != 3 {
		t.Fatal("hashes differ after the same compaction")
	}
}

// TestRestoreInterrupted checks that Open finishes a Restore interrupted
// by a crash during the directory swap.
func TestRestoreInterrupted(t *testing.T) {
	src := rangeFixture(t)
	var buf bytes.Buffer
	if err := src.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "db")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "old", "1")
	s.Close()
	// Simulate a crash after the load and the first rename.
	if err := loadSnapshot(dir+".restore", bytes.NewReader(buf.Bytes()), diskfs.Default); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Rev() != 11 {
		t.Fatalf("rev %d after finishing restore", s.Rev())
	}
	for _, d := range []string{dir + ".old", dir + ".restore"} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind", d)
		}
	}
}

// TestCompactionKeepsDeletionAtRev checks that a deletion made at the
// compaction revision survives that compaction (so the revision's history
// stays complete for watchers) and goes at the next one.
func TestCompactionKeepsDeletionAtRev(t *testing.T) {
	s, _ := openTest(t)
	mustPut(t, s, "a", "1") // 2
	if _, _, _, err := s.DeleteRange(0, []byte("a"), nil, false); err != nil {
		t.Fatal(err) // 3
	}
	mustPut(t, s, "b", "1") // 4
	if err := s.Compact(0, 3); err != nil {
		t.Fatal(err)
	}
	res, err := s.History(3, 4, HistoryOptions{End: []byte{0}})
	if err != nil || len(res.Events) != 2 || res.Events[0].Type != EventDelete {
		t.Fatalf("history from the compacted revision: %+v %v", res.Events, err)
	}
	if err := s.Compact(0, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := s.History(3, 4, HistoryOptions{End: []byte{0}}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("history below the new compaction: %v", err)
	}
	res, err = s.History(4, 4, HistoryOptions{End: []byte{0}})
	if err != nil || len(res.Events) != 1 || string(res.Events[0].KV.Key) != "b" {
		t.Fatalf("history at the new compaction: %+v %v", res.Events, err)
	}
}

// TestCurrentSpaceRebuilt checks that a store written without the c
// space (no m/format) gets it rebuilt on open, so single-key reads at the
// current revision (served from it) stay right.
func TestCurrentSpaceRebuilt(t *testing.T) {
	s, dir := openTest(t)
	mustPut(t, s, "a", "1")
	mustPut(t, s, "a", "2")
	mustPut(t, s, "b", "1")
	if _, _, _, err := s.DeleteRange(0, []byte("b"), nil, false); err != nil {
		t.Fatal(err)
	}
	// Remove the c space and the format marker, as an older store lacks.
	b := s.db.NewBatch()
	if err := b.DeleteRange([]byte{prefixCur}, []byte{prefixCur + 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(metaFormat, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Range([]byte("a"), nil, RangeOptions{})
	if err != nil || len(res.KVs) != 1 || string(res.KVs[0].Value) != "2" || res.KVs[0].Version != 2 || res.KVs[0].ModRevision != 3 {
		t.Fatalf("a after rebuild: %+v %v", res, err)
	}
	if res, err := s.Range([]byte("b"), nil, RangeOptions{}); err != nil || res.Count != 0 {
		t.Fatalf("deleted b after rebuild: %+v %v", res, err)
	}
}

// rewriteKeyIndex replaces every k space entry by fn of its decoded
// record, as a store written by an older layout (or damaged) holds.
func rewriteKeyIndex(t *testing.T, s *Store, fn func(k []byte, r record) []byte) {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixKey}, UpperBound: []byte{prefixKeyHi}})
	if err != nil {
		t.Fatal(err)
	}
	b := s.db.NewBatch()
	for valid := it.First(); valid; valid = it.Next() {
		r, err := decodeRecord(it.Value(), true)
		if err != nil {
			t.Fatal(err)
		}
		if v := fn(it.Key(), r); v != nil {
			if err := b.Set(append([]byte(nil), it.Key()...), v, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestKeyIndexHoldsNoValues: the k space keeps records without values
// (values live in the r and c spaces only), and a store whose k space
// still holds values inline, as written before, reads the same.
func TestKeyIndexHoldsNoValues(t *testing.T) {
	s, _ := openTest(t)
	big := strings.Repeat("v", 1000)
	mustPut(t, s, "a", big+"1")
	mustPut(t, s, "a", big+"2")
	mustPut(t, s, "b", big+"3")
	check := func(label string) {
		t.Helper()
		for rev, want := range map[int64]string{2: big + "1", 3: big + "2"} {
			res, err := s.Range([]byte("a"), nil, RangeOptions{Rev: rev})
			if err != nil || len(res.KVs) != 1 || string(res.KVs[0].Value) != want {
				t.Fatalf("%s: a at %d: %+v %v", label, rev, res, err)
			}
		}
		h, err := s.History(2, 4, HistoryOptions{Key: []byte("a"), End: []byte{0}, PrevKV: true})
		if err != nil || len(h.Events) != 3 || string(h.Events[1].KV.Value) != big+"2" || string(h.Events[1].PrevKV.Value) != big+"1" {
			t.Fatalf("%s: history %+v %v", label, h, err)
		}
		h, err = s.History(2, 4, HistoryOptions{Key: []byte("a"), PrevKV: true})
		if err != nil || len(h.Events) != 2 || string(h.Events[1].KV.Value) != big+"2" || string(h.Events[1].PrevKV.Value) != big+"1" {
			t.Fatalf("%s: history of a %+v %v", label, h, err)
		}
	}
	check("new layout")
	rewriteKeyIndex(t, s, func(_ []byte, r record) []byte {
		if len(r.value) != 0 || (!r.tombstone && !r.valueInRev) {
			t.Errorf("k space record of %q holds a value (%d bytes) or no reference", r.key, len(r.value))
		}
		return nil
	})
	rewriteKeyIndex(t, s, func(k []byte, r record) []byte {
		_, rev, _ := splitVersionKey(k)
		if err := r.loadValue(s.db, rev); err != nil {
			t.Fatal(err)
		}
		return r.encode(nil)
	})
	check("values inline")
}

// TestKeyIndexWithoutHistoryIsCorrupt: a k space reference whose r space
// record is missing is reported as corruption naming the revision, never
// read as an empty value.
func TestKeyIndexWithoutHistoryIsCorrupt(t *testing.T) {
	s, _ := openTest(t)
	mustPut(t, s, "a", "1")
	mustPut(t, s, "a", "2")
	if err := s.db.Delete(revKey(revision{2, 0}), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, err := s.Range([]byte("a"), nil, RangeOptions{Rev: 2})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "revision 2.0") {
		t.Fatalf("read of a version without its history record: %v", err)
	}
}

// TestFormatMarks checks the format mark of a data directory: a store of
// an older format opens and is marked current (format 2, written before
// raft entries had synod's envelope, opens as it is); one of a newer
// format is refused with what to do.
func TestFormatMarks(t *testing.T) {
	setFormat := func(t *testing.T, s *Store, f uint64) {
		t.Helper()
		if err := s.db.Set(metaFormat, binary.BigEndian.AppendUint64(nil, f), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	s, dir := openTest(t)
	mustPut(t, s, "a", "1")
	setFormat(t, s, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("open a format-2 store: %v", err)
	}
	if v, closer, err := s.db.Get(metaFormat); err != nil || binary.BigEndian.Uint64(v) != formatCurrent {
		t.Fatalf("format after opening a format-2 store: %x %v, want %d", v, err, formatCurrent)
	} else {
		closer.Close()
	}
	if res, err := s.Range([]byte("a"), nil, RangeOptions{}); err != nil || len(res.KVs) != 1 {
		t.Fatalf("a in the upgraded store: %+v %v", res, err)
	}
	setFormat(t, s, formatCurrent+1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir); err == nil || !strings.Contains(err.Error(), "newer than this synod's") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open a store of a newer format: %v, want a refusal", err)
	}
}

// TestHashAtCompactionRevision checks the property etcd's
// TestVerifyHashKVAfterCompactAndDefrag relies on: the hash at a
// revision a compaction ran at is the same before and after the
// compaction and a defragmentation, for the last maxCompactHashes
// compactions; the hash of a later revision still follows the data.
func TestHashAtCompactionRevision(t *testing.T) {
	s, _ := openTest(t)
	var revs []int64
	for i := range maxCompactHashes + 2 {
		mustPut(t, s, "k", fmt.Sprint(i))
		mustPut(t, s, "k", fmt.Sprint(i)+"'")
		mustDel(t, s, "k", "")
		revs = append(revs, s.Rev())
	}
	before := map[int64]uint32{}
	for _, rev := range revs {
		h, _, err := s.HashByRev(rev)
		if err != nil {
			t.Fatal(err)
		}
		before[rev] = h
		if err := s.Compact(0, rev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Defragment(context.Background()); err != nil {
		t.Fatal(err)
	}
	last := revs[len(revs)-1]
	for _, rev := range revs {
		h, _, err := s.HashByRev(rev)
		switch {
		case rev < last:
			if !errors.Is(err, ErrCompacted) {
				t.Fatalf("HashByRev(%d) below the compaction at %d: %v", rev, last, err)
			}
		case err != nil || h != before[rev]:
			t.Fatalf("HashByRev(%d) = %d, %v after compaction and defragmentation; %d before", rev, h, err, before[rev])
		}
	}
	mustPut(t, s, "k", "after")
	if h, _, _ := s.HashByRev(0); h == before[last] {
		t.Fatal("the hash at the current revision ignores a put after the compaction")
	}
	if n := len(s.compactHashes); n != maxCompactHashes {
		t.Fatalf("%d compaction hashes kept, want %d", n, maxCompactHashes)
	}
}

// TestRangeNoTotal: a NoTotal read returns the same page as a counted one
// (keys and More), at the current revision and at an older one, but stops
// at the key after its limit instead of counting the whole range.
func TestRangeNoTotal(t *testing.T) {
	s, _ := openTest(t)
	for i := range 50 {
		mustPut(t, s, fmt.Sprintf("k%02d", i), "v")
	}
	old := s.Rev()
	mustDel(t, s, "k10", "k20")
	for _, rev := range []int64{0, old} {
		for _, limit := range []int64{1, 7, 39, 40, 41} {
			counted, err := s.Range([]byte("k"), []byte("l"), RangeOptions{Limit: limit, Rev: rev})
			if err != nil {
				t.Fatal(err)
			}
			page, err := s.Range([]byte("k"), []byte("l"), RangeOptions{Limit: limit, Rev: rev, NoTotal: true})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(keysOf(page.KVs), keysOf(counted.KVs)) || page.More != counted.More {
				t.Errorf("rev %d limit %d: page %v more %v, counted %v more %v", rev, limit, keysOf(page.KVs), page.More, keysOf(counted.KVs), counted.More)
			}
			if wantCount := min(limit+1, counted.Count); page.Count != wantCount {
				t.Errorf("rev %d limit %d: NoTotal counted %d keys, want %d (of %d)", rev, limit, page.Count, wantCount, counted.Count)
			}
		}
	}
}

// TestSizeInUse: the size in use counts the store's own records, so it is
// above 0 for an empty store (as etcd's dbSizeInUse is), and grows with
// the data as LogicalSize does.
func TestSizeInUse(t *testing.T) {
	s, _ := openTest(t)
	empty, err := s.SizeInUse()
	if err != nil || empty <= 0 {
		t.Fatalf("empty store: %d, %v; want > 0", empty, err)
	}
	mustPut(t, s, "k", strings.Repeat("v", 1000))
	full, err := s.SizeInUse()
	if err != nil || full-empty < 1000 || full < s.LogicalSize() {
		t.Fatalf("after a 1000-byte put: %d (empty %d, logical %d), %v", full, empty, s.LogicalSize(), err)
	}
}

// TestEmptyHashNotZero: the hash of an empty history is not 0 (the JSON
// gateway would leave it out of the answer, as etcd's never is).
func TestEmptyHashNotZero(t *testing.T) {
	s, _ := openTest(t)
	if h, err := s.Hash(); err != nil || h == 0 {
		t.Fatalf("hash of an empty store: %d, %v", h, err)
	}
}

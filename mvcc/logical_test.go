package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestLogicalSizeFollowsHistory checks the size the space quota uses:
// random puts of random sizes, deletes, failing transactions, write
// groups and compactions, with reopens, must leave LogicalSize equal to
// the r space measured from scratch, growing by what each put stores and
// shrinking when compaction drops history. Replay a failing seed by
// setting it in seeds.
func TestLogicalSizeFollowsHistory(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			s, dir := openTest(t)
			errFail := errors.New("fail")
			check := func(step int) {
				t.Helper()
				want, err := s.measureLogical()
				if err != nil {
					t.Fatal(err)
				}
				if got := s.LogicalSize(); got != want {
					t.Fatalf("seed %d step %d: LogicalSize %d, the r space holds %d", seed, step, got, want)
				}
			}
			for step := range 300 {
				key := []byte(fmt.Sprintf("k%d", rng.IntN(20)))
				before := s.LogicalSize()
				switch op := rng.IntN(10); {
				case op < 5:
					val := make([]byte, rng.IntN(5000))
					if _, _, err := s.Put(0, key, val, 0, PutOptions{}); err != nil {
						t.Fatal(err)
					}
					if grew := s.LogicalSize() - before; grew < int64(len(key)+len(val)) || grew > int64(len(key)+len(val))+64 {
						t.Fatalf("seed %d step %d: a put of %d bytes grew the size by %d", seed, step, len(key)+len(val), grew)
					}
				case op < 6:
					mustDel(t, s, "k", "l")
				case op < 7: // a transaction that writes, then fails: no change
					s.Write(0, func(tx *WriteTxn) error {
						tx.Put(key, make([]byte, 100), 0, PutOptions{})
						return errFail
					})
					if s.LogicalSize() != before {
						t.Fatalf("seed %d step %d: a failed transaction changed the size", seed, step)
					}
				case op < 8: // a group of entries, one failing
					g, err := s.Group()
					if err != nil {
						t.Fatal(err)
					}
					g.Write(0, func(tx *WriteTxn) error { _, err := tx.Put(key, []byte("group"), 0, PutOptions{}); return err })
					g.Write(0, func(*WriteTxn) error { return errFail })
					if err := g.Commit(); err != nil {
						t.Fatal(err)
					}
				case op < 9:
					if rev := s.Rev(); rev > s.CompactedRev()+1 {
						if err := s.Compact(0, s.CompactedRev()+1+rng.Int64N(rev-s.CompactedRev())); err != nil {
							t.Fatal(err)
						}
						if s.LogicalSize() > before {
							t.Fatalf("seed %d step %d: compaction grew the size", seed, step)
						}
					}
				default:
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					var err error
					if s, err = Open(dir); err != nil {
						t.Fatal(err)
					}
					if s.LogicalSize() != before {
						t.Fatalf("seed %d step %d: the size changed from %d to %d across a reopen", seed, step, before, s.LogicalSize())
					}
				}
				check(step)
			}
			s.Close()
		})
	}
}

// TestLargeValuesStoredOnce checks the c space's reference form for
// values of largeValue bytes or more: the live version's record holds no
// copy of the value, yet every read at the current revision (one key, a
// range, a transaction's view, the previous value of an overwrite, a put
// that keeps its value) returns it, also after a compaction, a reopen and
// a snapshot restore.
func TestLargeValuesStoredOnce(t *testing.T) {
	s, dir := openTest(t)
	big := func(c byte) []byte { v := make([]byte, largeValue+10); v[0], v[len(v)-1] = c, c; return v }
	if _, _, err := s.Put(0, []byte("k"), big('a'), 0, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, closer, err := s.db.Get(curKey([]byte("k")))
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > 64 {
		t.Fatalf("the c space record of a %d-byte value is %d bytes: the value is stored twice", largeValue+10, len(cur))
	}
	closer.Close()
	_, prev, err := s.Put(0, []byte("k"), big('b'), 0, PutOptions{PrevKV: true})
	if err != nil || prev == nil || string(prev.Value) != string(big('a')) {
		t.Fatalf("previous value of an overwrite: %v %v", prev, err)
	}
	if _, _, err := s.Put(0, []byte("k"), nil, 7, PutOptions{IgnoreValue: true}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "small", "v")
	check := func(when string) {
		t.Helper()
		one, err := s.Range([]byte("k"), nil, RangeOptions{})
		if err != nil || len(one.KVs) != 1 || string(one.KVs[0].Value) != string(big('b')) || one.KVs[0].Lease != 7 {
			t.Fatalf("%s: Range(k) = %v, %v", when, one.KVs, err)
		}
		all, err := s.Range([]byte("a"), []byte("z"), RangeOptions{})
		if err != nil || len(all.KVs) != 2 || string(all.KVs[0].Value) != string(big('b')) || string(all.KVs[1].Value) != "v" {
			t.Fatalf("%s: Range(a, z) = %v, %v", when, all.KVs, err)
		}
		s.Write(0, func(tx *WriteTxn) error {
			kv, err := tx.Get([]byte("k"))
			if err != nil || kv == nil || string(kv.Value) != string(big('b')) {
				t.Fatalf("%s: a transaction's view of k: %v, %v", when, kv, err)
			}
			return errors.New("read only")
		})
	}
	check("written")
	if err := s.Compact(0, s.Rev()); err != nil {
		t.Fatal(err)
	}
	check("compacted")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("reopened")
	snap, err := s.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Stream(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Close()
	mustPut(t, s, "k", "overwritten")
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	check("restored")
}

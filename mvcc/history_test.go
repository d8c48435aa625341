package mvcc

import (
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
)

var historySeed = flag.Int64("mvcc.history-seed", 1, "seed of TestHistoryModel")

// TestHistoryFixed checks History on a small known history: event shapes
// (puts, deletes, PrevKV), key selection and the compaction boundary.
func TestHistoryFixed(t *testing.T) {
	s := rangeFixture(t)
	res, err := s.History(7, 100, HistoryOptions{Key: nil, End: []byte{0}, PrevKV: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Next != 12 || res.Rev != 11 {
		t.Fatalf("next %d rev %d", res.Next, res.Rev)
	}
	want := []string{"PUT d@7", "DELETE c@8 prev=v2", "PUT b@9 prev=v3", "PUT b@10 prev=v5", "PUT b\x00@11"}
	if got := describe(res.Events); !reflect.DeepEqual(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if res.Events[1].PrevKV.ModRevision != 4 || res.Events[1].KV.ModRevision != 8 || res.Events[1].KV.Value != nil {
		t.Fatalf("delete event %+v", res.Events[1])
	}
	// Single key: read from the key index, PrevKV from the same run.
	res, err = s.History(1, 11, HistoryOptions{Key: []byte("b"), PrevKV: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(res.Events); !reflect.DeepEqual(got, []string{"PUT b@3", "PUT b@9 prev=v3", "PUT b@10 prev=v5"}) {
		t.Fatalf("single key %q", got)
	}
	// Compaction: from below the compacted revision fails; the compacted
	// revision itself can still be read (its deletions are kept).
	if err := s.Compact(0, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := s.History(8, 11, HistoryOptions{End: []byte{0}}); err != nil {
		t.Fatalf("from the compacted revision: %v", err)
	}
	for _, from := range []int64{0, 1, 7} {
		if _, err := s.History(from, 11, HistoryOptions{End: []byte{0}}); !errors.Is(err, ErrCompacted) {
			t.Fatalf("from %d: err %v, want ErrCompacted", from, err)
		}
	}
	res, err = s.History(9, 11, HistoryOptions{End: []byte{0}, PrevKV: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(res.Events); !reflect.DeepEqual(got, []string{"PUT b@9 prev=v3", "PUT b@10 prev=v5", "PUT b\x00@11"}) {
		t.Fatalf("after compaction %q", got)
	}
	// Beyond the current revision: empty, Next unchanged.
	res, err = s.History(12, 20, HistoryOptions{End: []byte{0}})
	if err != nil || len(res.Events) != 0 || res.Next != 12 {
		t.Fatalf("future: %v %+v", err, res)
	}
	s.Close()
	if _, err := s.History(9, 11, HistoryOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

func describe(evs []Event) []string {
	var out []string
	for _, e := range evs {
		d := fmt.Sprintf("%v %s@%d", e.Type, e.KV.Key, e.KV.ModRevision)
		if e.PrevKV != nil {
			d += " prev=" + string(e.PrevKV.Value)
		}
		out = append(out, d)
	}
	return out
}

// TestHistoryModel writes a random history (puts, range deletes,
// multi-key transactions, compactions) and checks that History returns
// exactly the events Store.Write returned, for random revision windows,
// key selections and limits, continuing from Next until the window is
// read. Change the seed with -mvcc.history-seed.
func TestHistoryModel(t *testing.T) {
	seed := *historySeed
	t.Logf("seed %d (rerun with -mvcc.history-seed=%d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	s, _ := openTest(t)
	keys := []string{"a", "ab", "abc", "b", "b\x00", "c", "d", "\x00"}
	var all []Event
	compacted := int64(0)
	for step := range 600 {
		_, evs, err := s.Write(0, func(tx *WriteTxn) error {
			n := 1 + rng.Intn(3)
			used := map[string]bool{}
			for i := range n {
				k := keys[rng.Intn(len(keys))]
				if used[k] {
					continue
				}
				used[k] = true
				if rng.Intn(4) == 0 {
					end := ""
					if i == 0 && rng.Intn(3) == 0 {
						end = k + "\xff"
					}
					if _, _, err := tx.DeleteRange([]byte(k), []byte(end), false); err != nil {
						return err
					}
					if end != "" {
						break // a range delete may overlap later keys
					}
					continue
				}
				if _, err := tx.Put([]byte(k), []byte(fmt.Sprintf("v%d", step)), int64(rng.Intn(2)), PutOptions{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed %d step %d: %v", seed, step, err)
		}
		all = append(all, evs...)
		if rng.Intn(60) == 0 {
			c := compacted + 1 + rng.Int63n(s.Rev()-compacted)
			if c < s.Rev() {
				if err := s.Compact(0, c); err != nil {
					t.Fatalf("seed %d: compact %d: %v", seed, c, err)
				}
				compacted = c
			}
		}
		if step%5 == 0 {
			checkHistoryQuery(t, seed, rng, s, all, keys, compacted)
		}
	}
}

func checkHistoryQuery(t *testing.T, seed int64, rng *rand.Rand, s *Store, all []Event, keys []string, compacted int64) {
	t.Helper()
	rev := s.Rev()
	from := compacted - 1 + rng.Int63n(rev-compacted+3)
	to := from + rng.Int63n(rev-from+3)
	var key, end string
	switch rng.Intn(4) {
	case 0:
		key = keys[rng.Intn(len(keys))]
	case 1:
		key, end = keys[rng.Intn(len(keys))], "\x00"
	case 2:
		key, end = "a", "b\x01"
	case 3:
		key, end = "", "\x00"
	}
	prev := rng.Intn(2) == 0
	limit := []int{0, 1, 2, 7}[rng.Intn(4)]
	what := fmt.Sprintf("seed %d: History(%d, %d, %q..%q prev=%v limit=%d) at rev %d compacted %d", seed, from, to, key, end, prev, limit, rev, compacted)
	var want []Event
	for _, e := range all {
		r := e.KV.ModRevision
		if r >= max(from, 1) && r <= min(to, rev) && keyInRange(e.KV.Key, []byte(key), []byte(end)) {
			if !prev || r <= compacted {
				// The version before one at the compacted revision was
				// compacted away: its prev_kv is gone (as in etcd).
				e.PrevKV = nil
			}
			want = append(want, e)
		}
	}
	var got []Event
	for at := from; ; {
		res, err := s.History(at, to, HistoryOptions{Key: []byte(key), End: []byte(end), PrevKV: prev, Limit: limit})
		if max(at, 1) < compacted {
			if !errors.Is(err, ErrCompacted) {
				t.Fatalf("%s: err %v, want ErrCompacted", what, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Next <= max(at, 1) && max(at, 1) <= min(to, rev) {
			t.Fatalf("%s: no progress from %d (next %d)", what, at, res.Next)
		}
		for _, e := range res.Events {
			if e.KV.ModRevision >= res.Next || e.KV.ModRevision < max(at, 1) {
				t.Fatalf("%s: event at %d outside [%d, %d)", what, e.KV.ModRevision, at, res.Next)
			}
		}
		got = append(got, res.Events...)
		if res.Next > min(to, rev) {
			break
		}
		at = res.Next
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, describe(got), describe(want))
	}
}

// BenchmarkHistoryCatchUp measures replaying 1000 revisions for all keys
// and for one key of a 10,000-revision history.
func BenchmarkHistoryCatchUp(b *testing.B) {
	s, _ := openTest(b)
	for i := range 10000 {
		mustPut(b, s, fmt.Sprintf("k%04d", i%500), "value")
	}
	b.Run("all-keys", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := s.History(5000, 5999, HistoryOptions{End: []byte{0}, PrevKV: true})
			if err != nil || len(res.Events) != 1000 {
				b.Fatal(err, len(res.Events))
			}
		}
	})
	b.Run("one-key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := s.History(5000, 5999, HistoryOptions{Key: []byte("k0042"), PrevKV: true})
			if err != nil || len(res.Events) != 2 {
				b.Fatal(err, len(res.Events))
			}
		}
	})
}

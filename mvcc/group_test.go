package mvcc

import (
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
)

var groupSeed = flag.Int64("mvcc.groupseed", 1, "seed of TestGroupMatchesSingleWrites")

// groupEntry is one raft entry of TestGroupMatchesSingleWrites: a write
// made of random puts and deletes that may fail before or after writing.
type groupEntry struct {
	index uint64
	ops   []groupOp
	fail  int // -1: succeeds; else fails after this many ops
}

type groupOp struct {
	put      bool
	key, end string
	val      string
}

var errEntryFailed = errors.New("entry failed")

func (e *groupEntry) apply(tx *WriteTxn) error {
	for i, op := range e.ops {
		if i == e.fail {
			return errEntryFailed
		}
		if op.put {
			if _, err := tx.Put([]byte(op.key), []byte(op.val), 0, PutOptions{}); err != nil {
				return err
			}
		} else if _, _, err := tx.DeleteRange([]byte(op.key), []byte(op.end), false); err != nil {
			return err
		}
	}
	if e.fail == len(e.ops) {
		return errEntryFailed
	}
	return nil
}

type entryResult struct {
	rev    int64
	events []Event
	err    error
}

// applyGroup applies entries in one group the way the server does: on
// ErrGroupUndo it applies the entries before the failing one as a group
// and starts a new group at the failing one.
func applyGroup(t *testing.T, s *Store, entries []groupEntry) []entryResult {
	t.Helper()
	g, err := s.Group()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	before, ci := s.Rev(), s.ConsistentIndex()
	var out []entryResult
	for i := range entries {
		rev, events, err := g.Write(entries[i].index, entries[i].apply)
		if errors.Is(err, ErrGroupUndo) {
			if !errors.Is(err, errEntryFailed) {
				t.Fatalf("undo error %v does not wrap the entry's", err)
			}
			if s.Rev() != before || s.ConsistentIndex() != ci {
				t.Fatalf("an undone group changed the store")
			}
			return append(applyGroup(t, s, entries[:i]), applyGroup(t, s, entries[i:])...)
		}
		out = append(out, entryResult{rev, events, err})
	}
	if s.Rev() != before || s.ConsistentIndex() != ci {
		t.Fatalf("an uncommitted group is visible: rev %d ci %d, before %d %d", s.Rev(), s.ConsistentIndex(), before, ci)
	}
	if err := g.Commit(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGroupMatchesSingleWrites applies the same random entries to one
// store entry by entry (Store.Write) and to another in random groups,
// with entries that fail before and after writing and replays of old
// entries, and wants the same results, revisions, events, consistent
// index and history. Some groups are large enough to read keys' live
// versions through an iterator, and the grouped store is flushed now and
// then so that they read from tables as well as the memtable.
// -mvcc.groupseed picks the seed, printed on failure.
func TestGroupMatchesSingleWrites(t *testing.T) {
	seed := *groupSeed
	r := rand.New(rand.NewSource(seed))
	single, _ := openTest(t)
	grouped, _ := openTest(t)
	rounds := 300
	if testing.Short() {
		rounds = 60
	}
	var index uint64
	for round := range rounds {
		var entries []groupEntry
		n := 1 + r.Intn(12)
		if r.Intn(4) == 0 {
			// Large groups look keys up through an iterator (iterAfter).
			n = 2*iterAfter + r.Intn(4*iterAfter)
		}
		for range n {
			index++
			e := groupEntry{index: index, fail: -1}
			if r.Intn(8) == 0 && index > 3 {
				e.index = index - 1 - uint64(r.Intn(3)) // a replayed entry: skipped
				index--
			}
			for range 1 + r.Intn(3) {
				if r.Intn(3) > 0 {
					e.ops = append(e.ops, groupOp{put: true, key: randKey(r), val: fmt.Sprint(r.Intn(1000))})
				} else {
					k, end := randRange(r)
					e.ops = append(e.ops, groupOp{key: k, end: end})
				}
			}
			if r.Intn(6) == 0 {
				e.fail = r.Intn(len(e.ops) + 1)
			}
			entries = append(entries, e)
		}
		var want []entryResult
		for i := range entries {
			rev, events, err := single.Write(entries[i].index, entries[i].apply)
			want = append(want, entryResult{rev, events, err})
		}
		got := applyGroup(t, grouped, entries)
		if round%40 == 39 {
			// Move what the groups read into tables, below the memtable.
			if err := grouped.db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		for i := range want {
			if got[i].rev != want[i].rev || !errors.Is(got[i].err, errEntryFailed) != !errors.Is(want[i].err, errEntryFailed) ||
				!reflect.DeepEqual(got[i].events, want[i].events) {
				t.Fatalf("seed %d round %d entry %d (%+v):\n got rev %d err %v events %+v\nwant rev %d err %v events %+v",
					seed, round, i, entries[i], got[i].rev, got[i].err, got[i].events, want[i].rev, want[i].err, want[i].events)
			}
		}
		if grouped.Rev() != single.Rev() || grouped.ConsistentIndex() != single.ConsistentIndex() {
			t.Fatalf("seed %d round %d: grouped rev %d ci %d, single %d %d", seed, round,
				grouped.Rev(), grouped.ConsistentIndex(), single.Rev(), single.ConsistentIndex())
		}
	}
	for rev := int64(1); rev <= single.Rev(); rev++ {
		w, err := single.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: rev})
		if err != nil {
			t.Fatal(err)
		}
		g, err := grouped.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: rev})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("seed %d rev %d:\n got %+v\nwant %+v", seed, rev, g, w)
		}
	}
	wh, err := single.Hash()
	if err != nil {
		t.Fatal(err)
	}
	gh, err := grouped.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if gh != wh {
		t.Fatalf("seed %d: hash %x want %x", seed, gh, wh)
	}
}

// TestGroupHoldsOtherWriters checks that a write made while a group is
// open waits for the group and lands after it.
func TestGroupHoldsOtherWriters(t *testing.T) {
	s, _ := openTest(t)
	g, err := s.Group()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Write(1, func(tx *WriteTxn) error {
		_, err := tx.Put([]byte("a"), []byte("group"), 0, PutOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan int64)
	go func() {
		rev, _, err := s.Put(2, []byte("a"), []byte("later"), 0, PutOptions{})
		if err != nil {
			t.Error(err)
		}
		done <- rev
	}()
	if err := g.Commit(); err != nil {
		t.Fatal(err)
	}
	if rev := <-done; rev != 3 {
		t.Fatalf("the later write got revision %d, want 3", rev)
	}
	res, err := s.Range([]byte("a"), nil, RangeOptions{})
	if err != nil || len(res.KVs) != 1 || string(res.KVs[0].Value) != "later" || s.ConsistentIndex() != 2 {
		t.Fatalf("got %+v %v ci %d", res, err, s.ConsistentIndex())
	}
}

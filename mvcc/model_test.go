package mvcc

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
)

var modelSeed = flag.Int64("mvcc.seed", 1, "seed of TestModel")

// modelKV is the model's view of one live key.
type modelKV struct {
	value                 string
	create, mod, ver, lse int64
}

// model keeps the full key space at every revision.
type model struct {
	states    []map[string]modelKV // states[rev]; states[0] unused
	compacted int64
}

func newModel() *model {
	return &model{states: []map[string]modelKV{nil, {}}}
}

func (m *model) rev() int64 { return int64(len(m.states) - 1) }

func inRange(k, key, end string) bool {
	switch {
	case end == "":
		return k == key
	case end == "\x00":
		return k >= key
	default:
		return k >= key && k < end
	}
}

// modelTxn applies ops to a copy of the latest state.
type modelTxn struct {
	m       *model
	state   map[string]modelKV
	changed bool
}

func (m *model) begin() *modelTxn {
	st := map[string]modelKV{}
	for k, v := range m.states[m.rev()] {
		st[k] = v
	}
	return &modelTxn{m: m, state: st}
}

func (t *modelTxn) put(k, v string, lease int64) {
	rev := t.m.rev() + 1
	kv := modelKV{value: v, create: rev, mod: rev, ver: 1, lse: lease}
	if old, ok := t.state[k]; ok {
		kv.create, kv.ver = old.create, old.ver+1
	}
	t.state[k] = kv
	t.changed = true
}

func (t *modelTxn) del(key, end string) int64 {
	var n int64
	for k := range t.state {
		if inRange(k, key, end) {
			delete(t.state, k)
			n++
		}
	}
	if n > 0 {
		t.changed = true
	}
	return n
}

func (t *modelTxn) commit() {
	if t.changed {
		t.m.states = append(t.m.states, t.state)
	}
}

func (m *model) rangeAt(key, end string, rev int64) ([]KeyValue, error) {
	if rev == 0 {
		rev = m.rev()
	}
	if rev > m.rev() {
		return nil, ErrFutureRev
	}
	if rev < m.compacted {
		return nil, ErrCompacted
	}
	out := []KeyValue{}
	for k, v := range m.states[rev] {
		if inRange(k, key, end) {
			out = append(out, KeyValue{Key: []byte(k), Value: []byte(v.value), CreateRevision: v.create, ModRevision: v.mod, Version: v.ver, Lease: v.lse})
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	return out, nil
}

var modelKeys = []string{"a", "a\x00", "a\x00b", "ab", "b", "ba", "c", "\x00", "\xff", "\xff\x00"}

// randValue returns a short value, or a quarter of the time one of at
// least largeValue bytes, which the c space keeps by reference.
func randValue(r *rand.Rand) string {
	v := fmt.Sprint(r.Intn(1000))
	if r.Intn(4) == 0 {
		v += strings.Repeat("x", largeValue+r.Intn(100))
	}
	return v
}

func randKey(r *rand.Rand) string { return modelKeys[r.Intn(len(modelKeys))] }

func randRange(r *rand.Rand) (string, string) {
	k := randKey(r)
	switch r.Intn(4) {
	case 0:
		return k, ""
	case 1:
		return k, "\x00"
	case 2:
		return k, k + "\x01"
	default:
		e := randKey(r)
		if e < k {
			k, e = e, k
		}
		return k, e
	}
}

// TestModel runs random puts, deletes, transactions, compactions, replays
// and reopens against an in-memory model of key histories, reading at
// random revisions; -mvcc.seed picks the seed, printed on failure.
func TestModel(t *testing.T) {
	seed := *modelSeed
	r := rand.New(rand.NewSource(seed))
	s, dir := openTest(t)
	m := newModel()
	fail := func(step int, format string, args ...interface{}) {
		t.Helper()
		t.Fatalf("seed %d step %d: %s", seed, step, fmt.Sprintf(format, args...))
	}
	var raftIndex uint64
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for step := 0; step < steps; step++ {
		raftIndex++
		switch op := r.Intn(100); {
		case op < 40: // put
			k, v, l := randKey(r), randValue(r), int64(r.Intn(3))
			mt := m.begin()
			mt.put(k, v, l)
			mt.commit()
			rev, _, err := s.Put(raftIndex, []byte(k), []byte(v), l, PutOptions{})
			if err != nil || rev != m.rev() {
				fail(step, "put: rev %d want %d err %v", rev, m.rev(), err)
			}
		case op < 55: // delete range
			k, e := randRange(r)
			mt := m.begin()
			n := mt.del(k, e)
			mt.commit()
			rev, got, _, err := s.DeleteRange(raftIndex, []byte(k), []byte(e), false)
			if err != nil || rev != m.rev() || got != n {
				fail(step, "delete %q-%q: rev %d n %d want %d %d err %v", k, e, rev, got, m.rev(), n, err)
			}
		case op < 70: // txn
			mt := m.begin()
			rev, _, err := s.Write(raftIndex, func(tx *WriteTxn) error {
				for i := r.Intn(4) + 1; i > 0; i-- {
					if r.Intn(3) > 0 {
						k, v := randKey(r), randValue(r)
						mt.put(k, v, 0)
						if _, err := tx.Put([]byte(k), []byte(v), 0, PutOptions{}); err != nil {
							return err
						}
					} else {
						k, e := randRange(r)
						want := mt.del(k, e)
						n, _, err := tx.DeleteRange([]byte(k), []byte(e), false)
						if err != nil || n != want {
							return fmt.Errorf("txn delete %q-%q: %d want %d (%v)", k, e, n, want, err)
						}
					}
				}
				return nil
			})
			mt.commit()
			if err != nil || rev != m.rev() {
				fail(step, "txn: rev %d want %d err %v", rev, m.rev(), err)
			}
		case op < 74: // compaction
			if m.rev() <= m.compacted {
				if err := s.SetConsistentIndex(raftIndex); err != nil {
					fail(step, "set ci: %v", err)
				}
				break
			}
			rev := m.compacted + 1 + r.Int63n(m.rev()-m.compacted)
			if err := s.Compact(raftIndex, rev); err != nil {
				fail(step, "compact %d: %v", rev, err)
			}
			m.compacted = rev
		case op < 76: // replay of an old entry is a no-op
			raftIndex--
			if raftIndex == 0 {
				break
			}
			before := s.Rev()
			if _, _, err := s.Put(raftIndex, []byte("a"), []byte("replay"), 0, PutOptions{}); err != nil || s.Rev() != before {
				fail(step, "replay applied")
			}
		case op < 77: // reopen
			raftIndex--
			if err := s.Close(); err != nil {
				fail(step, "close: %v", err)
			}
			var err error
			if s, err = Open(dir); err != nil {
				fail(step, "open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
		default: // read at a random revision
			raftIndex--
			k, e := randRange(r)
			rev := r.Int63n(m.rev() + 2)
			want, werr := m.rangeAt(k, e, rev)
			res, err := s.Range([]byte(k), []byte(e), RangeOptions{Rev: rev})
			if werr != nil {
				if !errors.Is(err, werr) {
					fail(step, "range %q-%q@%d: err %v want %v", k, e, rev, err, werr)
				}
				break
			}
			if err != nil {
				fail(step, "range %q-%q@%d: %v", k, e, rev, err)
			}
			got := res.KVs
			if got == nil {
				got = []KeyValue{}
			}
			if !reflect.DeepEqual(got, want) || res.Count != int64(len(want)) {
				fail(step, "range %q-%q@%d:\n got %+v\nwant %+v", k, e, rev, got, want)
			}
		}
		if s.Rev() != m.rev() || s.ConsistentIndex() != raftIndex {
			fail(step, "rev %d want %d, ci %d want %d", s.Rev(), m.rev(), s.ConsistentIndex(), raftIndex)
		}
	}
	// Final sweep: every readable revision matches the model.
	for rev := m.compacted; rev <= m.rev(); rev++ {
		if rev == 0 {
			continue
		}
		want, _ := m.rangeAt("\x00", "\x00", rev)
		res, err := s.Range([]byte("\x00"), []byte("\x00"), RangeOptions{Rev: rev})
		if err != nil {
			t.Fatalf("seed %d final rev %d: %v", seed, rev, err)
		}
		got := res.KVs
		if got == nil {
			got = []KeyValue{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d final rev %d:\n got %+v\nwant %+v", seed, rev, got, want)
		}
	}
}

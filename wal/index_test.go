package wal

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// indexModel is what the log should hold: entries [first, first+len(log)).
type indexModel struct {
	first  uint64
	log    []pb.Entry
	marker Marker // the newest marker saved, which Open replays from
}

func (m *indexModel) last() uint64 { return m.first + uint64(len(m.log)) - 1 }

// TestEntryIndexAgainstModel runs random sequences of saves (appends and
// overwrites of entries of random sizes across small segments), snapshot
// markers (local ones and ones that replace the log), releases and
// reopens, and checks after each step that Term answers every entry the
// log holds and that ReadEntries returns exactly the model's entries,
// limited by size as asked. Replay with SYNOD_WAL_INDEX_SEED=<seed>.
func TestEntryIndexAgainstModel(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if v := os.Getenv("SYNOD_WAL_INDEX_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SYNOD_WAL_INDEX_SEED=%q: %v", v, err)
		}
		seeds = []uint64{n}
	}
	defer func(n int) { chunkLen = n }(chunkLen)
	for _, seed := range seeds {
		// Small chunks, for some seeds, so that truncations cross them.
		chunkLen = []int{1024, 3, 7}[seed%3]
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			if err := runIndexModel(t.TempDir(), seed); err != nil {
				t.Fatalf("seed %d: %v (replay: SYNOD_WAL_INDEX_SEED=%d go test ./wal -run TestEntryIndexAgainstModel)", seed, err, seed)
			}
		})
	}
}

func runIndexModel(dir string, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed))
	opts := Options{SegmentSize: 16 << 10, MaxSegments: 1, Logger: quiet()}
	w, err := Create(dir, []byte("meta"), opts)
	if err != nil {
		return err
	}
	defer func() { w.Close() }()
	m := &indexModel{first: 1}
	term := uint64(1)
	entry := func(i uint64) pb.Entry {
		data := make([]byte, rng.IntN(3000))
		for k := range data {
			data[k] = byte(i) ^ byte(k) ^ byte(term)
		}
		return pb.Entry{Index: i, Term: term, Data: data}
	}
	for step := range 400 {
		switch op := rng.IntN(20); {
		case op < 12: // save, sometimes overwriting the tail
			lo := m.last() + 1
			if len(m.log) > 0 && rng.IntN(4) == 0 {
				lo = m.last() + 1 - uint64(rng.IntN(min(len(m.log), 8))+1)
				lo = max(lo, m.marker.Index+1)
				term++
			}
			var ents []pb.Entry
			for i := lo; i < lo+uint64(rng.IntN(6)+1); i++ {
				ents = append(ents, entry(i))
			}
			if err := w.Save(pb.HardState{Term: term, Commit: m.marker.Index}, ents, rng.IntN(2) == 0); err != nil {
				return fmt.Errorf("step %d: save: %w", step, err)
			}
			m.log = append(m.log[:lo-m.first], ents...)
		case op < 14 && len(m.log) > 0: // a local snapshot, then a release up to it
			k := m.first + uint64(rng.IntN(len(m.log)))
			if k <= m.marker.Index {
				continue
			}
			mk := Marker{Index: k, Term: m.log[k-m.first].Term}
			if err := w.SaveSnapshot(mk); err != nil {
				return fmt.Errorf("step %d: snapshot: %w", step, err)
			}
			m.marker = mk
			rel := k - uint64(rng.IntN(int(k-m.first)+1))
			w.ReleaseTo(rel)
			m.log, m.first = m.log[rel-m.first:], rel
		case op < 15: // a leader's snapshot replacing the log
			term++
			mk := Marker{Index: m.last() + uint64(rng.IntN(20)), Term: term, ReplacesLog: true}
			if mk.Index <= m.marker.Index {
				continue
			}
			if err := w.SaveSnapshot(mk); err != nil {
				return fmt.Errorf("step %d: replacing snapshot: %w", step, err)
			}
			w.ReleaseTo(mk.Index)
			m.marker, m.first, m.log = mk, mk.Index+1, nil
		case op < 17: // restart
			if err := w.Close(); err != nil {
				return err
			}
			o := opts
			o.ReplayTailBytes = uint64(rng.IntN(8000))
			var rp *Replay
			if w, rp, err = Open(dir, Marker{Index: m.marker.Index, Term: m.marker.Term}, o); err != nil {
				return fmt.Errorf("step %d: reopen from %+v: %w", step, m.marker, err)
			}
			if m.first <= m.marker.Index {
				m.log, m.first = m.log[m.marker.Index+1-m.first:], m.marker.Index+1
			}
			if err := checkReplayTail(rp, m, o.ReplayTailBytes); err != nil {
				return fmt.Errorf("step %d: reopen: %w", step, err)
			}
		default:
		}
		if err := checkIndex(w, m, rng); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
	}
	return nil
}

// checkReplayTail checks that the replayed entries are the model's newest
// ones, within the bound but for the last one.
func checkReplayTail(rp *Replay, m *indexModel, limit uint64) error {
	if len(m.log) == 0 {
		if len(rp.Entries) != 0 {
			return fmt.Errorf("replayed %d entries of an empty log", len(rp.Entries))
		}
		return nil
	}
	n := len(rp.Entries)
	if n == 0 || rp.Entries[n-1].Index != m.last() {
		return fmt.Errorf("replay does not end at the last entry %d (%d entries)", m.last(), n)
	}
	var size uint64
	for i, e := range rp.Entries {
		want := m.log[e.Index-m.first]
		if e.Term != want.Term || string(e.Data) != string(want.Data) || (i > 0 && e.Index != rp.Entries[i-1].Index+1) {
			return fmt.Errorf("replayed entry %d/%d differs from the model's %d/%d", e.Index, e.Term, want.Index, want.Term)
		}
		size += e.PayloadSize()
	}
	if limit > 0 && n > 1 && size > limit {
		return fmt.Errorf("replayed %d bytes in %d entries, above the bound %d", size, n, limit)
	}
	return nil
}

// checkIndex compares Term and ReadEntries with the model.
func checkIndex(w *WAL, m *indexModel, rng *rand.Rand) error {
	for i := m.first; i <= m.last(); i++ {
		got, ok := w.Term(i)
		if want := m.log[i-m.first].Term; !ok || got != want {
			return fmt.Errorf("Term(%d) = %d, %v; want %d", i, got, ok, want)
		}
	}
	if _, ok := w.Term(m.last() + 1); ok {
		return fmt.Errorf("Term(%d) past the last entry answered", m.last()+1)
	}
	if len(m.log) == 0 {
		return nil
	}
	lo := m.first + uint64(rng.IntN(len(m.log)))
	hi := lo + 1 + uint64(rng.IntN(int(m.last()-lo)+1))
	maxSize := uint64(rng.IntN(10000))
	got, err := w.ReadEntries(lo, hi, maxSize)
	if err != nil {
		return fmt.Errorf("ReadEntries(%d, %d, %d): %w", lo, hi, maxSize, err)
	}
	want := m.log[lo-m.first : hi-m.first]
	var size uint64
	n := 0
	for n < len(want) {
		size += want[n].PayloadSize()
		if n > 0 && size > maxSize {
			break
		}
		n++
	}
	if len(got) != n {
		return fmt.Errorf("ReadEntries(%d, %d, %d) returned %d entries, want %d", lo, hi, maxSize, len(got), n)
	}
	for k := range got {
		if got[k].Index != want[k].Index || got[k].Term != want[k].Term || string(got[k].Data) != string(want[k].Data) {
			return fmt.Errorf("ReadEntries(%d, %d, %d): entry %d is %d/%d, want %d/%d", lo, hi, maxSize, k, got[k].Index, got[k].Term, want[k].Index, want[k].Term)
		}
	}
	return nil
}

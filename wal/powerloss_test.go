package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synod-db/synod/diskfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// plKind says what a record of the model's stream is.
type plKind uint8

const (
	plEntry plKind = iota
	plState
	plSnap
)

// plEvent is one record the WAL was asked to write, in order.
type plEvent struct {
	kind plKind
	ent  pb.Entry
	hs   pb.HardState
	snap Marker
}

// plLog is the effective log and hard state after a prefix of the stream,
// as seen by a replay from the snapshot at index from: a leader's snapshot
// (ReplacesLog) at or before from replaced the log; one after from whose
// file was never saved is void, and no entry may follow it.
type plLog struct {
	from uint64
	base uint64 // the index before ents[0]
	ents []pb.Entry
	hs   pb.HardState
	// pending is a void replacing snapshot seen; broken, an entry after it.
	pending, broken bool
}

func (l plLog) clone() plLog {
	l.ents = slices.Clone(l.ents)
	return l
}

func (l *plLog) last() uint64 { return l.base + uint64(len(l.ents)) }

func (l *plLog) term(i uint64) uint64 { return l.ents[i-l.base-1].Term }

func (l *plLog) apply(ev plEvent) {
	switch ev.kind {
	case plEntry:
		if l.pending {
			l.broken = true
			return
		}
		if ev.ent.Index <= l.base || ev.ent.Index > l.last()+1 {
			panic(fmt.Sprintf("model: entry %d does not fit log (%d, %d]", ev.ent.Index, l.base, l.last()))
		}
		l.ents = append(l.ents[:ev.ent.Index-l.base-1], ev.ent)
	case plState:
		l.hs = ev.hs
	case plSnap:
		switch {
		case !ev.snap.ReplacesLog:
		case ev.snap.Index <= l.from:
			l.base, l.ents = ev.snap.Index, nil
		default:
			l.pending = true
		}
	}
}

// after returns the entries after index i, or false if the log does not
// reach back to i.
func (l *plLog) after(i uint64) ([]pb.Entry, bool) {
	switch {
	case i < l.base:
		return nil, false
	case i >= l.last():
		return nil, true
	}
	return l.ents[i-l.base:], true
}

// plStats counts what the crashes hit, to show the test covers them.
type plStats struct {
	crashOps    map[string]int
	images      int
	tmpLeft     int
	repaired    int
	beyondAcked int
	createLost  int
	installs    int
	overwrites  int
	unsaved     int
	reads       int
}

// plRun is one iteration of the power-loss test: a workload over several
// generations, each ended by a crash and checked by reopening.
type plRun struct {
	seed  uint64
	rng   *rand.Rand
	dir   string
	meta  []byte
	opts  Options
	stats *plStats
	gen   int

	created bool
	base    plLog // what the generation started from (durable)
	cur     plLog // after every record issued
	events  []plEvent
	acked   int // events known durable
	// snaps are the snapshots whose files were saved, oldest first; a
	// restart opens the WAL at the newest.
	snaps []Marker

	term, vote, commit, snapIdx uint64
	bigEntries                  bool
	// installed maps the index of every leader's snapshot to its term:
	// a snapshot covers committed entries, whose terms never change, so
	// any later snapshot at that index (after a void one) has that term.
	installed map[uint64]uint64
}

// errUnsavedSnapshot ends a generation by a crash between a snapshot's
// marker and its file.
var errUnsavedSnapshot = errors.New("crash while the snapshot file is written")

// errRestart ends a generation early: the member restarts.
var errRestart = errors.New("restart")

func (r *plRun) push(ev plEvent) {
	r.events = append(r.events, ev)
	r.cur.apply(ev)
}

// save mirrors WAL.Save: entry records, then a state record if the state
// changed.
func (r *plRun) save(w *WAL, hs pb.HardState, ents []pb.Entry, sync bool) error {
	for _, e := range ents {
		r.push(plEvent{kind: plEntry, ent: e})
	}
	if !hs.IsEmpty() && hs != r.cur.hs {
		r.push(plEvent{kind: plState, hs: hs})
	}
	err := w.Save(hs, ents, sync)
	if err == nil && sync {
		r.acked = len(r.events)
	}
	return err
}

// saveSnapshot follows logstore: the marker, then the snapshot file, then
// ReleaseTo. Sometimes the power fails while the file is written.
func (r *plRun) saveSnapshot(w *WAL, m Marker) error {
	r.push(plEvent{kind: plSnap, snap: m})
	r.snapIdx = m.Index
	if err := w.SaveSnapshot(m); err != nil {
		return err
	}
	r.acked = len(r.events)
	if r.rng.IntN(12) == 0 {
		r.stats.unsaved++
		return errUnsavedSnapshot
	}
	r.snaps = append(r.snaps, Marker{Index: m.Index, Term: m.Term})
	w.ReleaseTo(m.Index)
	return nil
}

// plFiller is random text that entries take their bodies from.
var plFiller = func() []byte {
	rng := rand.New(rand.NewPCG(1, 1))
	b := make([]byte, 512<<10)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return b
}()

func (r *plRun) entry(idx, term uint64) pb.Entry {
	data := fmt.Appendf(nil, "s%d g%d i%d t%d:", r.seed, r.gen, idx, term)
	n := r.rng.IntN(100)
	switch {
	case r.bigEntries && r.rng.IntN(4) == 0:
		n = 150<<10 + r.rng.IntN(200<<10)
	case r.rng.IntN(20) == 0:
		n = 500 + r.rng.IntN(3000)
	}
	off := r.rng.IntN(len(plFiller) - n + 1)
	data = append(data, plFiller[off:off+n]...)
	return pb.Entry{Index: idx, Term: term, Type: pb.EntryType(r.rng.IntN(3)), Data: data}
}

func (r *plRun) hardState() pb.HardState {
	return pb.HardState{Term: r.term, Vote: r.vote, Commit: r.commit}
}

func (r *plRun) sync() bool { return r.rng.IntN(2) == 0 }

func (r *plRun) appendEntries(w *WAL) error {
	n := 1 + r.rng.IntN(8)
	if r.rng.IntN(10) == 0 {
		n += r.rng.IntN(40)
	}
	last := r.cur.last()
	ents := make([]pb.Entry, n)
	for i := range ents {
		ents[i] = r.entry(last+1+uint64(i), r.term)
	}
	if r.rng.IntN(2) == 0 {
		r.commit += r.rng.Uint64N(last + uint64(n) - r.commit + 1)
	}
	return r.save(w, r.hardState(), ents, r.sync())
}

// overwrite replaces a suffix of the uncommitted log with entries of a
// new term, as a new leader does; the new suffix may be shorter.
func (r *plRun) overwrite(w *WAL) error {
	lo := max(r.commit, r.snapIdx, r.cur.base) + 1
	last := r.cur.last()
	if lo > last {
		return r.appendEntries(w)
	}
	r.stats.overwrites++
	start := lo + r.rng.Uint64N(last-lo+1)
	r.term++
	r.vote = 1 + r.rng.Uint64N(5)
	ents := make([]pb.Entry, 1+r.rng.IntN(6))
	for i := range ents {
		ents[i] = r.entry(start+uint64(i), r.term)
	}
	return r.save(w, r.hardState(), ents, r.sync())
}

func (r *plRun) stateOnly(w *WAL) error {
	if r.rng.IntN(2) == 0 {
		r.term++
		r.vote = r.rng.Uint64N(6)
	} else {
		r.commit += r.rng.Uint64N(r.cur.last() - r.commit + 1)
	}
	return r.save(w, r.hardState(), nil, r.sync())
}

// snapshot compacts the log at a committed index, often the last one.
func (r *plRun) snapshot(w *WAL) error {
	lo := max(r.snapIdx, r.cur.base) + 1
	if r.commit < lo {
		return r.save(w, pb.HardState{}, nil, true)
	}
	idx := lo + r.rng.Uint64N(r.commit-lo+1)
	if r.rng.IntN(3) == 0 {
		idx = r.commit
	}
	if t, ok := r.installed[idx]; ok && t != r.cur.term(idx) {
		// Raft would not have committed this entry.
		return r.save(w, pb.HardState{}, nil, true)
	}
	return r.saveSnapshot(w, Marker{Index: idx, Term: r.cur.term(idx)})
}

// compact commits the whole log and snapshots at its last index, then
// often restarts: a replay from the snapshot must not bring back entries
// an earlier overwrite replaced.
func (r *plRun) compact(w *WAL) error {
	last := r.cur.last()
	if last <= max(r.snapIdx, r.cur.base) {
		return r.appendEntries(w)
	}
	if t, ok := r.installed[last]; ok && t != r.cur.term(last) {
		return r.appendEntries(w)
	}
	r.commit = last
	if err := r.save(w, r.hardState(), nil, r.sync()); err != nil {
		return err
	}
	if err := r.saveSnapshot(w, Marker{Index: last, Term: r.cur.term(last)}); err != nil {
		return err
	}
	if r.rng.IntN(3) == 0 {
		return errRestart
	}
	return nil
}

// install saves a leader's snapshot that replaces the log: past its end or
// over a conflicting uncommitted suffix. Then the hard state commits it.
func (r *plRun) install(w *WAL) error {
	r.stats.installs++
	lo := max(r.commit, r.snapIdx, r.cur.base) + 1
	r.term++
	m := Marker{Index: lo + r.rng.Uint64N(r.cur.last()+40-lo+1), Term: r.term, ReplacesLog: true}
	if t, ok := r.installed[m.Index]; ok {
		m.Term = t
	}
	r.installed[m.Index] = m.Term
	if err := r.saveSnapshot(w, m); err != nil {
		return err
	}
	r.commit = m.Index
	return r.save(w, r.hardState(), nil, r.sync())
}

// read checks ReadEntries against the model for a range of saved entries
// after the newest snapshot.
func (r *plRun) read(w *WAL) error {
	lo := max(r.snapIdx, r.cur.base) + 1
	last := r.cur.last()
	if lo > last {
		return nil
	}
	r.stats.reads++
	a := lo + r.rng.Uint64N(last-lo+1)
	b := a + 1 + r.rng.Uint64N(last-a+1)
	got, err := w.ReadEntries(a, b, ^uint64(0))
	if err != nil {
		return fmt.Errorf("ReadEntries(%d, %d): %w", a, b, err)
	}
	want := r.cur.ents[a-r.cur.base-1 : b-r.cur.base-1]
	if !sameEntries(got, want) {
		return fmt.Errorf("ReadEntries(%d, %d) returned %d entries that differ from the %d saved", a, b, len(got), len(want))
	}
	return nil
}

func sameEntries(got, want []pb.Entry) bool {
	if len(got) != len(want) {
		return false
	}
	for i, e := range got {
		w := want[i]
		if e.Index != w.Index || e.Term != w.Term || e.Type != w.Type || !bytes.Equal(e.Data, w.Data) {
			return false
		}
	}
	return true
}

func (r *plRun) step(w *WAL) error {
	switch p := r.rng.IntN(100); {
	case p < 48:
		return r.appendEntries(w)
	case p < 58:
		return r.overwrite(w)
	case p < 67:
		return r.stateOnly(w)
	case p < 72:
		return r.save(w, pb.HardState{}, nil, true)
	case p < 83:
		return r.snapshot(w)
	case p < 88:
		return r.compact(w)
	case p < 95:
		return r.install(w)
	default:
		return r.read(w)
	}
}

// drive runs a random workload on w, arming a crash at a random step
// (or none: the caller then crashes after the last step).
func (r *plRun) drive(w *WAL, fs *diskfs.MemFS) error {
	steps := 10 + r.rng.IntN(80)
	if r.bigEntries {
		steps = 10 + r.rng.IntN(20)
	}
	armAt := r.rng.IntN(steps + steps/4)
	for s := range steps {
		if s == armAt {
			fs.Arm(1 + r.rng.IntN(16))
		}
		err := r.step(w)
		if dead, _ := fs.PowerLost(); dead || errors.Is(err, errUnsavedSnapshot) || errors.Is(err, errRestart) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("generation %d step %d: %w", r.gen, s, err)
		}
	}
	return nil
}

// marker is where a restart replays from: the newest saved snapshot.
func (r *plRun) marker() Marker {
	if n := len(r.snaps); n > 0 {
		return r.snaps[n-1]
	}
	return Marker{}
}

// verify checks a replay against the model: it must be exactly the log and
// hard state after some prefix of the stream that holds every acknowledged
// record. The next generation continues from that prefix.
func (r *plRun) verify(rp *Replay) error {
	if !bytes.Equal(rp.Metadata, r.meta) {
		return fmt.Errorf("replayed metadata %q, want %q", rp.Metadata, r.meta)
	}
	m := r.marker()
	l := r.base.clone()
	l.from = m.Index
	for k := 0; k <= len(r.events); k++ {
		if k >= r.acked && plMatches(&l, rp, m.Index) {
			if k > r.acked {
				r.stats.beyondAcked++
			}
			if rp.Repaired > 0 {
				r.stats.repaired++
			}
			r.resume(l)
			return nil
		}
		if k < len(r.events) {
			l.apply(r.events[k])
		}
	}
	return r.mismatch(rp, m)
}

func plMatches(l *plLog, rp *Replay, markerIndex uint64) bool {
	if l.broken || rp.HardState != l.hs {
		return false
	}
	want, ok := l.after(markerIndex)
	return ok && sameEntries(rp.Entries, want)
}

// mismatch describes a replay that matches no allowed prefix.
func (r *plRun) mismatch(rp *Replay, m Marker) error {
	var b strings.Builder
	fmt.Fprintf(&b, "replay at marker %+v matches no prefix of the %d records written in generation %d holding the %d acknowledged\n", m, len(r.events), r.gen, r.acked)
	fmt.Fprintf(&b, "  replayed: hard state %+v, %d entries", rp.HardState, len(rp.Entries))
	if n := len(rp.Entries); n > 0 {
		fmt.Fprintf(&b, " %d/%d .. %d/%d", rp.Entries[0].Index, rp.Entries[0].Term, rp.Entries[n-1].Index, rp.Entries[n-1].Term)
	}
	l := r.base.clone()
	l.from = m.Index
	for k := 0; k <= len(r.events); k++ {
		if k == r.acked || k == len(r.events) {
			want, ok := l.after(m.Index)
			fmt.Fprintf(&b, "\n  model after %d records: hard state %+v, log (%d, %d], %d entries after the marker (reaches it: %v, broken: %v)", k, l.hs, l.base, l.last(), len(want), ok, l.broken)
			if n := len(want); n > 0 {
				fmt.Fprintf(&b, " %d/%d .. %d/%d", want[0].Index, want[0].Term, want[n-1].Index, want[n-1].Term)
			}
			for i, e := range rp.Entries {
				if i < len(want) && !sameEntries([]pb.Entry{e}, want[i:i+1]) {
					fmt.Fprintf(&b, "; first difference at %d: replayed %d/%d %.40q, model %d/%d %.40q", i, e.Index, e.Term, e.Data, want[i].Index, want[i].Term, want[i].Data)
					break
				}
			}
		}
		if k < len(r.events) {
			l.apply(r.events[k])
		}
	}
	var recs []string
	for _, ev := range r.events {
		switch ev.kind {
		case plEntry:
			recs = append(recs, fmt.Sprintf("e%d/%d", ev.ent.Index, ev.ent.Term))
		case plState:
			recs = append(recs, fmt.Sprintf("hs%d/%d/%d", ev.hs.Term, ev.hs.Vote, ev.hs.Commit))
		case plSnap:
			recs = append(recs, fmt.Sprintf("snap%d/%d/%v", ev.snap.Index, ev.snap.Term, ev.snap.ReplacesLog))
		}
	}
	if len(recs) < 400 {
		fmt.Fprintf(&b, "\n  records: %s", strings.Join(recs, " "))
	}
	return errors.New(b.String())
}

// resume makes the matched prefix the start of the next generation. A
// replacing snapshot whose file was never saved is void: the member goes
// on from its older snapshot.
func (r *plRun) resume(l plLog) {
	l.pending = false
	r.base = l
	r.cur = l.clone()
	r.cur.from = ^uint64(0)
	r.events = nil
	r.acked = 0
	r.snapIdx = r.marker().Index
	r.term, r.vote = l.hs.Term, l.hs.Vote
	if n := len(l.ents); n > 0 {
		r.term = max(r.term, l.ents[n-1].Term)
	}
	r.commit = max(l.hs.Commit, r.snapIdx)
}

// reopen opens and checks the crash image, possibly crashing during Open
// itself (a repair or the start of the pipeline) and starting over from
// that crash's image. It returns the open WAL, or nil if no WAL was ever
// created, and the file system it is on.
func (r *plRun) reopen(img *diskfs.MemFS) (*WAL, *diskfs.MemFS, error) {
	for attempt := 0; ; attempt++ {
		r.opts.FS = img
		r.stats.images++
		if slices.ContainsFunc(names(img, r.dir), func(n string) bool { return strings.HasSuffix(n, ".wal.tmp") }) {
			r.stats.tmpLeft++
		}
		files := describe(img, r.dir)
		if attempt < 3 && r.rng.IntN(4) == 0 {
			img.Arm(1 + r.rng.IntN(6))
		}
		w, rp, err := Open(r.dir, r.marker(), r.opts)
		img.Disarm()
		if dead, next := img.PowerLost(); dead {
			if w != nil {
				w.Close()
			}
			if err == nil {
				if err := r.verify(rp); err != nil {
					return nil, nil, fmt.Errorf("%w\n  files: %s\n  records:%s", err, files, dumpRecords(img, r.dir))
				}
			}
			img = next
			continue
		}
		if err != nil {
			if errors.Is(err, ErrNotFound) && !r.created {
				r.stats.createLost++
				return nil, img, nil
			}
			return nil, nil, fmt.Errorf("reopening at %+v after the crash (files %s): %w\n  records:%s", r.marker(), files, err, dumpRecords(img, r.dir))
		}
		if err := r.verify(rp); err != nil {
			w.Close()
			return nil, nil, fmt.Errorf("%w\n  files: %s\n  records:%s", err, files, dumpRecords(img, r.dir))
		}
		return w, img, nil
	}
}

// names lists the entries of dir, or says why it cannot.
func names(fs *diskfs.MemFS, dir string) []string {
	names, err := fs.List(dir)
	if err != nil {
		return []string{err.Error()}
	}
	return names
}

// describe lists the files of dir and their sizes.
func describe(fs *diskfs.MemFS, dir string) string {
	var parts []string
	for _, name := range names(fs, dir) {
		data, _ := fs.ReadFile(filepath.Join(dir, name))
		parts = append(parts, fmt.Sprintf("%s(%d)", name, len(data)))
	}
	return strings.Join(parts, " ")
}

// dumpRecords lists the records of each segment of dir, for failure
// messages.
func dumpRecords(fs *diskfs.MemFS, dir string) string {
	var b strings.Builder
	for _, name := range names(fs, dir) {
		if _, ok := parseSegmentName(name); !ok {
			continue
		}
		data, _ := fs.ReadFile(filepath.Join(dir, name))
		fmt.Fprintf(&b, "\n    %s:", name)
		crc, _ := peekCRCRecord(data)
		for off := 0; off < len(data); {
			t, p, size, c, _, err := decodeRecord(data[off:], crc)
			if err != nil {
				fmt.Fprintf(&b, " @%d:%v", off, err)
				break
			}
			switch t {
			case snapshotRecord:
				m, _ := parseMarker(p)
				fmt.Fprintf(&b, " @%d:snap%d/%d/%v", off, m.Index, m.Term, m.ReplacesLog)
			case entryRecord:
				var e pb.Entry
				_ = pb.UnmarshalEntry(p, &e)
				fmt.Fprintf(&b, " e%d/%d", e.Index, e.Term)
			case stateRecord:
				hs, _ := pb.UnmarshalHardState(p)
				fmt.Fprintf(&b, " hs%d/%d/%d", hs.Term, hs.Vote, hs.Commit)
			default:
				fmt.Fprintf(&b, " %v", t)
			}
			crc = c
			off += size
		}
	}
	return b.String()
}

// runPowerLoss runs one seeded iteration.
func runPowerLoss(seed uint64, stats *plStats) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	r := &plRun{
		seed:  seed,
		rng:   rng,
		dir:   "/data/wal",
		meta:  fmt.Appendf(nil, "cluster=%d member=1", seed),
		stats: stats,
		cur:   plLog{from: ^uint64(0)},

		installed: map[uint64]uint64{},
	}
	r.opts = Options{
		SegmentSize: []int64{2 << 10, 4 << 10, 8 << 10}[rng.IntN(3)],
		MaxSegments: []int{-1, 1, 1, 2}[rng.IntN(4)],
		Logger:      quiet(),
	}
	if rng.IntN(25) == 0 {
		// Large segments and entries: Save flushes a big unsynced buffer
		// without moving to a new segment.
		r.opts.SegmentSize, r.bigEntries = 3<<20, true
	}
	fs := diskfs.NewMemFS(rand.New(rand.NewPCG(seed, 1)))
	r.opts.FS = fs
	var w *WAL
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	gens := 1 + rng.IntN(4)
	for r.gen = 0; r.gen < gens; r.gen++ {
		if w == nil {
			if rng.IntN(4) == 0 {
				fs.Arm(1 + rng.IntN(10))
			}
			w, err = Create(r.dir, r.meta, r.opts)
			if err != nil {
				if dead, _ := fs.PowerLost(); !dead {
					return fmt.Errorf("create: %w", err)
				}
				w = nil
			} else {
				r.created = true
			}
		}
		if dead, _ := fs.PowerLost(); w != nil && !dead {
			if err := r.drive(w, fs); err != nil {
				return err
			}
		}
		fs.Disarm()
		var img *diskfs.MemFS
		crash := "idle"
		if dead, armed := fs.PowerLost(); dead {
			img = armed
			crash = fs.CrashOp()
			stats.crashOps[strings.Fields(crash)[0]]++
		} else if w != nil && rng.IntN(8) == 0 {
			// A clean shutdown: everything saved is durable.
			if err := w.Close(); err != nil {
				return fmt.Errorf("close: %w", err)
			}
			r.acked = len(r.events)
			crash = "after close"
			img = fs.Crash(rng)
		} else {
			img = fs.Crash(rng)
			stats.crashOps["idle"]++
		}
		if w != nil {
			w.Close()
		}
		w, fs, err = r.reopen(img)
		if err != nil {
			return fmt.Errorf("generation %d, crash at %q: %w", r.gen, crash, err)
		}
		if w != nil {
			r.created = true
		}
	}
	if w != nil {
		err := w.Close()
		closed := w
		w = nil
		if err != nil {
			return fmt.Errorf("final close: %w", err)
		}
		if err := closed.Save(pb.HardState{}, nil, true); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("save after close: %v, want ErrClosed", err)
		}
		if err := closed.SaveSnapshot(Marker{}); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("snapshot after close: %v, want ErrClosed", err)
		}
	}
	return nil
}

// powerLossSeeds returns the seeds to run: SYNOD_WAL_POWERLOSS_SEED runs
// one, SYNOD_WAL_POWERLOSS_ITERS sets how many.
func powerLossSeeds(t *testing.T, def int) []uint64 {
	if s := os.Getenv("SYNOD_WAL_POWERLOSS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		mustT(t, err)
		return []uint64{seed}
	}
	n := def
	if testing.Short() {
		n = def / 5
	}
	if s := os.Getenv("SYNOD_WAL_POWERLOSS_ITERS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		mustT(t, err)
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = 1_000_003 * uint64(i+1)
	}
	return seeds
}

// TestPowerLoss runs random workloads (batches of entries synced or not,
// overwrites of an uncommitted suffix by a new term, hard state changes,
// snapshot markers, snapshots installed beyond the log, segment rolls and
// purges) on the simulated disk, loses power at random points (also inside
// Create, segment rolls, purges, the segment pipeline and Open's repair),
// and checks that Open at the newest durable snapshot marker replays
// exactly the log and hard state after some prefix of what was written
// that holds everything acknowledged as durable; then continues writing
// from there for a few generations.
func TestPowerLoss(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	stats := &plStats{crashOps: map[string]int{}}
	seeds := powerLossSeeds(t, 250)
	for _, seed := range seeds {
		if err := runPowerLoss(seed, stats); err != nil {
			t.Fatalf("seed %d (rerun with SYNOD_WAL_POWERLOSS_SEED=%d): %v", seed, seed, err)
		}
	}
	t.Logf("%d iterations: %d images checked, crashes by operation %v, %d with leftover *.wal.tmp, %d repaired tails, %d replays beyond the acknowledged, %d lost creations, %d overwrites, %d leader snapshots, %d snapshot files lost, %d reads",
		len(seeds), stats.images, stats.crashOps, stats.tmpLeft, stats.repaired, stats.beyondAcked, stats.createLost, stats.overwrites, stats.installs, stats.unsaved, stats.reads)
	if len(seeds) >= 100 {
		// Crashes inside purges are rare here; TestPowerLossLeftoversIgnored
		// aims at them.
		for _, op := range []string{"write", "sync", "rename", "syncdir", "create", "preallocate", "truncate"} {
			if stats.crashOps[op] == 0 {
				t.Errorf("no crash at a %s in %d iterations: the workload no longer reaches it", op, len(seeds))
			}
		}
		if stats.tmpLeft == 0 || stats.repaired == 0 || stats.beyondAcked == 0 {
			t.Errorf("scenarios not reached: %+v", stats)
		}
	}
	checkGoroutines(t, goroutines)
}

// checkGoroutines fails if goroutines outlive the WALs that started them.
// A goroutine that has signalled its exit may still be running its last
// instructions, so this waits a bounded time: nothing else reports exits.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
	}
}

// TestPowerLossLeftoversIgnored crashes while segment files are being
// prepared and purged, keeping every directory operation done so far, and
// checks that leftover *.wal.tmp files and half-done purges are ignored by
// Open and overwritten by later segment rolls.
func TestPowerLossLeftoversIgnored(t *testing.T) {
	for _, tc := range []struct {
		name string
		when func(op, name string) bool
	}{
		{"preparing a segment", func(op, name string) bool { return op == "preallocate" && strings.HasSuffix(name, ".wal.tmp") }},
		{"installing a segment", func(op, name string) bool { return op == "rename" }},
		{"purging", func(op, name string) bool { return op == "remove" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, seed := range []uint64{1, 2, 3, 4, 5, 6, 7, 8} {
				if err := leftoverRun(seed, tc.when); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
			}
		})
	}
}

func leftoverRun(seed uint64, when func(op, name string) bool) error {
	rng := rand.New(rand.NewPCG(seed, 2))
	fs := diskfs.NewMemFS(rand.New(rand.NewPCG(seed, 3)))
	opts := Options{FS: fs, SegmentSize: 2048, MaxSegments: 1, Logger: quiet()}
	w, err := Create("/wal", nil, opts)
	if err != nil {
		return err
	}
	// Crash at the n-th matching operation, keeping what the directory
	// did before it.
	skip := rng.IntN(4)
	crashed := make(chan struct{})
	fs.KeepDirOps(1 << 30)
	fs.CrashIf(func(op, name string) bool {
		if !when(op, name) {
			return false
		}
		skip--
		if skip < 0 {
			close(crashed) // once: a dead file system asks no more
			return true
		}
		return false
	})
	var acked []pb.Entry
	var snap Marker
	for i := uint64(1); i < 1000; i += 10 {
		ents := entries(i, i+10, 1)
		if err := w.Save(pb.HardState{Term: 1, Commit: i + 9}, ents, true); err != nil {
			break
		}
		acked = append(acked, ents...)
		if i%30 == 1 {
			if err := w.SaveSnapshot(Marker{Index: i + 5, Term: 1}); err != nil {
				break
			}
			snap = Marker{Index: i + 5, Term: 1}
			w.ReleaseTo(snap.Index)
		}
	}
	// The purge runs in the background and may not have reached the
	// crash yet.
	select {
	case <-crashed:
	case <-time.After(10 * time.Second):
		w.Close()
		return errors.New("the crash never happened")
	}
	w.Close()
	_, img := fs.PowerLost()
	if img == nil {
		return errors.New("no crash image")
	}
	opts.FS = img
	listing := strings.Join(names(img, "/wal"), " ")
	w, rp, err := Open("/wal", snap, opts)
	if err != nil {
		return fmt.Errorf("open after a crash (files %s): %w", listing, err)
	}
	want := acked[snap.Index:]
	if len(rp.Entries) < len(want) {
		return fmt.Errorf("replayed %d entries after %d, want at least %d (files %s)", len(rp.Entries), snap.Index, len(want), listing)
	}
	// Keep writing well past the leftovers, then reopen.
	next := snap.Index + uint64(len(rp.Entries)) + 1
	for i := next; i < next+300; i += 10 {
		if err := w.Save(pb.HardState{Term: 1}, entries(i, i+10, 1), true); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	w, rp, err = Open("/wal", snap, opts)
	if err != nil {
		return fmt.Errorf("second open (files %s): %w", strings.Join(names(img, "/wal"), " "), err)
	}
	defer w.Close()
	if n := uint64(len(rp.Entries)); n != next+300-snap.Index-1 {
		return fmt.Errorf("second open replayed %d entries, want %d", n, next+300-snap.Index-1)
	}
	for i, e := range rp.Entries[:len(want)] {
		if e.Index != want[i].Index || !bytes.Equal(e.Data, want[i].Data) {
			return fmt.Errorf("entry %d changed: %d %q, want %d %q", i, e.Index, e.Data, want[i].Index, want[i].Data)
		}
	}
	return nil
}

// TestPowerLossRegressions replays, deterministically, the failures the
// randomized tests above found in the WAL.
func TestPowerLossRegressions(t *testing.T) {
	opts := func(fs diskfs.FS) Options {
		return Options{FS: fs, SegmentSize: 2048, MaxSegments: -1, Logger: quiet()}
	}
	big := func(idx, term uint64, n int) []pb.Entry {
		return []pb.Entry{{Index: idx, Term: term, Data: bytes.Repeat([]byte{'x'}, n)}}
	}
	// crashes runs setup, loses power before each of the first n
	// operations of step (keeping every directory operation, or none),
	// and checks the image with check.
	crashes := func(t *testing.T, n int, setup func(*diskfs.MemFS) *WAL, step func(*WAL) error, check func(*diskfs.MemFS, error) error) {
		t.Helper()
		for i := 1; i <= n; i++ {
			for _, keep := range []int{0, 1 << 30} {
				fs := diskfs.NewMemFS(rand.New(rand.NewPCG(uint64(i), uint64(keep))))
				fs.KeepDirOps(keep)
				w := setup(fs)
				fs.Arm(i)
				err := step(w)
				var img *diskfs.MemFS
				if dead, armed := fs.PowerLost(); dead {
					img = armed
				} else {
					img = fs.Crash(rand.New(rand.NewPCG(uint64(i), 0)))
				}
				if w != nil {
					w.Close()
				}
				if err := check(img, err); err != nil {
					t.Fatalf("power lost before operation %d (keeping %d directory operations): %v\nfiles: %s\nrecords:%s", i, keep, err, describe(img, "/wal"), dumpRecords(img, "/wal"))
				}
			}
		}
	}

	// A crash between installing a new segment under its name and syncing
	// its head left a last segment without a head, which Open refused.
	t.Run("crash during a segment roll", func(t *testing.T) {
		var acked []pb.Entry
		crashes(t, 12, func(fs *diskfs.MemFS) *WAL {
			w, err := Create("/wal", nil, opts(fs))
			mustT(t, err)
			acked = entries(1, 11, 1)
			mustT(t, w.Save(pb.HardState{Term: 1}, acked, true))
			return w
		}, func(w *WAL) error {
			return w.Save(pb.HardState{Term: 1}, big(11, 1, 2048), true)
		}, func(img *diskfs.MemFS, err error) error {
			w, rp, err2 := Open("/wal", Marker{}, opts(img))
			if err2 != nil {
				return err2
			}
			defer w.Close()
			want := acked
			if err == nil {
				want = append(want, big(11, 1, 2048)...)
			}
			if len(rp.Entries) < len(want) || !sameEntries(rp.Entries[:len(want)], want) {
				return fmt.Errorf("replayed %d entries, want %d", len(rp.Entries), len(want))
			}
			return nil
		})
	})

	// A crash inside Create could leave the first segment with a torn
	// head: Open said corrupt and Create said it exists.
	t.Run("crash during Create", func(t *testing.T) {
		for i := 1; i <= 8; i++ {
			fs := diskfs.NewMemFS(rand.New(rand.NewPCG(uint64(i), 9)))
			fs.KeepDirOps(1 << 30)
			fs.Arm(i)
			if w, err := Create("/wal", nil, opts(fs)); err == nil {
				w.Close()
			}
			_, img := fs.PowerLost()
			if img == nil {
				continue
			}
			w, _, err := Open("/wal", Marker{}, opts(img))
			if errors.Is(err, ErrNotFound) {
				w, err = Create("/wal", nil, opts(img))
			}
			if err != nil {
				t.Fatalf("power lost before operation %d of Create: %v (files %s)", i, err, describe(img, "/wal"))
			}
			w.Close()
		}
	})

	// An overwrite below the current segment's first index, followed by
	// a roll, named the new segment with a smaller first index than its
	// predecessor's, and Open refused the (uncrashed) WAL.
	t.Run("roll after an overwrite", func(t *testing.T) {
		fs := diskfs.NewMemFS(rand.New(rand.NewPCG(1, 1)))
		w, err := Create("/wal", nil, opts(fs))
		mustT(t, err)
		mustT(t, w.Save(pb.HardState{Term: 1}, big(1, 1, 2100), true))    // rolls: next first 2
		mustT(t, w.Save(pb.HardState{Term: 1}, entries(2, 101, 1), true)) // rolls: next first 101
		mustT(t, w.Save(pb.HardState{Term: 2}, big(30, 2, 2100), true))   // rolls after overwriting 30
		if segs := w.Segments(); len(segs) != 4 {
			t.Fatalf("segments %v, want 4", segs)
		}
		mustT(t, w.Close())
		w, rp, err := Open("/wal", Marker{}, opts(fs))
		mustT(t, err)
		defer w.Close()
		checkEntries(t, rp.Entries, slices.Concat(big(1, 1, 2100), entries(2, 30, 1), big(30, 2, 2100)))
	})

	// A leader's snapshot past the last entry, then a roll (while saving
	// it, or after a restart at it) before any entry: the new segment was
	// named before the snapshot, so replay from it started past its
	// marker and did not find it.
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("roll after a leader's snapshot past the log (restart %v)", restart), func(t *testing.T) {
			fs := diskfs.NewMemFS(rand.New(rand.NewPCG(1, 1)))
			w, err := Create("/wal", nil, opts(fs))
			mustT(t, err)
			mustT(t, w.Save(pb.HardState{Term: 1}, big(1, 1, 1900), true))
			snap := Marker{Index: 100, Term: 2, ReplacesLog: true}
			mustT(t, w.SaveSnapshot(snap))
			at := Marker{Index: 100, Term: 2}
			if restart {
				mustT(t, w.Close())
				w, _, err = Open("/wal", at, opts(fs))
				mustT(t, err)
			}
			for i := range uint64(80) { // hard states only, until a roll
				mustT(t, w.Save(pb.HardState{Term: 2, Vote: i, Commit: 100}, nil, true))
			}
			w.ReleaseTo(100)
			mustT(t, w.Save(pb.HardState{Term: 2, Commit: 100}, entries(101, 103, 2), true))
			if len(w.Segments()) < 2 {
				t.Fatal("no roll")
			}
			mustT(t, w.Close())
			w, rp, err := Open("/wal", at, opts(fs))
			mustT(t, err)
			defer w.Close()
			checkEntries(t, rp.Entries, entries(101, 103, 2))
		})
	}

	// A leader's snapshot marked, then a crash before its file was
	// written: the member restarts from its older snapshot and goes on
	// with its log. The next restart refused the WAL as corrupt.
	t.Run("void leader's snapshot", func(t *testing.T) {
		fs := diskfs.NewMemFS(rand.New(rand.NewPCG(1, 1)))
		w, err := Create("/wal", nil, opts(fs))
		mustT(t, err)
		mustT(t, w.Save(pb.HardState{Term: 1, Commit: 20}, entries(1, 31, 1), true))
		mustT(t, w.SaveSnapshot(Marker{Index: 20, Term: 1}))
		w.ReleaseTo(20)
		mustT(t, w.SaveSnapshot(Marker{Index: 50, Term: 2, ReplacesLog: true}))
		img := fs.Crash(rand.New(rand.NewPCG(1, 2))) // before the snapshot file at 50 is written
		w.Close()
		w, rp, err := Open("/wal", Marker{Index: 20, Term: 1}, opts(img))
		mustT(t, err)
		checkEntries(t, rp.Entries, entries(21, 31, 1))
		mustT(t, w.Save(pb.HardState{Term: 1, Commit: 25}, entries(31, 35, 1), true))
		mustT(t, w.Close())
		w, rp, err = Open("/wal", Marker{Index: 20, Term: 1}, opts(img))
		mustT(t, err)
		checkEntries(t, rp.Entries, entries(21, 35, 1))
		// Later restarts from a newer local snapshot work too.
		mustT(t, w.SaveSnapshot(Marker{Index: 25, Term: 1}))
		w.ReleaseTo(25)
		mustT(t, w.Save(pb.HardState{Term: 1, Commit: 25}, entries(35, 37, 1), true))
		mustT(t, w.Close())
		w, rp, err = Open("/wal", Marker{Index: 25, Term: 1}, opts(img))
		mustT(t, err)
		checkEntries(t, rp.Entries, entries(26, 37, 1))
		mustT(t, w.Close())
	})

	// A new leader replaced a suffix with a shorter one, the member
	// snapshotted at its new last index and restarted: replay brought
	// back the replaced entries after the snapshot.
	t.Run("replaced entries after the snapshot", func(t *testing.T) {
		fs := diskfs.NewMemFS(rand.New(rand.NewPCG(1, 1)))
		w, err := Create("/wal", nil, opts(fs))
		mustT(t, err)
		mustT(t, w.Save(pb.HardState{Term: 1, Commit: 10}, entries(1, 21, 1), true))
		mustT(t, w.Save(pb.HardState{Term: 2, Commit: 16}, entries(15, 17, 2), true))
		mustT(t, w.SaveSnapshot(Marker{Index: 16, Term: 2}))
		mustT(t, w.Close())
		w, rp, err := Open("/wal", Marker{Index: 16, Term: 2}, opts(fs))
		mustT(t, err)
		defer w.Close()
		checkEntries(t, rp.Entries, nil)
	})

	// purge logged the snapshot index after releasing the lock that
	// ReleaseTo changes it under (found by go test -race).
	t.Run("ReleaseTo during a purge", func(t *testing.T) {
		fs := diskfs.NewMemFS(rand.New(rand.NewPCG(1, 1)))
		o := opts(fs)
		o.MaxSegments = 1
		w, err := Create("/wal", nil, o)
		mustT(t, err)
		for i := uint64(1); i < 400; i += 10 {
			mustT(t, w.Save(pb.HardState{Term: 1, Commit: i + 9}, entries(i, i+10, 1), true))
			w.ReleaseTo(i)
		}
		mustT(t, w.Close())
	})
}

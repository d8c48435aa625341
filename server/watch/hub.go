package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/synod-db/synod/internal/invariants"
	"github.com/synod-db/synod/mvcc"
)

// Source is the history the hub replays for watchers that start in the
// past or fell behind: the member's key space (*mvcc.Store).
type Source interface {
	// History returns the events of revisions [from, to] selected by
	// opts; see mvcc.Store.History.
	History(from, to int64, opts mvcc.HistoryOptions) (mvcc.HistoryResult, error)
	// CompactedRev returns the revision of the last compaction.
	CompactedRev() int64
	// Rev returns the current revision, to notice a key space that moved
	// ahead without Notify (see Options.StaleCheck).
	Rev() int64
}

// Options tune a Hub. Zero fields take the defaults below.
type Options struct {
	// ProgressInterval is how often watchers that asked for progress
	// notifications and received nothing meanwhile get an empty response
	// carrying the current revision (etcd: 10 minutes). Negative: never.
	ProgressInterval time.Duration
	// StreamMaxBytes and StreamMaxResponses bound the responses queued
	// on one stream and not yet sent. A live revision for a watcher whose
	// stream is full is not queued: the watcher falls back to catching up
	// from history once the stream drains, so a slow client costs bounded
	// memory and never slows anyone else.
	StreamMaxBytes     int
	StreamMaxResponses int
	// RecentRevisions and RecentBytes bound the revisions kept in memory
	// to finish catch-ups without reading the store (see recent).
	RecentRevisions int
	RecentBytes     int
	// SyncBatch is how many behind watchers one catch-up round serves
	// with one history read; SyncLimit bounds the stored changes that read
	// scans, so one round never holds much memory or time.
	SyncBatch int
	SyncLimit int
	// ResponseMaxBytes splits catch-up replies: one response holds whole
	// revisions up to about this size (one revision is never split here;
	// the API fragments it if the client allows).
	ResponseMaxBytes int
	// StaleCheck is how often the hub compares its revision with the
	// key space's. If the key space stays ahead of the hub over two
	// checks while no revision is notified, it was changed without
	// Notify (a snapshot installed without Resync): every watcher then
	// catches up from history. Negative: never.
	StaleCheck time.Duration
	// Logger receives the hub's rare warnings; nil means slog.Default().
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultProgressInterval   = 10 * time.Minute
	DefaultStreamMaxBytes     = 8 << 20
	DefaultStreamMaxResponses = 1024
	DefaultRecentRevisions    = 4096
	DefaultRecentBytes        = 8 << 20
	DefaultSyncBatch          = 512
	DefaultSyncLimit          = 8192
	DefaultResponseMaxBytes   = 1 << 20
	DefaultStaleCheck         = time.Second
)

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.StaleCheck == 0 {
		o.StaleCheck = DefaultStaleCheck
	}
	def(&o.StreamMaxBytes, DefaultStreamMaxBytes)
	def(&o.StreamMaxResponses, DefaultStreamMaxResponses)
	def(&o.RecentRevisions, DefaultRecentRevisions)
	def(&o.RecentBytes, DefaultRecentBytes)
	def(&o.SyncBatch, DefaultSyncBatch)
	def(&o.SyncLimit, DefaultSyncLimit)
	def(&o.ResponseMaxBytes, DefaultResponseMaxBytes)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Errors of watch creation, sent to the client as the cancel reason of
// the refused watch. The texts are etcd's where etcd has the same error,
// so that clients matching on them behave the same.
var (
	// ErrClosed: the hub (the member) or the stream has stopped.
	ErrClosed = errors.New("watch: server stopped")
	// ErrDuplicateID: the client chose a watch ID in use on its stream.
	ErrDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// ErrEmptyRange: range_end is not above key, so nothing can match.
	ErrEmptyRange = errors.New("mvcc: watcher range is empty")
	// ErrNegativeRev: start_revision below zero means nothing.
	ErrNegativeRev = errors.New("watch: start revision is negative")
	// ErrNegativeID: negative watch IDs are reserved (-1 addresses every
	// watcher of a stream in progress notifications).
	ErrNegativeID = errors.New("watch: watch ID is negative")
)

// Watcher states.
const (
	stateSynced   uint8 = iota // in the index: gets live events
	stateUnsynced              // behind: catches up from history
	stateDone                  // canceled or its stream closed
)

// watcher is one watch. Its fields are guarded by the hub's mutex except
// where noted; the catch-up goroutine also reads the immutable ones.
type watcher struct {
	span
	id    int64
	st    *Stream
	start int64 // first revision wanted
	next  int64 // when unsynced: first revision not yet queued

	noPut, noDelete, prevKV, fragment, progress bool
	state                                       uint8
	idle                                        bool // nothing queued since the last progress tick

	// dropQueued is set when the client cancels the watch: responses
	// still queued for it are dropped (read by the stream's consumer).
	dropQueued atomic.Bool

	slot slot[*watcher]

	// Scratch of Notify: the events of the current revision for this
	// watcher, either a prefix of the revision's events (shared, no copy)
	// or its own slice when the selection has holes.
	batchRev int64
	shareN   int
	own      []mvcc.Event
}

func (w *watcher) spanOf() *span           { return &w.span }
func (w *watcher) slotOf() *slot[*watcher] { return &w.slot }

// wants reports whether the watcher's filters keep ev.
func (w *watcher) wants(ev *mvcc.Event) bool {
	if ev.Type == mvcc.EventDelete {
		return !w.noDelete
	}
	return !w.noPut
}

// Hub delivers the key space's changes to watchers. The apply goroutine
// calls Notify with each new revision; Notify only looks up the watchers
// the events concern in an interval index and queues one response per
// watcher on its stream, never waiting for a client. Watchers that start
// in the past, or whose stream was too full to take a revision, are
// "unsynced": one background goroutine replays what they missed from
// history in batches and moves them back to the index once they reach
// the current revision, with no gap and no duplicate at the switch
// (every transition happens under the hub's mutex, at a known revision).
type Hub struct {
	src  Source
	opts Options
	lg   *slog.Logger

	mu       sync.Mutex
	rev      int64 // last revision notified
	synced   *index[*watcher]
	unsynced map[*watcher]struct{}
	progress map[*watcher]struct{}
	streams  map[*Stream]struct{}
	recent   recent
	touched  []*watcher
	closed   bool
	// What the last stale check saw: the hub's and the store's revisions.
	staleHub, staleStore int64

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a hub whose current revision is rev (the key space's
// revision now) and starts its catch-up goroutine; Close stops it.
func New(src Source, rev int64, opts Options) *Hub {
	opts = opts.withDefaults()
	h := &Hub{
		src:      src,
		opts:     opts,
		lg:       opts.Logger,
		rev:      rev,
		synced:   newIndex[*watcher](),
		unsynced: make(map[*watcher]struct{}),
		progress: make(map[*watcher]struct{}),
		streams:  make(map[*Stream]struct{}),
		recent:   recent{maxRevs: opts.RecentRevisions, maxBytes: opts.RecentBytes},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go h.run()
	return h
}

// Rev returns the last revision the hub was notified of: every event up
// to it has been queued for every synced watcher.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Stats is a snapshot of the hub's population, for tests and metrics.
type Stats struct {
	Streams, Synced, Unsynced int
}

// Stats counts the hub's streams and watchers.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Streams: len(h.streams), Synced: h.synced.len(), Unsynced: len(h.unsynced)}
}

// Close stops the catch-up goroutine and closes every stream (their
// consumers get ErrClosed). Notify does nothing afterwards.
func (h *Hub) Close() {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		streams := make([]*Stream, 0, len(h.streams))
		for st := range h.streams {
			streams = append(streams, st)
		}
		h.mu.Unlock()
		for _, st := range streams {
			st.Close()
		}
		close(h.stop)
		<-h.done
	})
}

// keyString views an event key as a string for index lookups without
// copying; the string must not outlive the call.
func keyString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Notify delivers revision rev, whose changes are events, to the synced
// watchers. It must be called in revision order by the one goroutine
// that applies writes, right after each write; a revision at or below
// the current one is ignored (a write that changed nothing). A revision
// that skips some (the key space moved without the hub being told) puts
// every watcher back to catching up from history. The hub keeps events
// (shared by every response): the caller must not modify them later.
//
// Cost: one index lookup per event plus O(1) per matching watcher; it
// takes no lock a client can hold and never waits for one.
func (h *Hub) Notify(rev int64, events []mvcc.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || rev <= h.rev {
		return
	}
	if rev != h.rev+1 || len(events) == 0 {
		h.resyncLocked(rev)
		if len(events) > 0 {
			h.recent.push(rev, events)
		}
		return
	}
	if invariants.Enabled {
		// Watchers get revisions in order, each with its own changes.
		for i := range events {
			invariants.Check(events[i].KV.ModRevision == rev, "watch: event of %q at revision %d notified as revision %d", events[i].KV.Key, events[i].KV.ModRevision, rev)
		}
	}
	h.rev = rev
	h.recent.push(rev, events)
	if h.synced.len() == 0 {
		return
	}
	touched := h.touched[:0]
	var i int
	match := func(w *watcher) {
		if rev < w.start || !w.wants(&events[i]) {
			return
		}
		if w.batchRev != rev {
			w.batchRev, w.shareN, w.own = rev, 0, nil
			touched = append(touched, w)
		}
		if w.own == nil && w.shareN == i {
			w.shareN++ // still a prefix of the revision: share it
			return
		}
		if w.own == nil {
			w.own = append(make([]mvcc.Event, 0, w.shareN+4), events[:w.shareN]...)
		}
		w.own = append(w.own, events[i])
	}
	for i = range events {
		h.synced.visit(keyString(events[i].KV.Key), match)
	}
	for _, w := range touched {
		evs := w.own
		if evs == nil {
			evs = events[:w.shareN:w.shareN]
		}
		w.own = nil
		r := Response{WatchID: w.id, Revision: rev, Events: evs, PrevKV: w.prevKV, Fragment: w.fragment, w: w, size: eventsSize(evs)}
		if w.st.offer(r) {
			w.idle = false
			continue
		}
		// The stream is full: catch this watcher up later, from this
		// revision on.
		h.synced.remove(w)
		w.state, w.next = stateUnsynced, rev
		h.unsynced[w] = struct{}{}
		w.st.unsynced++
		h.kickSync()
	}
	clear(touched)
	h.touched = touched[:0]
}

// Resync tells the hub that the key space was replaced (a snapshot from
// the leader was installed) and its revision is now rev: every watcher
// catches up from history from where it was, as far as the new history
// allows (those whose next revision was compacted away in it get a
// compaction response).
func (h *Hub) Resync(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.resyncLocked(rev)
}

func (h *Hub) resyncLocked(rev int64) {
	var all []*watcher
	h.synced.each(func(w *watcher) { all = append(all, w) })
	for _, w := range all {
		h.synced.remove(w)
		w.state, w.next = stateUnsynced, max(w.start, h.rev+1)
		h.unsynced[w] = struct{}{}
		w.st.unsynced++
	}
	h.recent.reset()
	if rev > h.rev {
		h.rev = rev
	}
	h.kickSync()
}

func (h *Hub) kickSync() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run is the catch-up goroutine: it serves unsynced watchers when kicked
// and sends periodic progress notifications.
func (h *Hub) run() {
	defer close(h.done)
	var tick, stale <-chan time.Time
	if h.opts.ProgressInterval > 0 {
		t := time.NewTicker(h.opts.ProgressInterval)
		defer t.Stop()
		tick = t.C
	}
	if h.opts.StaleCheck > 0 {
		t := time.NewTicker(h.opts.StaleCheck)
		defer t.Stop()
		stale = t.C
	}
	for {
		select {
		case <-h.stop:
			return
		case <-tick:
			h.progressTick()
		case <-stale:
			h.staleCheck()
		case <-h.kick:
			for h.syncRound() {
				select {
				case <-h.stop:
					return
				default:
				}
			}
		}
	}
}

// staleCheck resyncs the hub when the key space has been ahead of it,
// at the same revisions, for a whole check interval: the apply goroutine
// notifies within microseconds of a write, so only a change made without
// Notify (or Resync) stays unseen that long.
func (h *Hub) staleCheck() {
	cur := h.src.Rev()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if cur > h.rev && h.staleHub == h.rev && h.staleStore == cur {
		h.lg.Warn("watch: the key space moved ahead without notifying the watchers; catching them up from history", "hub", h.rev, "store", cur)
		h.resyncLocked(cur)
	}
	h.staleHub, h.staleStore = h.rev, cur
}

// syncEntry is one watcher of a catch-up round.
type syncEntry struct {
	w    *watcher
	from int64
	evs  []mvcc.Event
	slot slot[*syncEntry]
}

func (e *syncEntry) spanOf() *span             { return &e.w.span }
func (e *syncEntry) slotOf() *slot[*syncEntry] { return &e.slot }

// syncRound replays history for one batch of unsynced watchers whose
// streams have room. It reports whether it did anything (so that the
// caller runs another round at once).
func (h *Hub) syncRound() bool {
	h.mu.Lock()
	if h.closed || len(h.unsynced) == 0 {
		h.mu.Unlock()
		return false
	}
	target := h.rev
	var batch []*syncEntry
	progressed := false
	for w := range h.unsynced {
		if !w.st.roomFor() {
			continue
		}
		if w.next > target {
			h.markSynced(w) // nothing missed (a future start revision)
			progressed = true
			continue
		}
		if h.recent.covers(w.next) {
			h.finishFromRecent(w)
			progressed = true
			continue
		}
		batch = append(batch, &syncEntry{w: w, from: w.next})
		if len(batch) >= h.opts.SyncBatch {
			break
		}
	}
	h.mu.Unlock()
	if len(batch) == 0 {
		return progressed
	}

	// Read once for the whole batch: from the earliest position, over the
	// smallest key range covering every watcher.
	from := batch[0].from
	hull := batch[0].w.span
	prevKV := false
	for _, e := range batch {
		from = min(from, e.from)
		prevKV = prevKV || e.w.prevKV
		hull = hullOf(hull, e.w.span)
	}
	opts := mvcc.HistoryOptions{Key: []byte(hull.key), PrevKV: prevKV, Limit: h.opts.SyncLimit}
	switch {
	case hull.fromKey:
		opts.End = []byte{0}
	case !hull.single():
		opts.End = []byte(hull.end)
	}
	res, err := h.src.History(from, target, opts)
	if errors.Is(err, mvcc.ErrCompacted) {
		h.mu.Lock()
		for _, e := range batch {
			if w := e.w; w.state == stateUnsynced && w.next == e.from && e.from < res.Compacted {
				h.cancelCompacted(w, res.Compacted)
			}
		}
		h.mu.Unlock()
		return true
	}
	if err != nil {
		if errors.Is(err, mvcc.ErrClosed) {
			return false // the member is stopping
		}
		h.lg.Error("watch: cannot read the history to catch watchers up; canceling them", "from", from, "to", target, "err", err)
		h.mu.Lock()
		for _, e := range batch {
			if e.w.state == stateUnsynced {
				h.cancelWithReason(e.w, fmt.Sprintf("watch: cannot read history from revision %d: %v", e.from, err))
			}
		}
		h.mu.Unlock()
		return false
	}

	// Hand each event to the batch watchers it concerns.
	if len(batch) == 1 {
		e := batch[0]
		for i := range res.Events {
			ev := &res.Events[i]
			if ev.KV.ModRevision >= e.from && e.w.span.contains(keyString(ev.KV.Key)) && e.w.wants(ev) {
				e.evs = append(e.evs, *ev)
			}
		}
	} else {
		ix := newIndex[*syncEntry]()
		for _, e := range batch {
			ix.add(e)
		}
		for i := range res.Events {
			ev := &res.Events[i]
			ix.visit(keyString(ev.KV.Key), func(e *syncEntry) {
				if ev.KV.ModRevision >= e.from && e.w.wants(ev) {
					e.evs = append(e.evs, *ev)
				}
			})
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range batch {
		w := e.w
		if w.state != stateUnsynced || w.next != e.from || e.from >= res.Next {
			// Canceled meanwhile, or the store is behind the hub (never
			// with the server, which notifies after writing): retry
			// when kicked again rather than spin.
			continue
		}
		progressed = true
		h.queueEvents(w, e.evs, res.Next-1)
		w.next = res.Next
		if w.next > h.rev {
			h.markSynced(w)
		} else if h.recent.covers(w.next) && w.st.roomFor() {
			h.finishFromRecent(w)
		}
	}
	return progressed
}

// hullOf returns the smallest span covering a and b.
func hullOf(a, b span) span {
	lo := min(a.key, b.key)
	if a.fromKey || b.fromKey {
		return span{key: lo, fromKey: true}
	}
	endOf := func(s span) string {
		if s.single() {
			return s.key + "\x00" // the smallest key after s.key
		}
		return s.end
	}
	if a.single() && b.single() && a.key == b.key {
		return a
	}
	return span{key: lo, end: max(endOf(a), endOf(b))}
}

// finishFromRecent queues what w missed from the revisions kept in
// memory (which cover w.next up to the current revision) and makes it
// synced. Called with the hub's mutex held.
func (h *Hub) finishFromRecent(w *watcher) {
	var evs []mvcc.Event
	h.recent.since(w.next, func(_ int64, events []mvcc.Event) {
		for i := range events {
			if w.span.contains(keyString(events[i].KV.Key)) && w.wants(&events[i]) {
				evs = append(evs, events[i])
			}
		}
	})
	h.queueEvents(w, evs, h.rev)
	w.next = h.rev + 1
	h.markSynced(w)
}

// queueEvents queues a catch-up of w: evs are its events (in revision
// order) of the revisions up to upto. Responses hold whole revisions,
// up to about ResponseMaxBytes each. Called with the hub's mutex held.
func (h *Hub) queueEvents(w *watcher, evs []mvcc.Event, upto int64) {
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) {
			// Take the whole next revision.
			rev := evs[n].KV.ModRevision
			m, sz := n, 0
			for m < len(evs) && evs[m].KV.ModRevision == rev {
				sz += eventSize(&evs[m])
				m++
			}
			if n > 0 && size+sz > h.opts.ResponseMaxBytes {
				break
			}
			n, size = m, size+sz
		}
		r := Response{WatchID: w.id, Revision: evs[n-1].KV.ModRevision, Events: evs[:n:n], PrevKV: w.prevKV, Fragment: w.fragment, w: w, size: size}
		if n == len(evs) {
			r.Revision = upto
		}
		w.st.push(r)
		w.idle = false
		evs = evs[n:]
	}
}

// markSynced moves an unsynced watcher into the index. Called with the
// hub's mutex held.
func (h *Hub) markSynced(w *watcher) {
	delete(h.unsynced, w)
	w.state = stateSynced
	h.synced.add(w)
	w.st.unsynced--
	h.flushProgress(w.st)
}

// flushProgress sends the stream's deferred RequestProgress answer once
// none of its watchers is behind. Called with the hub's mutex held.
func (h *Hub) flushProgress(st *Stream) {
	if st.unsynced == 0 && st.progressPending {
		st.progressPending = false
		st.push(Response{WatchID: -1, Revision: h.rev, size: 64})
	}
}

// removeWatcher takes w out of the hub and its stream. Called with the
// hub's mutex held; the caller queues the watcher's last response, then
// calls flushProgress (a deferred progress notification must not come
// before it).
func (h *Hub) removeWatcher(w *watcher) {
	st := w.st
	switch w.state {
	case stateSynced:
		h.synced.remove(w)
	case stateUnsynced:
		delete(h.unsynced, w)
		st.unsynced--
	}
	w.state = stateDone
	w.own = nil
	delete(h.progress, w)
	delete(st.watchers, w.id)
}

// cancelCompacted ends w because the history it needs was compacted.
// CompactRevision is the compacted revision, the first one that can still
// be watched (compaction keeps its deletions), as in etcd.
func (h *Hub) cancelCompacted(w *watcher, compacted int64) {
	h.removeWatcher(w)
	w.st.push(Response{WatchID: w.id, Revision: h.rev, CompactRevision: compacted, Canceled: true, size: 64})
	h.flushProgress(w.st)
}

// cancelWithReason ends w with an error the client sees.
func (h *Hub) cancelWithReason(w *watcher, reason string) {
	h.removeWatcher(w)
	w.st.push(Response{WatchID: w.id, Revision: h.rev, Canceled: true, CancelReason: reason, size: 64 + len(reason)})
	h.flushProgress(w.st)
}

// progressTick sends a progress notification to every synced watcher
// that asked for them and got nothing since the last tick.
func (h *Hub) progressTick() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.progress {
		if w.state == stateSynced && w.idle && w.st.roomFor() {
			w.st.push(Response{WatchID: w.id, Revision: max(h.rev, w.start-1), size: 64})
		}
		w.idle = true
	}
}

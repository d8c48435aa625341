package watch

import (
	"fmt"
	"slices"
	"sync"

	"github.com/synod-db/synod/mvcc"
)

// Request creates a watcher (the hub's form of a WatchCreateRequest).
type Request struct {
	// ID is the watch ID the client chose; 0 lets the stream choose the
	// lowest free one, as etcd does.
	ID int64
	// Key and End select keys with etcd's range_end rules: End empty is
	// the single key, End "\x00" every key >= Key, else [Key, End).
	Key, End []byte
	// StartRev is the first revision to deliver; 0 means the next one.
	StartRev int64
	// PrevKV asks for the previous version of each changed key.
	PrevKV bool
	// NoPut and NoDelete drop put or delete events.
	NoPut, NoDelete bool
	// ProgressNotify asks for periodic empty responses while idle.
	ProgressNotify bool
	// Fragment lets the API split one large response into several.
	Fragment bool
}

// Response is one message for a stream's client (the hub's form of a
// WatchResponse). Revision is the header revision: for events the
// revision they bring the watcher to; for a progress notification a
// revision up to which every event has been queued before it.
type Response struct {
	// WatchID is the watcher's ID; -1 for a stream-wide progress
	// notification (RequestProgress) or a refused creation.
	WatchID int64
	// Revision is the header revision.
	Revision int64
	// Events are the watcher's events, whole revisions in order. They
	// are shared between watchers and must not be modified. PrevKV is
	// set on them whether or not the watcher asked for it: drop it when
	// the PrevKV field below is false.
	Events []mvcc.Event
	// PrevKV and Fragment repeat the watcher's options for the API.
	PrevKV, Fragment bool
	// Created answers a creation; Canceled ends the watcher.
	Created, Canceled bool
	// CompactRevision, when set, says the watcher needed compacted
	// history; it is the first revision that can still be watched.
	CompactRevision int64
	// CancelReason explains a cancellation that is an error.
	CancelReason string

	w    *watcher
	size int
}

// IsProgress reports whether r is a progress notification.
func (r *Response) IsProgress() bool {
	return len(r.Events) == 0 && !r.Created && !r.Canceled && r.CompactRevision == 0
}

// Stream is one client stream (a gRPC Watch call): its watchers and the
// queue of responses waiting to be sent, in the order the client must
// see them. One goroutine consumes it with Next; any goroutine may call
// Watch, Cancel and RequestProgress.
type Stream struct {
	h *Hub

	// Guarded by the hub's mutex.
	watchers        map[int64]*watcher
	nextID          int64
	unsynced        int  // watchers of this stream catching up
	progressPending bool // a RequestProgress waits for them

	mu       sync.Mutex
	queue    []Response
	head     int
	bytes    int
	closed   bool
	wantRoom bool // a watcher waits for the queue to drain
	wake     chan struct{}
	ctrlWait bool          // WaitRoom waits for the queue to drain
	room     chan struct{} // signaled for WaitRoom
}

// NewStream opens a stream. If the hub is closed the stream is born
// closed: Next returns ErrClosed.
func (h *Hub) NewStream() *Stream {
	st := &Stream{h: h, watchers: make(map[int64]*watcher), wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		st.closed = true
		return st
	}
	h.streams[st] = struct{}{}
	return st
}

// Watch creates a watcher. Its answers are queued in order: the created
// response (with the watch ID), then its events. A refused request is
// answered by a created-and-canceled response with WatchID -1 and the
// error as the cancel reason, and its error is returned too; a start
// revision already compacted is answered by the created response then a
// cancellation with CompactRevision (and mvcc.ErrCompacted is returned).
func (st *Stream) Watch(req Request) (int64, error) {
	h := st.h
	sp, err := spanOf(req.Key, req.End)
	switch {
	case err != nil:
	case req.StartRev < 0:
		err = fmt.Errorf("%w: %d", ErrNegativeRev, req.StartRev)
	case req.ID < 0:
		err = fmt.Errorf("%w: %d", ErrNegativeID, req.ID)
	}
	compacted := int64(0)
	if err == nil && req.StartRev > 0 {
		compacted = h.src.CompactedRev()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || st.isClosed() {
		return -1, ErrClosed
	}
	if err == nil && req.ID != 0 {
		if _, dup := st.watchers[req.ID]; dup {
			err = ErrDuplicateID
		}
	}
	if err != nil {
		st.push(Response{WatchID: -1, Revision: h.rev, Created: true, Canceled: true, CancelReason: err.Error(), size: 64})
		return -1, err
	}
	id := req.ID
	if id == 0 {
		for {
			id = st.nextID
			st.nextID++
			if _, used := st.watchers[id]; !used {
				break
			}
		}
	}
	w := &watcher{
		span: sp, id: id, st: st, start: req.StartRev,
		noPut: req.NoPut, noDelete: req.NoDelete, prevKV: req.PrevKV,
		fragment: req.Fragment, progress: req.ProgressNotify, idle: true,
	}
	if w.start == 0 {
		w.start = h.rev + 1
	}
	st.push(Response{WatchID: id, Revision: h.rev, Created: true, size: 64})
	if req.StartRev > 0 && req.StartRev < compacted {
		st.push(Response{WatchID: id, Revision: h.rev, CompactRevision: compacted, Canceled: true, size: 64})
		return id, mvcc.ErrCompacted
	}
	st.watchers[id] = w
	if w.progress {
		h.progress[w] = struct{}{}
	}
	// Register as behind, then let the common path decide: nothing to
	// catch up, the recent revisions in memory, or history later.
	w.state, w.next = stateUnsynced, w.start
	h.unsynced[w] = struct{}{}
	st.unsynced++
	switch {
	case w.next > h.rev:
		h.markSynced(w)
	case h.recent.covers(w.next) && st.roomFor():
		h.finishFromRecent(w)
	default:
		h.kickSync()
	}
	return id, nil
}

// Refuse answers a create request the caller found malformed (an
// unknown filter, say) in its place in the stream's order: a created and
// canceled response with WatchID -1 and err as the reason.
func (st *Stream) Refuse(err error) {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	st.push(Response{WatchID: -1, Revision: h.rev, Created: true, Canceled: true, CancelReason: err.Error(), size: 64})
}

// spanOf resolves etcd's range rules.
func spanOf(key, end []byte) (span, error) {
	switch {
	case len(end) == 0:
		return span{key: string(key)}, nil
	case len(end) == 1 && end[0] == 0:
		return span{key: string(key), fromKey: true}, nil
	case string(end) <= string(key):
		return span{}, fmt.Errorf("%w: range end %q is not after key %q", ErrEmptyRange, end, key)
	}
	return span{key: string(key), end: string(end)}, nil
}

// Cancel ends watcher id: responses still queued for it are dropped and
// a canceled response follows. It reports whether the watcher existed;
// canceling an unknown ID queues nothing, as etcd.
func (st *Stream) Cancel(id int64) bool {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := st.watchers[id]
	if !ok {
		return false
	}
	w.dropQueued.Store(true)
	h.removeWatcher(w)
	st.push(Response{WatchID: id, Revision: h.rev, Canceled: true, size: 64})
	h.flushProgress(st)
	return true
}

// RequestProgress queues a stream-wide progress notification (WatchID
// -1) at the current revision once every watcher of the stream is synced
// (at once if they are), so that its revision is a true bookmark for all
// of them.
func (st *Stream) RequestProgress() {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || st.isClosed() {
		return
	}
	if st.unsynced == 0 {
		st.push(Response{WatchID: -1, Revision: h.rev, size: 64})
		return
	}
	st.progressPending = true
}

// Close ends the stream: its watchers are removed, queued responses are
// dropped and Next returns ErrClosed.
func (st *Stream) Close() {
	h := st.h
	h.mu.Lock()
	for _, w := range st.watchers {
		h.removeWatcher(w)
	}
	delete(h.streams, st)
	h.mu.Unlock()
	st.mu.Lock()
	st.closed = true
	st.queue, st.head, st.bytes = nil, 0, 0
	st.mu.Unlock()
	st.signal()
	select {
	case st.room <- struct{}{}:
	default:
	}
}

func (st *Stream) isClosed() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.closed
}

func (st *Stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// queued returns the number of queued responses. Called with st.mu held.
func (st *Stream) queued() int { return len(st.queue) - st.head }

// offer queues a live response unless the queue is full. A closed
// stream swallows it (its watchers are being removed).
func (st *Stream) offer(r Response) bool {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return true
	}
	n := st.queued()
	if n > 0 && (n >= st.h.opts.StreamMaxResponses || st.bytes+r.size > st.h.opts.StreamMaxBytes) {
		st.wantRoom = true
		st.mu.Unlock()
		return false
	}
	st.queue = append(st.queue, r)
	st.bytes += r.size
	st.mu.Unlock()
	st.signal()
	return true
}

// push queues a response whatever the queue's size: control responses
// and catch-ups, whose volume the catch-up goroutine bounds itself.
func (st *Stream) push(r Response) {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.queue = append(st.queue, r)
	st.bytes += r.size
	st.mu.Unlock()
	st.signal()
}

// roomFor reports whether the queue is at most half full, the point
// below which a behind watcher may catch up; otherwise the stream asks
// to wake the hub when it gets there.
func (st *Stream) roomFor() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	if st.queued() <= st.h.opts.StreamMaxResponses/2 && st.bytes <= st.h.opts.StreamMaxBytes/2 {
		return true
	}
	st.wantRoom = true
	return false
}

// WaitRoom waits until the stream's queue is below its bound (or done
// closes, or the stream closes). The API calls it before each client
// request, so that a client that sends requests but never reads the
// answers is slowed down by its own stream instead of filling memory.
func (st *Stream) WaitRoom(done <-chan struct{}) {
	for {
		st.mu.Lock()
		if st.closed || st.queued() < st.h.opts.StreamMaxResponses {
			st.mu.Unlock()
			return
		}
		st.ctrlWait = true
		st.mu.Unlock()
		select {
		case <-st.room:
		case <-done:
			return
		}
	}
}

// Next returns the next response to send, waiting for one until done
// is closed (then it returns the zero Response and ok false with a nil
// error) or the stream or hub closes (ErrClosed).
func (st *Stream) Next(done <-chan struct{}) (Response, bool, error) {
	for {
		st.mu.Lock()
		for st.head < len(st.queue) {
			r := st.queue[st.head]
			st.queue[st.head] = Response{}
			st.head++
			st.bytes -= r.size
			if st.head == len(st.queue) {
				if cap(st.queue) > 64 {
					st.queue = nil // an idle stream keeps no large buffer
				} else {
					st.queue = st.queue[:0]
				}
				st.head = 0
			} else if st.head >= 1024 && st.head*2 >= len(st.queue) {
				n := copy(st.queue, st.queue[st.head:])
				clear(st.queue[n:])
				st.queue, st.head = st.queue[:n], 0
			}
			kick := st.wantRoom && st.queued() <= st.h.opts.StreamMaxResponses/2 && st.bytes <= st.h.opts.StreamMaxBytes/2
			if kick {
				st.wantRoom = false
			}
			if st.ctrlWait && st.queued() < st.h.opts.StreamMaxResponses {
				st.ctrlWait = false
				select {
				case st.room <- struct{}{}:
				default:
				}
			}
			if r.w != nil && r.w.dropQueued.Load() && !r.Canceled {
				if kick {
					st.h.kickSync()
				}
				continue
			}
			st.mu.Unlock()
			if kick {
				st.h.kickSync()
			}
			if r.PrevKV && len(r.Events) > 0 {
				r.Events = dropCompactedPrevKVs(r.Events, st.h.src.CompactedRev())
			}
			return r, true, nil
		}
		closed := st.closed
		st.mu.Unlock()
		if closed {
			return Response{}, false, ErrClosed
		}
		select {
		case <-st.wake:
		case <-done:
			return Response{}, false, nil
		}
	}
}

// dropCompactedPrevKVs removes the previous versions of the events at or
// below the compacted revision. etcd reads an event's previous version at
// the revision before the event when it sends it, and sends none when
// that revision is compacted; clients rely on it (Kubernetes' watch
// cache treats a prev_kv as what the key held just before). The events
// are shared, so the ones changed are copies.
func dropCompactedPrevKVs(evs []mvcc.Event, compacted int64) []mvcc.Event {
	n := 0
	for n < len(evs) && evs[n].KV.ModRevision <= compacted {
		n++
	}
	if n == 0 {
		return evs
	}
	out := slices.Clone(evs)
	for i := range out[:n] {
		out[i].PrevKV = nil
	}
	return out
}

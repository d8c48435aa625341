package watch

import "github.com/synod-db/synod/mvcc"

// recentRev is one revision kept in memory.
type recentRev struct {
	rev    int64
	events []mvcc.Event
	size   int
}

// recent keeps the events of the last revisions in memory, bounded in
// count and bytes. A watcher that catches up from history reaches a
// revision that was current when its read began; by then a few more
// revisions may have been applied. recent closes that last gap without
// reading the store while holding the hub's lock, so catching up
// finishes even under a constant stream of writes, and a watcher that
// resumes from a recent revision is served without any read at all.
type recent struct {
	revs     []recentRev
	head     int
	bytes    int
	maxRevs  int
	maxBytes int
}

// push appends revision rev, which must follow the last one kept
// (otherwise everything kept so far is dropped), and evicts the oldest
// revisions beyond the bounds. The newest revision is always kept.
func (r *recent) push(rev int64, events []mvcc.Event) {
	if r.maxRevs <= 0 {
		return
	}
	if n := len(r.revs); n > r.head && r.revs[n-1].rev+1 != rev {
		r.reset()
	}
	size := eventsSize(events)
	r.revs = append(r.revs, recentRev{rev: rev, events: events, size: size})
	r.bytes += size
	for len(r.revs)-r.head > 1 && (len(r.revs)-r.head > r.maxRevs || r.bytes > r.maxBytes) {
		r.bytes -= r.revs[r.head].size
		r.revs[r.head] = recentRev{}
		r.head++
	}
	if r.head > 64 && r.head*2 > len(r.revs) {
		n := copy(r.revs, r.revs[r.head:])
		clear(r.revs[n:])
		r.revs = r.revs[:n]
		r.head = 0
	}
}

// reset forgets every revision.
func (r *recent) reset() {
	r.revs, r.head, r.bytes = nil, 0, 0
}

// covers reports whether every revision from from up to the newest kept
// one is in memory.
func (r *recent) covers(from int64) bool {
	return len(r.revs) > r.head && r.revs[r.head].rev <= from
}

// since calls fn for each kept revision >= from, in order.
func (r *recent) since(from int64, fn func(rev int64, events []mvcc.Event)) {
	for i := r.head; i < len(r.revs); i++ {
		if r.revs[i].rev >= from {
			fn(r.revs[i].rev, r.revs[i].events)
		}
	}
}

// eventSize estimates the memory an event holds (its bytes plus the
// structures around them), for the bounds on queued and kept events.
func eventSize(ev *mvcc.Event) int {
	n := 96 + len(ev.KV.Key) + len(ev.KV.Value)
	if ev.PrevKV != nil {
		n += 64 + len(ev.PrevKV.Key) + len(ev.PrevKV.Value)
	}
	return n
}

func eventsSize(evs []mvcc.Event) int {
	n := 0
	for i := range evs {
		n += eventSize(&evs[i])
	}
	return n
}

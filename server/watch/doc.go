// Package watch is synod's watch hub: it turns the key space's applied
// revisions into the responses of etcd's Watch streams, with etcd's
// guarantees: per watcher, events are ordered by revision, unique, with
// no gaps in the uncompacted history, all events of one revision in one
// response, resumable from any uncompacted revision, and a progress
// notification at revision R means every event up to R was sent first.
//
// # Shape
//
// A Hub belongs to one member. The apply goroutine calls Notify with
// each new revision and its events. A Stream is one client stream: the
// API layer creates watchers on it (Watch, Cancel, RequestProgress) and
// one goroutine sends what Next returns.
//
// Watchers are either synced (in an interval index: single keys in a
// map, ranges in a treap augmented with the greatest end, identical
// ranges sharing one node) or unsynced (behind the current revision).
// Notify looks every event's key up in the index and queues one response
// per concerned watcher, sharing the revision's event slice whenever the
// watcher wants a prefix of it, so its cost is one lookup per event plus
// O(1) per matching watcher, whatever the number of watchers.
//
// # Bounded memory, slow clients
//
// Each stream's queue is bounded (responses and bytes). When a live
// revision does not fit, the watcher becomes unsynced at that revision:
// nothing is lost, and the apply goroutine never waits. One catch-up
// goroutine serves unsynced watchers whose streams have room, in batches
// sharing one history read (mvcc.Store.History, bounded per round), and
// finishes each with the last revisions kept in memory, under the hub's
// mutex, so the switch back to live events has no gap and no duplicate
// even while writes continue. A watcher whose next revision has been
// compacted is canceled with CompactRevision set to the first revision
// still available.
//
// An idle watcher costs its struct (144 bytes), its key, a slot in
// its index group and its stream's map entry: about 320 bytes of heap in
// TestIdleWatcherMemory (100,000 watchers on 100 streams), under 400
// bytes with the gRPC streams around them (embed's TestWatchIdleMemory).
package watch

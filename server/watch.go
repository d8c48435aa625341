package server

import (
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server/watch"
)

// openWatchHub creates the member's watch hub at the key space's current
// revision: whatever is applied later reaches it through watchNotify,
// whatever was applied before is history that watchers read from the
// store.
func (s *Server) openWatchHub() {
	o := s.cfg.Watch
	o.Logger = s.lg
	s.watchHub = watch.New(s.kv, s.kv.Rev(), o)
}

// WatchHub returns the member's watch hub, which the Watch service opens
// its streams on.
func (s *Server) WatchHub() *watch.Hub { return s.watchHub }

// watchNotify delivers the events of revision rev to the watchers. The
// apply goroutine calls it (through afterWrite) after every applied
// write; it never blocks on a client.
func (s *Server) watchNotify(rev int64, events []mvcc.Event) {
	s.watchHub.Notify(rev, events)
}

// watchRestored tells the watchers that the key space was replaced by a
// snapshot from the leader: they catch up from its history. The apply
// goroutine calls it in applySnapshot right after the key space is
// restored. (Without it they would catch up at the next applied write,
// which sees the jump in revisions.)
func (s *Server) watchRestored() {
	s.watchHub.Resync(s.kv.Rev())
}

// LeaderChanged returns a channel closed at the next leader change, so
// that streams that require a leader (clientv3.WithRequireLeader) can
// watch for its loss without polling.
func (s *Server) LeaderChanged() <-chan struct{} {
	return s.leaderChanged()
}

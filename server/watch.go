package server

import (
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

// LeaderChanged returns a channel closed at the next leader change, so
// that streams that require a leader (clientv3.WithRequireLeader) can
// watch for its loss without polling.
func (s *Server) LeaderChanged() <-chan struct{} {
	return s.leaderChanged()
}

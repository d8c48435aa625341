package server

import "github.com/synod-db/synod/mvcc"

// watchNotify delivers the events of revision rev to the watchers.
// (Watch is being built: issue 5.)
func (s *Server) watchNotify(rev int64, events []mvcc.Event) {}

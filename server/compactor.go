package server

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// AutoCompaction configures automatic compaction of the key space's
// history (etcd's --auto-compaction-mode and -retention). At most one of
// the fields is set; both zero disables it.
type AutoCompaction struct {
	// Period keeps the history of the last Period: every Period/10 the
	// leader compacts to the revision it saw Period ago.
	Period time.Duration
	// Revisions keeps the last Revisions revisions, checked every
	// RevisionCheck.
	Revisions int64
}

// RevisionCheck is how often revision-mode auto compaction runs.
var RevisionCheck = 5 * time.Minute

// compactLoop runs auto compaction on the leader.
func (s *Server) compactLoop() {
	ac := s.cfg.AutoCompaction
	interval := RevisionCheck
	if ac.Period > 0 {
		interval = max(ac.Period/10, time.Second)
	}
	type sample struct {
		at  time.Time
		rev int64
	}
	var samples []sample
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopping:
			return
		}
		now, rev := time.Now(), s.kv.Rev()
		var target int64
		if ac.Period > 0 {
			samples = append(samples, sample{now, rev})
			for len(samples) > 1 && now.Sub(samples[1].at) >= ac.Period {
				samples = samples[1:]
			}
			if now.Sub(samples[0].at) >= ac.Period {
				target = samples[0].rev
			}
		} else {
			target = rev - ac.Revisions
		}
		if s.lead.Load() != s.id || target <= s.kv.CompactedRev() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		_, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: target}})
		cancel()
		if err != nil {
			s.lg.Warn("auto compaction failed", "revision", target, "err", err)
		} else {
			s.lg.Info("auto compaction done", "revision", target)
		}
	}
}

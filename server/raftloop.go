package server

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
)

// applyJob is one Ready's worth of work for the apply goroutine.
type applyJob struct {
	snapshot *raftpb.SnapshotMetadata
	entries  []raftpb.Entry
	// applied, when not nil, is closed once the job is applied: the raft
	// loop waits on it before advancing past a Ready that commits a
	// configuration change (see handleReady).
	applied chan struct{}
}

// raftLoop ticks the node and handles each Ready in the order the Ready
// contract gives: messages that may precede the write go out first (the
// leader's appends travel while its own fsync runs), the write is one WAL
// group commit, acknowledgements follow it, and committed entries are
// handed to the apply goroutine without waiting for them to be applied,
// unless they change the configuration.
func (s *Server) raftLoop() {
	ticker := time.NewTicker(s.cfg.HeartbeatInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			s.node.Tick()
		case rd := <-s.node.Ready():
			if err := s.handleReady(rd); err != nil {
				s.fatal("handle raft ready", err)
				return
			}
			s.node.Advance()
		case <-s.stopping:
			return
		}
	}
}

// hastenFirstElection lets a starting member call its first election
// after a tick or two instead of a whole election timeout, as etcd does:
// a lone voter has nobody to wait for and campaigns at once, and with
// pre-vote a member that campaigns while the others follow a leader is
// turned down without disturbing them, so the fixed part of its election
// timeout can be skipped. A member of a running cluster usually hears
// from the leader first anyway; this shortens a whole cluster's restart.
// Raft learns the configuration as the apply step replays the log's conf
// changes, and refuses to campaign over committed ones not yet applied,
// so this looks again every heartbeat, for at most an election timeout
// (the member's own timer has taken over by then).
func (s *Server) hastenFirstElection() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ElectionTimeout)
	defer cancel()
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	advanced := false
	for s.Leader() == 0 {
		voters := s.node.Status().Config.Voters.IDs()
		_, isVoter := voters[s.id]
		switch {
		case !isVoter:
			// Not a voter (yet): the configuration is still being replayed.
		case len(voters) == 1:
			if err := s.node.Campaign(ctx); err != nil {
				return
			}
		case !advanced && s.cfg.PreVote:
			for range s.cfg.electionTicks() - 1 {
				s.node.Tick()
			}
			advanced = true
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-s.stopping:
			return
		}
	}
}

// handleReady does everything a Ready asks but the Advance.
func (s *Server) handleReady(rd raft.Ready) error {
	// The term first: whoever sees the new leader then sees its term (a
	// proposal records the term it was made under, see waiter).
	if !raft.IsEmptyHardState(rd.HardState) {
		s.term.Store(rd.HardState.Term)
		s.committed.Store(rd.HardState.Commit)
	}
	if rd.SoftState != nil {
		s.setLeader(rd.SoftState.Lead)
	}
	for _, rs := range rd.ReadStates {
		select {
		case s.readStatec <- rs:
		case <-s.stopping:
			return nil
		}
	}
	s.tr.Send(rd.Messages)
	hasSnap := !raft.IsEmptySnap(rd.Snapshot)
	// Raft counts a Ready's committed entries as applied once it is
	// advanced, and decides whether it may campaign, and whose votes count,
	// by the configuration the application has applied. Advancing past a
	// configuration change before the apply goroutine reaches it would let
	// raft act on a configuration that is behind its applied index: a
	// restarted member replaying its log, holding only the first of the
	// cluster's "add member" changes, would elect itself a lone leader.
	// So a Ready that commits one is advanced only once it is applied.
	var applied chan struct{}
	if hasConfChange(rd.CommittedEntries) {
		applied = make(chan struct{})
	}
	if !hasSnap && len(rd.CommittedEntries) > 0 {
		// Committed entries are durable already: apply them while this
		// Ready's write runs.
		if !s.toApply(applyJob{entries: rd.CommittedEntries, applied: applied}) {
			return nil
		}
	}
	if hasSnap {
		if err := s.persistReceivedSnapshot(rd.Snapshot.Metadata); err != nil {
			return err
		}
	}
	if err := s.logs.Save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
		return fmt.Errorf("persist entries: %w", err)
	}
	s.tr.Send(rd.MessagesAfterPersist)
	if hasSnap {
		meta := rd.Snapshot.Metadata
		if !s.toApply(applyJob{snapshot: &meta, entries: rd.CommittedEntries, applied: applied}) {
			return nil
		}
	}
	if applied != nil {
		select {
		case <-applied:
		case <-s.stopping:
		}
	}
	return nil
}

// hasConfChange reports whether ents hold a configuration change.
func hasConfChange(ents []raftpb.Entry) bool {
	for i := range ents {
		if ents[i].Type == raftpb.EntryConfChange || ents[i].Type == raftpb.EntryConfChangeV2 {
			return true
		}
	}
	return false
}

// toApply queues work for the apply goroutine; false if stopping.
func (s *Server) toApply(j applyJob) bool {
	select {
	case s.applyc <- j:
		return true
	case <-s.stopping:
		return false
	}
}

// persistReceivedSnapshot installs a snapshot received from the leader in
// the raft log (WAL marker and snapshot file) before anything that
// follows it is persisted.
func (s *Server) persistReceivedSnapshot(meta raftpb.SnapshotMetadata) error {
	path := s.incomingPath(meta)
	f, err := s.fs.Open(path)
	if err != nil {
		return fmt.Errorf("open received snapshot: %w", err)
	}
	defer f.Close()
	if err := s.logs.ApplySnapshot(meta, f); err != nil {
		return fmt.Errorf("persist received snapshot %d: %w", meta.Index, err)
	}
	return s.fs.Remove(path)
}

// setLeader publishes a leader change.
func (s *Server) setLeader(lead uint64) {
	old := s.lead.Swap(lead)
	if old == lead {
		return
	}
	s.lg.Info("leader changed", "from", fmt.Sprintf("%x", old), "to", fmt.Sprintf("%x", lead), "term", s.term.Load())
	s.leadMu.Lock()
	close(s.leadChg)
	s.leadChg = make(chan struct{})
	s.leadMu.Unlock()
}

// fatal logs an error the member cannot continue after (its disk failed
// under it) and stops it: continuing could acknowledge writes it has not
// persisted.
func (s *Server) fatal(what string, err error) {
	if errors.Is(err, syscall.ENOSPC) {
		s.lg.Error("no space left on device: stopping the member; "+freeSpaceHint, "during", what, "err", err)
	} else {
		s.lg.Error("stopping the member after a fatal error", "during", what, "err", err)
	}
	go s.Stop()
}

// freeSpaceHint tells an operator what to do about a full disk.
const freeSpaceHint = "free space on the file system of the data directory (or move it to a larger one), then restart the member"

// noSpace ends the process when a write of the key space's files fails
// for lack of space (see mvcc.Options.OnNoSpace): the storage engine
// cannot go on after it, and a stop would need it to. Nothing
// acknowledged is lost: the raft log has it, and restarting replays it.
func (s *Server) noSpace(path string, err error) {
	s.lg.Error("no space left on device: stopping the member at once; "+freeSpaceHint, "file", path, "err", err)
	s.cfg.Exit(1)
}

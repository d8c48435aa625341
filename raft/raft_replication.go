package raft

// Replication: proposals on the leader, appends and snapshots to
// followers with flow control, their answers, and commitment.

import (
	"errors"
	"fmt"

	"github.com/synod-db/synod/raft/confchange"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// maybeSendAppend sends one append to member to. With sendIfEmpty false it
// sends only if there are entries to send. It reports whether it sent.
func (r *raft) maybeSendAppend(to uint64, sendIfEmpty bool) bool {
	pr := r.trk.Progress[to]
	if pr == nil || pr.IsPaused() {
		return false
	}
	prevIndex := pr.Next - 1
	prevTerm, errt := r.raftLog.term(prevIndex)
	var ents []pb.Entry
	var erre error
	if errt == nil && (pr.State != tracker.StateReplicate || !pr.Inflights.Full()) {
		ents, erre = r.raftLog.entries(pr.Next, r.maxMsgSize)
	}
	if errt != nil || erre != nil {
		return r.maybeSendSnapshot(to, pr)
	}
	if len(ents) == 0 && !sendIfEmpty {
		return false
	}
	r.send(pb.Message{
		To:      to,
		Type:    pb.MsgApp,
		Index:   prevIndex,
		LogTerm: prevTerm,
		Entries: ents,
		Commit:  r.raftLog.committed,
	})
	r.sentCommit[to] = r.raftLog.committed
	var last uint64
	if n := len(ents); n > 0 {
		last = ents[n-1].Index
	}
	pr.SentEntries(len(ents), payloadsSize(ents), last)
	return true
}

// sendAppend sends an append (or a snapshot) to member to, if its flow
// control allows, even with no new entries (a probe).
func (r *raft) sendAppend(to uint64) { r.maybeSendAppend(to, true) }

// maybeSendSnapshot sends the current snapshot to a member that needs
// entries the log no longer has.
func (r *raft) maybeSendSnapshot(to uint64, pr *tracker.Progress) bool {
	if !pr.RecentActive {
		r.logger.Debug("raft: not sending snapshot to inactive member", "to", to)
		return false
	}
	snap, err := r.raftLog.snapshot()
	if err != nil {
		if errors.Is(err, ErrSnapshotTemporarilyUnavailable) {
			r.logger.Debug("raft: snapshot temporarily unavailable", "to", to)
			return false
		}
		panic(fmt.Sprintf("raft: reading snapshot for member %d: %v", to, err))
	}
	if snap.IsEmpty() {
		panic(fmt.Sprintf("raft: member %d needs a snapshot but storage has none", to))
	}
	r.logger.Debug("raft: sending snapshot", "to", to, "index", snap.Metadata.Index, "progress", pr.String())
	pr.BecomeSnapshot(snap.Metadata.Index)
	r.send(pb.Message{To: to, Type: pb.MsgSnap, Snapshot: &snap})
	return true
}

// sendHeartbeat sends a heartbeat. The commit index is capped at what the
// member is known to have, so that it never commits entries it lacks.
func (r *raft) sendHeartbeat(to uint64, ctx []byte) {
	commit := min(r.trk.Progress[to].Match, r.raftLog.committed)
	r.send(pb.Message{To: to, Type: pb.MsgHeartbeat, Commit: commit, Context: ctx, Index: r.leaseClock})
}

// bcastAppend asks for appends to every member. They are sent when the
// next Ready is built (flushAppends), so that many proposals, or a proposal
// and the commit it leads to, share one message per member: the messages
// would only leave with that Ready anyway.
func (r *raft) bcastAppend() { r.bcastPending = true }

// flushAppends sends the appends bcastAppend asked for: new entries to
// every member that can take them, and an empty append to members that
// have not been sent the current commit index.
func (r *raft) flushAppends() {
	if !r.bcastPending {
		return
	}
	r.bcastPending = false
	if r.state != StateLeader {
		return
	}
	for _, id := range r.trk.IDs() {
		if id != r.id {
			r.maybeSendAppend(id, r.sentCommit[id] < r.raftLog.committed)
		}
	}
}

// bcastHeartbeat sends heartbeats carrying the newest pending read context.
func (r *raft) bcastHeartbeat() {
	ctx := r.readOnly.lastPendingRequestCtx()
	for _, id := range r.trk.IDs() {
		if id != r.id {
			r.sendHeartbeat(id, ctx)
		}
	}
}

// selfPersisted is the leader's own acknowledgement: it counts for commitment
// only once its entries are durable (Raft thesis §10.2.1), which lets the
// leader send appends before or while it writes its own log.
func (r *raft) selfPersisted() {
	if r.state != StateLeader {
		return
	}
	pr := r.trk.Progress[r.id]
	if pr == nil {
		return
	}
	if pr.MaybeUpdate(r.raftLog.stableIndex()) && r.maybeCommit() {
		r.bcastAppend()
	}
}

// maybeCommit advances the commit index to what a quorum has acknowledged.
func (r *raft) maybeCommit() bool {
	if !r.raftLog.maybeCommit(r.trk.Committed(), r.Term) {
		return false
	}
	r.releasePendingReadIndexMessages()
	return true
}

// appendEntry appends proposals to the leader's log. It refuses them all if
// they would overflow the uncommitted-size limit.
func (r *raft) appendEntry(es ...pb.Entry) bool {
	li := r.raftLog.lastIndex()
	for i := range es {
		es[i].Term = r.Term
		es[i].Index = li + 1 + uint64(i)
	}
	if !r.increaseUncommittedSize(es) {
		r.logger.Warn("raft: dropping proposal: uncommitted log is full", "uncommitted", r.uncommittedSize, "max", r.maxUncommittedSize)
		return false
	}
	r.raftLog.append(es...)
	return true
}

// increaseUncommittedSize accounts for new proposals, refusing them if
// they would overflow MaxUncommittedEntriesSize.
func (r *raft) increaseUncommittedSize(ents []pb.Entry) bool {
	s := payloadsSize(ents)
	// A single proposal is always accepted on an empty log, whatever its
	// size, or a large entry could never be proposed.
	if r.uncommittedSize > 0 && s > 0 && r.uncommittedSize+s > r.maxUncommittedSize {
		return false
	}
	r.uncommittedSize += s
	return true
}

// reduceUncommittedSize accounts for entries that were committed.
func (r *raft) reduceUncommittedSize(s uint64) {
	if s > r.uncommittedSize {
		// Entries committed from an earlier term were never counted here.
		r.uncommittedSize = 0
	} else {
		r.uncommittedSize -= s
	}
}

// handlePropose appends proposals on the leader, turning conf changes
// that cannot be accepted now into no-ops, and asks for appends.
func (r *raft) handlePropose(m pb.Message) error {
	if len(m.Entries) == 0 {
		return errors.New("raft: proposal has no entries; propose at least one")
	}
	if r.trk.Progress[r.id] == nil {
		// Removed from the configuration while still leader.
		return ErrProposalDropped
	}
	if r.leadTransferee != None {
		r.logger.Debug("raft: dropping proposal during leadership transfer", "transferee", r.leadTransferee)
		return ErrProposalDropped
	}
	ents := m.Entries
	copied := false
	for i := range ents {
		if ents[i].Type == pb.EntryNormal {
			continue
		}
		if reason := r.confChangeRefusal(ents[i]); reason != "" {
			r.logger.Warn("raft: ignoring conf change proposal", "reason", reason, "config", r.trk.Config.String())
			if !copied {
				ents = append([]pb.Entry(nil), ents...)
				copied = true
			}
			// Keep the slot so the proposal's position is unchanged, but make
			// it a no-op.
			ents[i] = pb.Entry{Type: pb.EntryNormal}
			continue
		}
		r.pendingConfIndex = r.raftLog.lastIndex() + uint64(i) + 1
	}
	if !r.appendEntry(ents...) {
		return ErrProposalDropped
	}
	r.bcastAppend()
	return nil
}

// confChangeRefusal returns why a proposed conf change cannot be accepted,
// or "" if it can.
func (r *raft) confChangeRefusal(e pb.Entry) string {
	cc, err := pb.ConfChangeFromEntry(e)
	if err != nil {
		return fmt.Sprintf("undecodable conf change: %v", err)
	}
	leave := cc.AsV2().LeaveJoint()
	switch joint := r.trk.Config.Joint(); {
	case r.pendingConfIndex > r.raftLog.applied:
		return fmt.Sprintf("conf change at index %d is not applied yet (applied %d)", r.pendingConfIndex, r.raftLog.applied)
	case joint && !leave:
		return "configuration is joint: leave it before another change"
	case !joint && leave:
		return "configuration is not joint: nothing to leave"
	}
	return ""
}

// handleAppendResponse updates a member's progress from its answer to an
// append: backtrack on rejection, otherwise advance, commit and stream on.
func (r *raft) handleAppendResponse(m pb.Message, pr *tracker.Progress) {
	pr.RecentActive = true
	if m.Reject {
		r.logger.Debug("raft: append rejected", "from", m.From, "index", m.Index, "hint", m.RejectHint, "hintTerm", m.LogTerm)
		next := m.RejectHint
		if m.LogTerm > 0 {
			// The follower's entry at RejectHint has term LogTerm: skip every
			// entry of ours with a larger term at once.
			next, _ = r.raftLog.findConflictByTerm(m.RejectHint, m.LogTerm)
		}
		if pr.MaybeDecrTo(m.Index, next) {
			if pr.State == tracker.StateReplicate {
				pr.BecomeProbe()
			}
			r.sendAppend(m.From)
		}
		return
	}
	// An acknowledgement of exactly Match still ends a probe: the member's
	// log is known to match there, so streaming can start.
	probeMatched := pr.State == tracker.StateProbe && m.Index == pr.Match
	if !pr.MaybeUpdate(m.Index) && !probeMatched {
		return
	}
	switch pr.State {
	case tracker.StateProbe:
		pr.BecomeReplicate()
	case tracker.StateSnapshot:
		if pr.Match+1 >= r.raftLog.firstIndex() {
			// The member caught up through the snapshot (or without it).
			pr.BecomeProbe()
			pr.BecomeReplicate()
		}
	case tracker.StateReplicate:
		pr.Inflights.FreeLE(m.Index)
	}
	if r.maybeCommit() {
		r.bcastAppend()
	} else if r.id != m.From {
		for r.maybeSendAppend(m.From, false) {
		}
	}
	if m.From == r.leadTransferee && pr.Match == r.raftLog.lastIndex() {
		r.logger.Info("raft: transferee caught up; sending TimeoutNow", "to", m.From)
		r.sendTimeoutNow(m.From)
	}
}

// handleAppendEntries appends the leader's entries if the log matches at
// their predecessor, or rejects with a hint for fast backtracking.
func (r *raft) handleAppendEntries(m pb.Message) {
	if m.Index < r.raftLog.committed {
		// Everything up to our commit index matches the leader's log.
		r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: r.raftLog.committed})
		return
	}
	if last, ok := r.raftLog.maybeAppend(m.Index, m.LogTerm, m.Commit, m.Entries); ok {
		r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: last})
		return
	}
	// Mismatch: tell the leader the last index at or before m.Index whose
	// term is at most m.LogTerm, so it can skip whole terms.
	hintIndex := min(m.Index, r.raftLog.lastIndex())
	hintIndex, hintTerm := r.raftLog.findConflictByTerm(hintIndex, m.LogTerm)
	r.send(pb.Message{
		To:         m.From,
		Type:       pb.MsgAppResp,
		Index:      m.Index,
		Reject:     true,
		RejectHint: hintIndex,
		LogTerm:    hintTerm,
	})
}

// handleHeartbeat advances the commit index as the leader allows and
// answers, echoing the read context and the lease clock.
func (r *raft) handleHeartbeat(m pb.Message) {
	r.raftLog.commitTo(m.Commit)
	// Echo the leader's lease clock so it knows when our promise began.
	r.send(pb.Message{To: m.From, Type: pb.MsgHeartbeatResp, Context: m.Context, Index: m.Index})
}

// handleSnapshot installs the leader's snapshot if it is news and answers
// with the resulting last index.
func (r *raft) handleSnapshot(m pb.Message) {
	if m.Snapshot == nil {
		r.logger.Error("raft: MsgSnap without a snapshot; ignoring", "from", m.From)
		return
	}
	s := *m.Snapshot
	if r.restore(s) {
		r.logger.Info("raft: restored snapshot", "index", s.Metadata.Index, "term", s.Metadata.Term)
		r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: r.raftLog.lastIndex()})
	} else {
		r.send(pb.Message{To: m.From, Type: pb.MsgAppResp, Index: r.raftLog.committed})
	}
}

// restore installs snapshot s if it is newer than what we have committed.
// It reports whether the log was replaced.
func (r *raft) restore(s pb.Snapshot) bool {
	if s.Metadata.Index <= r.raftLog.committed {
		return false
	}
	if r.state != StateFollower {
		// Leaders and candidates hand MsgSnap over only after becoming
		// followers; anything else is a misrouted message.
		r.logger.Error("raft: ignoring snapshot received while not follower", "state", r.state)
		return false
	}
	// The snapshot's configuration need not include this member: a member
	// added after the snapshot was taken learns of its own addition from
	// the log that follows it.
	cs := s.Metadata.ConfState
	if r.raftLog.matchTerm(s.Metadata.Index, s.Metadata.Term) {
		// We have the entry: just fast-forward the commit index.
		r.raftLog.commitTo(s.Metadata.Index)
		return false
	}
	// Build the configuration before touching the log, so that a snapshot
	// with a broken one is refused whole.
	trk := tracker.MakeProgressTracker(r.trk.MaxInflight, r.trk.MaxInflightBytes)
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: trk, LastIndex: s.Metadata.Index}, cs)
	if err != nil {
		r.logger.Error("raft: refusing snapshot with an invalid configuration", "index", s.Metadata.Index, "err", err)
		return false
	}
	r.raftLog.restore(s)
	r.trk = trk
	r.switchToConfig(cfg, prs)
	return true
}

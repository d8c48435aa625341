// Package raft is synod's implementation of the Raft consensus algorithm as
// a pure state machine: it performs no I/O, starts no goroutines, reads no
// clock and draws randomness only from a seeded source. It is driven by
// Step (messages) and Tick (logical time) and reports everything the
// application must do (persist, send, apply, answer reads) in a Ready.
//
// RawNode is the synchronous interface; Node runs a RawNode on its own
// goroutine behind channels, which is what a server usually wants.
package raft

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"

	"github.com/synod-db/synod/raft/confchange"
	"github.com/synod-db/synod/raft/quorum"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// StateType is a member's role.
type StateType uint8

// The roles.
const (
	StateFollower StateType = iota
	StateCandidate
	StateLeader
	StatePreCandidate
)

var stateNames = [...]string{"StateFollower", "StateCandidate", "StateLeader", "StatePreCandidate"}

func (s StateType) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("StateType(%d)", uint8(s))
}

// ErrProposalDropped is returned when a proposal is not appended: no leader
// is known, forwarding is disabled, a leadership transfer is under way, the
// uncommitted log is full, or this member was removed. The client may retry,
// possibly on another member.
var ErrProposalDropped = errors.New("raft: proposal dropped (no leader, leadership transfer in progress, uncommitted log full, or member removed); retry later")

// ErrStepLocalMsg is returned when a message that only the member itself may
// generate arrives from outside.
var ErrStepLocalMsg = errors.New("raft: cannot step a local message type received from the network")

// ErrStepPeerNotFound is returned when a response arrives from a member that
// is not in the configuration.
var ErrStepPeerNotFound = errors.New("raft: cannot step a response from a member that is not in the configuration")

// Campaign contexts carried in vote requests.
var (
	campaignPreElection = []byte("CampaignPreElection")
	campaignElection    = []byte("CampaignElection")
	campaignTransfer    = []byte("CampaignTransfer")
)

// stepFunc is the role-specific part of Step.
type stepFunc func(r *raft, m pb.Message) error

// raft is the state machine. Everything here is owned by whoever drives it
// (RawNode or Node's goroutine); nothing is safe for concurrent use.
type raft struct {
	id   uint64
	Term uint64
	Vote uint64

	raftLog *raftLog
	trk     tracker.ProgressTracker

	state StateType
	// isLearner is true when this member is a learner in the configuration.
	isLearner bool
	lead      uint64
	// leadTransferee is the target of a leadership transfer in progress.
	leadTransferee uint64
	// pendingConfIndex is the index of the last conf change proposed; a new
	// one is refused until it is applied, so that at most one is in flight.
	pendingConfIndex uint64
	// uncommittedSize is the payload of the leader's uncommitted entries.
	uncommittedSize uint64

	readOnly   *readOnly
	readStates []ReadState
	// leaseClock counts the leader's ticks in its term, starting at 1. Each
	// heartbeat carries the clock in Index and followers echo it back, so
	// that leaseAcks[id] is the send time of the newest heartbeat id
	// answered. A follower refuses votes for an election timeout after
	// hearing from the leader; hence no other leader can exist before the
	// quorum's oldest acknowledged send time plus that timeout.
	leaseClock uint64
	leaseAcks  map[uint64]uint64
	// leaseRevoked is set once this leader sent TimeoutNow: the transferee
	// campaigns with a forced vote that ignores follower leases.
	leaseRevoked bool
	// startupQuiet makes a member that just started refuse votes for an
	// election timeout, as if it had heard from a leader: it may have
	// promised a lease before a crash and must keep that promise.
	startupQuiet bool
	// pendingReadIndexMessages holds reads received by a new leader before
	// it committed an entry of its term; its commit index is not yet
	// trustworthy, so they wait.
	pendingReadIndexMessages []pb.Message

	msgs []pb.Message
	// bcastPending is set when appends to every member are due; they go out
	// when the next Ready is built.
	bcastPending bool
	// sentCommit is, per member, the commit index carried by the last
	// append sent to it in this term.
	sentCommit map[uint64]uint64

	maxMsgSize         uint64
	maxUncommittedSize uint64

	// electionElapsed counts ticks since the last election timeout (leader
	// and candidates) or since the leader was last heard (followers).
	electionElapsed  int
	heartbeatElapsed int

	checkQuorum               bool
	preVote                   bool
	disableProposalForwarding bool

	heartbeatTimeout          int
	electionTimeout           int
	randomizedElectionTimeout int

	rng    *rand.Rand
	tick   func()
	step   stepFunc
	logger *slog.Logger
}

func newRaft(c *Config) (*raft, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	log, err := newLog(c.Storage, c.Logger, c.MaxCommittedSizePerReady)
	if err != nil {
		return nil, err
	}
	hs, cs, err := c.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: reading initial state from storage: %w", err)
	}
	r := &raft{
		id:                        c.ID,
		lead:                      None,
		isLearner:                 false,
		raftLog:                   log,
		maxMsgSize:                c.MaxSizePerMsg,
		maxUncommittedSize:        c.MaxUncommittedEntriesSize,
		trk:                       tracker.MakeProgressTracker(c.MaxInflightMsgs, c.MaxInflightBytes),
		electionTimeout:           c.ElectionTick,
		heartbeatTimeout:          c.HeartbeatTick,
		checkQuorum:               c.CheckQuorum,
		preVote:                   c.PreVote,
		readOnly:                  newReadOnly(c.ReadOnlyOption),
		disableProposalForwarding: c.DisableProposalForwarding,
		rng:                       rand.New(rand.NewPCG(c.RandSeed, c.ID)),
		logger:                    c.Logger.With("raft", c.ID),
		leaseAcks:                 map[uint64]uint64{},
		sentCommit:                map[uint64]uint64{},
		// Only a member that has been in a term could have promised a
		// lease; a brand-new one may vote at once.
		startupQuiet: c.CheckQuorum && !hs.IsEmpty(),
	}
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: r.trk, LastIndex: log.lastIndex()}, cs)
	if err != nil {
		return nil, fmt.Errorf("raft: restoring configuration %+v from storage: %w", cs, err)
	}
	if got := r.switchToConfig(cfg, prs); got.Equivalent(cs) != nil {
		return nil, fmt.Errorf("raft: configuration restored from storage differs: stored %+v, restored %+v", cs, got)
	}
	if !hs.IsEmpty() {
		if err := r.loadState(hs); err != nil {
			return nil, err
		}
	}
	if lt := r.raftLog.lastTerm(); r.Term < lt {
		// A member's term is never behind its log; storage prepared by hand
		// (a bootstrap snapshot without hard state) can say otherwise.
		r.Term = lt
	}
	if c.Applied > 0 {
		if c.Applied > r.raftLog.lastIndex() {
			return nil, fmt.Errorf("raft: Config.Applied (%d) is beyond the last index %d in storage; storage lost data or Applied is wrong", c.Applied, r.raftLog.lastIndex())
		}
		if c.Applied < r.raftLog.applied {
			// The entries up to the stored snapshot are gone: raft cannot
			// hand out what lies between. Restore the snapshot first.
			return nil, fmt.Errorf("raft: Config.Applied (%d) is below the snapshot index %d in storage; apply the stored snapshot before restarting", c.Applied, r.raftLog.applied)
		}
		// An applied entry was committed, even if the write of the commit
		// index (never fsynced on its own) was lost in a crash.
		r.raftLog.commitTo(c.Applied)
		r.raftLog.appliedTo(c.Applied)
	}
	r.becomeFollower(r.Term, None)
	r.logger.Info("raft: member started", "term", r.Term, "commit", r.raftLog.committed,
		"applied", r.raftLog.applied, "lastIndex", r.raftLog.lastIndex(), "config", r.trk.Config.String())
	return r, nil
}

func (r *raft) hasLeader() bool { return r.lead != None }

func (r *raft) softState() SoftState { return SoftState{Lead: r.lead, RaftState: r.state} }

func (r *raft) hardState() pb.HardState {
	return pb.HardState{Term: r.Term, Vote: r.Vote, Commit: r.raftLog.committed}
}

// send queues m for the application to deliver.
func (r *raft) send(m pb.Message) {
	if m.From == None {
		m.From = r.id
	}
	switch m.Type {
	case pb.MsgVote, pb.MsgVoteResp, pb.MsgPreVote, pb.MsgPreVoteResp:
		// The term of a (pre)vote is chosen by the caller: a pre-vote is for
		// a term this member has not entered.
		if m.Term == 0 {
			panic(fmt.Sprintf("raft: %s sent without a term", m.Type))
		}
	case pb.MsgProp, pb.MsgReadIndex:
		// Forwarded requests are terms-less: the leader treats them as local.
	default:
		m.Term = r.Term
	}
	r.msgs = append(r.msgs, m)
}

// sendAppend sends an append (or a snapshot) to member to, if its flow
// control allows, even with no new entries (a probe).
func (r *raft) sendAppend(to uint64) { r.maybeSendAppend(to, true) }

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

func (r *raft) reset(term uint64) {
	if r.Term != term {
		r.Term = term
		r.Vote = None
	}
	r.lead = None
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.resetRandomizedElectionTimeout()
	r.abortLeaderTransfer()
	r.trk.ResetVotes()
	last, stable := r.raftLog.lastIndex(), r.raftLog.stableIndex()
	r.trk.Visit(func(id uint64, pr *tracker.Progress) {
		*pr = tracker.Progress{
			Match:     0,
			Next:      last + 1,
			Inflights: pr.Inflights,
			IsLearner: pr.IsLearner,
		}
		pr.Inflights.Reset()
		if id == r.id {
			pr.Match = stable
		}
	})
	r.pendingConfIndex = 0
	r.uncommittedSize = 0
	r.readOnly = newReadOnly(r.readOnly.option)
	r.pendingReadIndexMessages = nil
	r.leaseClock = 0
	clear(r.leaseAcks)
	clear(r.sentCommit)
	r.bcastPending = false
	r.leaseRevoked = false
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

func (r *raft) reduceUncommittedSize(s uint64) {
	if s > r.uncommittedSize {
		// Entries committed from an earlier term were never counted here.
		r.uncommittedSize = 0
	} else {
		r.uncommittedSize -= s
	}
}

func (r *raft) tickElection() {
	r.electionElapsed++
	if r.electionElapsed >= r.electionTimeout {
		// An election timeout has passed since start: any lease this
		// member promised before a restart has expired.
		r.startupQuiet = false
	}
	if r.promotable() && r.pastElectionTimeout() {
		r.electionElapsed = 0
		if err := r.Step(pb.Message{From: r.id, Type: pb.MsgHup}); err != nil {
			r.logger.Debug("raft: election tick", "err", err)
		}
	}
}

func (r *raft) tickHeartbeat() {
	r.heartbeatElapsed++
	r.electionElapsed++
	r.leaseClock++
	if r.electionElapsed >= r.electionTimeout {
		r.electionElapsed = 0
		if r.checkQuorum {
			if err := r.Step(pb.Message{From: r.id, Type: pb.MsgCheckQuorum}); err != nil {
				r.logger.Debug("raft: check-quorum tick", "err", err)
			}
		}
		// A transfer that has not completed within an election timeout is
		// abandoned so the leader accepts proposals again.
		if r.state == StateLeader && r.leadTransferee != None {
			r.logger.Info("raft: leadership transfer timed out", "transferee", r.leadTransferee)
			r.abortLeaderTransfer()
		}
	}
	if r.state != StateLeader {
		return
	}
	if r.heartbeatElapsed >= r.heartbeatTimeout {
		r.heartbeatElapsed = 0
		if err := r.Step(pb.Message{From: r.id, Type: pb.MsgBeat}); err != nil {
			r.logger.Debug("raft: heartbeat tick", "err", err)
		}
	}
}

func (r *raft) becomeFollower(term, lead uint64) {
	r.step = stepFollower
	r.reset(term)
	r.tick = r.tickElection
	r.lead = lead
	r.state = StateFollower
	r.logger.Debug("raft: became follower", "term", r.Term, "lead", lead)
}

func (r *raft) becomeCandidate() {
	if r.state == StateLeader {
		panic("raft: invalid transition leader -> candidate")
	}
	r.step = stepCandidate
	r.reset(r.Term + 1)
	r.tick = r.tickElection
	r.Vote = r.id
	r.state = StateCandidate
	r.startupQuiet = false
	r.logger.Info("raft: became candidate", "term", r.Term)
}

func (r *raft) becomePreCandidate() {
	if r.state == StateLeader {
		panic("raft: invalid transition leader -> pre-candidate")
	}
	// A pre-candidate changes neither term nor vote: if it loses, nothing
	// durable happened.
	r.step = stepCandidate
	r.trk.ResetVotes()
	r.tick = r.tickElection
	r.lead = None
	r.state = StatePreCandidate
	r.logger.Info("raft: became pre-candidate", "term", r.Term)
}

func (r *raft) becomeLeader() {
	if r.state == StateFollower {
		panic("raft: invalid transition follower -> leader")
	}
	r.step = stepLeader
	r.reset(r.Term)
	r.tick = r.tickHeartbeat
	r.lead = r.id
	r.state = StateLeader
	r.leaseClock = 1
	r.startupQuiet = false
	pr := r.trk.Progress[r.id]
	pr.BecomeReplicate()
	pr.RecentActive = true
	// Conf changes in the uncommitted tail may be unapplied; be
	// conservative and treat everything up to here as pending.
	r.pendingConfIndex = r.raftLog.lastIndex()
	// The empty entry of the new term commits, with it, every entry of
	// earlier terms (Figure 8). It is free of the uncommitted-size limit.
	empty := pb.Entry{Term: r.Term, Index: r.raftLog.lastIndex() + 1}
	r.raftLog.append(empty)
	r.logger.Info("raft: became leader", "term", r.Term)
}

// hup starts an election of kind t unless that is not allowed now.
func (r *raft) hup(t []byte) {
	if r.state == StateLeader {
		r.logger.Debug("raft: ignoring MsgHup: already leader")
		return
	}
	if !r.promotable() {
		r.logger.Warn("raft: not promotable (learner, removed, or installing a snapshot); not campaigning")
		return
	}
	if r.hasUnappliedConfChanges() {
		r.logger.Warn("raft: not campaigning: committed conf changes are not yet applied")
		return
	}
	r.campaign(t)
}

func (r *raft) hasUnappliedConfChanges() bool {
	if r.raftLog.applied >= r.raftLog.committed {
		return false
	}
	lo, hi := r.raftLog.applied+1, r.raftLog.committed+1
	for lo < hi {
		ents, err := r.raftLog.slice(lo, hi, r.maxMsgSize)
		if err != nil {
			panic(fmt.Sprintf("raft: scanning unapplied entries [%d, %d): %v", lo, hi, err))
		}
		for i := range ents {
			if ents[i].Type != pb.EntryNormal {
				return true
			}
		}
		lo += uint64(len(ents))
	}
	return false
}

func (r *raft) campaign(t []byte) {
	var term uint64
	var voteMsg pb.MessageType
	if bytes.Equal(t, campaignPreElection) {
		r.becomePreCandidate()
		voteMsg = pb.MsgPreVote
		// Ask for the term we would enter, without entering it.
		term = r.Term + 1
	} else {
		r.becomeCandidate()
		voteMsg = pb.MsgVote
		term = r.Term
	}
	if _, _, res := r.poll(r.id, pb.VoteResponseType(voteMsg), true); res == quorum.VoteWon {
		// A single-voter configuration wins by itself.
		if bytes.Equal(t, campaignPreElection) {
			r.campaign(campaignElection)
		} else {
			r.becomeLeader()
		}
		return
	}
	var ctx []byte
	if bytes.Equal(t, campaignTransfer) {
		ctx = t
	}
	lastIndex, lastTerm := r.raftLog.lastIndex(), r.raftLog.lastTerm()
	for _, id := range r.trk.VoterNodes() {
		if id == r.id {
			continue
		}
		r.send(pb.Message{To: id, Term: term, Type: voteMsg, Index: lastIndex, LogTerm: lastTerm, Context: ctx})
	}
}

func (r *raft) poll(id uint64, t pb.MessageType, granted bool) (int, int, quorum.VoteResult) {
	r.trk.RecordVote(id, granted)
	return r.trk.TallyVotes()
}

// ErrInvalidMessage is wrapped by Step's errors for messages that no
// correct member sends; they are dropped without touching any state.
var ErrInvalidMessage = errors.New("raft: invalid message")

// validateMessage rejects messages whose fields contradict each other, so
// that a corrupt or hostile peer cannot drive the state machine into an
// inconsistent state.
func validateMessage(m *pb.Message) error {
	invalid := func(why string) error {
		return fmt.Errorf("%w: %s from %d: %s", ErrInvalidMessage, m.Type, m.From, why)
	}
	if m.Term == 0 {
		switch m.Type {
		case pb.MsgHup, pb.MsgBeat, pb.MsgUnreachable, pb.MsgSnapStatus, pb.MsgCheckQuorum,
			pb.MsgProp, pb.MsgReadIndex, pb.MsgTransferLeader:
		default:
			return invalid("no term")
		}
	}
	switch m.Type {
	case pb.MsgApp:
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Index != m.Index+1+uint64(i) {
				return invalid(fmt.Sprintf("entry %d has index %d, want %d", i, e.Index, m.Index+1+uint64(i)))
			}
			prev := m.LogTerm
			if i > 0 {
				prev = m.Entries[i-1].Term
			}
			if e.Term < prev || e.Term > m.Term {
				return invalid(fmt.Sprintf("entry %d has term %d outside [%d, %d]", e.Index, e.Term, prev, m.Term))
			}
		}
		if m.LogTerm > m.Term {
			return invalid("previous entry's term is beyond the message's term")
		}
	case pb.MsgSnap:
		if m.Snapshot == nil || m.Snapshot.Metadata.Index == 0 || m.Snapshot.Metadata.Term > m.Term {
			return invalid("missing or inconsistent snapshot")
		}
	case pb.MsgReadIndex, pb.MsgReadIndexResp:
		if len(m.Entries) != 1 {
			return invalid("a read carries exactly one entry, its context")
		}
	case pb.MsgVote, pb.MsgPreVote:
		if m.LogTerm > m.Term {
			return invalid("candidate's last term is beyond its campaign term")
		}
	}
	return nil
}

// Step is the single entry point of the state machine.
func (r *raft) Step(m pb.Message) error {
	if err := validateMessage(&m); err != nil {
		r.logger.Warn("raft: dropping invalid message", "err", err)
		return err
	}
	switch {
	case m.Term == 0:
		// Local message, or a forwarded proposal or read.
	case m.Term > r.Term:
		if m.Type == pb.MsgVote || m.Type == pb.MsgPreVote {
			force := bytes.Equal(m.Context, campaignTransfer)
			inLease := r.checkQuorum && (r.lead != None || r.startupQuiet) && r.electionElapsed < r.electionTimeout
			if !force && inLease {
				// We heard from a leader within the minimum election timeout:
				// the candidate is probably a member rejoining from a
				// partition; do not let it depose a healthy leader.
				r.logger.Debug("raft: ignoring vote request within leader lease", "from", m.From, "type", m.Type, "term", m.Term)
				return nil
			}
		}
		switch {
		case m.Type == pb.MsgPreVote:
			// A pre-vote never changes our term.
		case m.Type == pb.MsgPreVoteResp && !m.Reject:
			// A granted pre-vote carries the term we asked about; we enter it
			// only when a quorum grants.
		default:
			if m.Type == pb.MsgApp || m.Type == pb.MsgHeartbeat || m.Type == pb.MsgSnap {
				r.becomeFollower(m.Term, m.From)
			} else {
				r.becomeFollower(m.Term, None)
			}
		}
	case m.Term < r.Term:
		if m.Type == pb.MsgHeartbeat || m.Type == pb.MsgApp {
			// A leader of an older term keeps sending. Tell it our term so it
			// steps down and a new election reaches our term. Without this, a
			// member that advanced its term but cannot win an election (a
			// learner, or a voter held back by pre-vote or leases) would
			// never hear from a leader again.
			r.send(pb.Message{To: m.From, Type: pb.MsgAppResp})
		} else if m.Type == pb.MsgPreVote || m.Type == pb.MsgVote {
			// Reject with our term, so that a candidate of an older term
			// learns of the newer one. Otherwise a candidate that only hears
			// from members ahead of it (which ignore it) would campaign in
			// terms nobody answers, forever.
			r.send(pb.Message{To: m.From, Term: r.Term, Type: pb.VoteResponseType(m.Type), Reject: true})
		} else {
			r.logger.Debug("raft: ignoring message with lower term", "type", m.Type, "from", m.From, "term", m.Term)
		}
		return nil
	}

	switch m.Type {
	case pb.MsgHup:
		if r.preVote {
			r.hup(campaignPreElection)
		} else {
			r.hup(campaignElection)
		}
	case pb.MsgVote, pb.MsgPreVote:
		// We may vote if we already voted for this candidate (a repeat), if
		// we have neither voted nor know a leader in this term, or if this
		// is a pre-vote for a later term.
		canVote := r.Vote == m.From ||
			(r.Vote == None && r.lead == None) ||
			(m.Type == pb.MsgPreVote && m.Term > r.Term)
		if canVote && r.raftLog.isUpToDate(m.Index, m.LogTerm) {
			r.logger.Debug("raft: granting vote", "type", m.Type, "to", m.From, "term", m.Term)
			// The response carries the candidate's term so that a granted
			// pre-vote is counted even though we are at a lower term.
			r.send(pb.Message{To: m.From, Term: m.Term, Type: pb.VoteResponseType(m.Type)})
			if m.Type == pb.MsgVote {
				r.electionElapsed = 0
				r.Vote = m.From
			}
		} else {
			r.logger.Debug("raft: rejecting vote", "type", m.Type, "to", m.From, "term", m.Term, "vote", r.Vote)
			r.send(pb.Message{To: m.From, Term: r.Term, Type: pb.VoteResponseType(m.Type), Reject: true})
		}
	default:
		return r.step(r, m)
	}
	return nil
}

func stepLeader(r *raft, m pb.Message) error {
	// Messages that do not need the sender's progress.
	switch m.Type {
	case pb.MsgBeat:
		r.bcastHeartbeat()
		return nil
	case pb.MsgCheckQuorum:
		if !r.trk.QuorumActive() {
			r.logger.Warn("raft: stepping down: quorum not active within an election timeout")
			r.becomeFollower(r.Term, None)
		}
		// Mark everyone inactive; answers during the next timeout revive them.
		r.trk.Visit(func(id uint64, pr *tracker.Progress) {
			if id != r.id {
				pr.RecentActive = false
			}
		})
		return nil
	case pb.MsgProp:
		return r.handlePropose(m)
	case pb.MsgReadIndex:
		if !r.committedEntryInCurrentTerm() {
			r.pendingReadIndexMessages = append(r.pendingReadIndexMessages, m)
			return nil
		}
		r.handleReadIndex(m)
		return nil
	}

	pr := r.trk.Progress[m.From]
	if pr == nil {
		r.logger.Debug("raft: no progress for sender; ignoring", "from", m.From, "type", m.Type)
		return nil
	}
	switch m.Type {
	case pb.MsgAppResp:
		r.handleAppendResponse(m, pr)
	case pb.MsgHeartbeatResp:
		pr.RecentActive = true
		pr.MsgAppFlowPaused = false
		if m.Index > r.leaseAcks[m.From] && m.Index <= r.leaseClock {
			r.leaseAcks[m.From] = m.Index
		}
		if pr.State == tracker.StateReplicate && pr.Inflights.Full() {
			// Some append may be lost: make room so the next one reveals it.
			pr.Inflights.FreeFirstOne()
		}
		if pr.Match < r.raftLog.lastIndex() {
			r.sendAppend(m.From)
		}
		// Reads wait for a heartbeat round under ReadOnlySafe, and under
		// ReadOnlyLeaseBased whenever the lease is not valid.
		if len(m.Context) == 0 {
			return nil
		}
		if r.trk.Voters.VoteResult(r.readOnly.recvAck(m.From, m.Context)) != quorum.VoteWon {
			return nil
		}
		for _, rs := range r.readOnly.advance(m.Context) {
			if resp := r.responseToReadIndexReq(rs.req, rs.index); resp.To != None {
				r.send(resp)
			}
		}
	case pb.MsgSnapStatus:
		if pr.State != tracker.StateSnapshot {
			return nil
		}
		if m.Reject {
			r.logger.Info("raft: snapshot send failed; probing again", "to", m.From)
			pr.PendingSnapshot = 0
		}
		pr.BecomeProbe()
		// Wait for the member's answer to the snapshot (or a heartbeat)
		// before probing.
		pr.MsgAppFlowPaused = true
	case pb.MsgUnreachable:
		// Appends were probably lost; stop streaming until we hear back.
		if pr.State == tracker.StateReplicate {
			pr.BecomeProbe()
		}
	case pb.MsgTransferLeader:
		if pr.IsLearner {
			r.logger.Info("raft: refusing to transfer leadership to a learner", "to", m.From)
			return nil
		}
		transferee := m.From
		if last := r.leadTransferee; last != None {
			if last == transferee {
				return nil
			}
			r.abortLeaderTransfer()
		}
		if transferee == r.id {
			return nil
		}
		// The transfer must finish within an election timeout.
		r.electionElapsed = 0
		r.leadTransferee = transferee
		r.logger.Info("raft: starting leadership transfer", "to", transferee)
		if pr.Match == r.raftLog.lastIndex() {
			r.sendTimeoutNow(transferee)
		} else {
			r.sendAppend(transferee)
		}
	default:
		r.logger.Debug("raft: leader ignoring message", "type", m.Type, "from", m.From)
	}
	return nil
}

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

func (r *raft) handleReadIndex(m pb.Message) {
	if r.trk.IsSingleton() {
		if resp := r.responseToReadIndexReq(m, r.raftLog.committed); resp.To != None {
			r.send(resp)
		}
		return
	}
	if r.readOnly.option == ReadOnlyLeaseBased && r.leaseValid() {
		if resp := r.responseToReadIndexReq(m, r.raftLog.committed); resp.To != None {
			r.send(resp)
		}
		return
	}
	r.readOnly.addRequest(r.raftLog.committed, m)
	r.readOnly.recvAck(r.id, m.Entries[0].Data)
	r.bcastHeartbeat()
}

// responseToReadIndexReq answers read m at index. A read requested locally
// becomes a ReadState; one forwarded by a follower gets a message back,
// which is returned (To == None otherwise).
func (r *raft) responseToReadIndexReq(m pb.Message, index uint64) pb.Message {
	if m.From == None || m.From == r.id {
		r.readStates = append(r.readStates, ReadState{Index: index, RequestCtx: m.Entries[0].Data})
		return pb.Message{}
	}
	return pb.Message{Type: pb.MsgReadIndexResp, To: m.From, Index: index, Entries: m.Entries}
}

// leaseValid reports whether no other leader can exist now: a quorum
// answered heartbeats sent less than an election timeout ago (one tick of
// margin covers a follower ticking right after receiving one). Without a
// valid lease, lease-based reads fall back to a heartbeat round.
func (r *raft) leaseValid() bool {
	if r.leaseRevoked || !r.checkQuorum {
		return false
	}
	stamps := leaseStamps{acks: r.leaseAcks, self: r.id, now: r.leaseClock}
	q := uint64(r.trk.Voters.CommittedIndex(stamps))
	return q > 0 && r.leaseClock+1 < q+uint64(r.electionTimeout)
}

// leaseStamps presents heartbeat acknowledgement times to quorum
// arithmetic, with the leader itself always current.
type leaseStamps struct {
	acks map[uint64]uint64
	self uint64
	now  uint64
}

func (s leaseStamps) AckedIndex(id uint64) (quorum.Index, bool) {
	if id == s.self {
		return quorum.Index(s.now), true
	}
	v, ok := s.acks[id]
	return quorum.Index(v), ok
}

func (r *raft) committedEntryInCurrentTerm() bool {
	t, err := r.raftLog.term(r.raftLog.committed)
	return err == nil && t == r.Term
}

// releasePendingReadIndexMessages serves reads that waited for the new
// leader's first commit.
func (r *raft) releasePendingReadIndexMessages() {
	if len(r.pendingReadIndexMessages) == 0 || !r.committedEntryInCurrentTerm() {
		return
	}
	msgs := r.pendingReadIndexMessages
	r.pendingReadIndexMessages = nil
	for _, m := range msgs {
		r.handleReadIndex(m)
	}
}

// stepCandidate serves both candidates and pre-candidates.
func stepCandidate(r *raft, m pb.Message) error {
	myVoteResp := pb.MsgVoteResp
	if r.state == StatePreCandidate {
		myVoteResp = pb.MsgPreVoteResp
	}
	switch m.Type {
	case pb.MsgProp:
		return ErrProposalDropped
	case pb.MsgApp:
		r.becomeFollower(m.Term, m.From)
		r.handleAppendEntries(m)
	case pb.MsgHeartbeat:
		r.becomeFollower(m.Term, m.From)
		r.handleHeartbeat(m)
	case pb.MsgSnap:
		r.becomeFollower(m.Term, m.From)
		r.handleSnapshot(m)
	case myVoteResp:
		granted, rejected, res := r.poll(m.From, m.Type, !m.Reject)
		r.logger.Debug("raft: vote tally", "granted", granted, "rejected", rejected, "type", m.Type)
		switch res {
		case quorum.VoteWon:
			if r.state == StatePreCandidate {
				r.campaign(campaignElection)
			} else {
				r.becomeLeader()
				r.bcastAppend()
			}
		case quorum.VoteLost:
			// Stay at this term: a pre-candidate never entered a new one and
			// a candidate has persisted its vote.
			r.becomeFollower(r.Term, None)
		}
	case pb.MsgTimeoutNow:
		r.logger.Debug("raft: ignoring MsgTimeoutNow as candidate", "from", m.From)
	}
	return nil
}

func stepFollower(r *raft, m pb.Message) error {
	switch m.Type {
	case pb.MsgProp:
		if r.lead == None {
			return ErrProposalDropped
		}
		if r.disableProposalForwarding {
			return ErrProposalDropped
		}
		m.To = r.lead
		r.send(m)
	case pb.MsgApp:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleAppendEntries(m)
	case pb.MsgHeartbeat:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleHeartbeat(m)
	case pb.MsgSnap:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleSnapshot(m)
	case pb.MsgTransferLeader:
		if r.lead == None {
			r.logger.Info("raft: no leader to forward leadership transfer to")
			return nil
		}
		m.To = r.lead
		r.send(m)
	case pb.MsgTimeoutNow:
		r.logger.Info("raft: received TimeoutNow; campaigning for leadership transfer", "from", m.From)
		// Skip pre-vote: the leader asked for this election, and followers
		// bypass their lease for transfer campaigns.
		r.hup(campaignTransfer)
	case pb.MsgReadIndex:
		if r.lead == None {
			r.logger.Info("raft: no leader to forward read index to")
			return nil
		}
		m.To = r.lead
		r.send(m)
	case pb.MsgReadIndexResp:
		if len(m.Entries) != 1 {
			r.logger.Error("raft: malformed MsgReadIndexResp", "from", m.From, "entries", len(m.Entries))
			return nil
		}
		r.readStates = append(r.readStates, ReadState{Index: m.Index, RequestCtx: m.Entries[0].Data})
	}
	return nil
}

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

func (r *raft) handleHeartbeat(m pb.Message) {
	r.raftLog.commitTo(m.Commit)
	// Echo the leader's lease clock so it knows when our promise began.
	r.send(pb.Message{To: m.From, Type: pb.MsgHeartbeatResp, Context: m.Context, Index: m.Index})
}

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

// promotable reports whether this member may campaign: it is a voter, and
// no snapshot is being installed.
func (r *raft) promotable() bool {
	pr := r.trk.Progress[r.id]
	return pr != nil && !pr.IsLearner && !r.raftLog.hasNextOrInProgressSnapshot()
}

// applyConfChange applies a committed conf change to the tracker.
func (r *raft) applyConfChange(cc pb.ConfChangeV2) (pb.ConfState, error) {
	changer := confchange.Changer{Tracker: r.trk, LastIndex: r.raftLog.lastIndex()}
	var cfg tracker.Config
	var prs tracker.ProgressMap
	var err error
	if cc.LeaveJoint() {
		cfg, prs, err = changer.LeaveJoint()
	} else if autoLeave, ok := cc.EnterJoint(); ok {
		cfg, prs, err = changer.EnterJoint(autoLeave, cc.Changes...)
	} else {
		cfg, prs, err = changer.Simple(cc.Changes...)
	}
	if err != nil {
		return r.trk.ConfState(), err
	}
	return r.switchToConfig(cfg, prs), nil
}

// switchToConfig installs a configuration and reacts to it: a leader that is
// no longer a voter steps down, commitment may advance (fewer voters), and
// new members are probed.
func (r *raft) switchToConfig(cfg tracker.Config, prs tracker.ProgressMap) pb.ConfState {
	r.trk.SetConfig(cfg, prs)
	r.logger.Info("raft: switched configuration", "config", r.trk.Config.String())
	cs := r.trk.ConfState()
	pr, ok := r.trk.Progress[r.id]
	r.isLearner = ok && pr.IsLearner
	if r.state != StateLeader {
		return cs
	}
	if !r.trk.IsVoter(r.id) {
		// A leader removed from (or demoted out of) the voters stops leading
		// once the change is applied; the remaining voters elect a new one.
		r.logger.Info("raft: leader is no longer a voter; stepping down")
		r.becomeFollower(r.Term, None)
		return cs
	}
	if len(cs.Voters) == 0 {
		return cs
	}
	if r.maybeCommit() {
		r.bcastAppend()
	} else {
		r.trk.Visit(func(id uint64, _ *tracker.Progress) {
			if id != r.id {
				r.maybeSendAppend(id, false)
			}
		})
	}
	if r.leadTransferee != None && !r.trk.IsVoter(r.leadTransferee) {
		r.abortLeaderTransfer()
	}
	return cs
}

func (r *raft) loadState(hs pb.HardState) error {
	if hs.Commit < r.raftLog.committed || hs.Commit > r.raftLog.lastIndex() {
		return fmt.Errorf("raft: stored commit index %d is outside the log [%d, %d]; storage is corrupt or truncated",
			hs.Commit, r.raftLog.committed, r.raftLog.lastIndex())
	}
	r.raftLog.committed = hs.Commit
	r.Term = hs.Term
	r.Vote = hs.Vote
	return nil
}

// appliedTo records that the application applied up to index, and lets a
// leader leave an auto-leave joint configuration once it is in force.
func (r *raft) appliedTo(index uint64) {
	r.raftLog.appliedTo(index)
	if r.trk.Config.AutoLeave && index >= r.pendingConfIndex && r.state == StateLeader {
		// An empty ConfChangeV2 leaves the joint configuration.
		m := pb.Message{Type: pb.MsgProp, From: r.id, Entries: []pb.Entry{{Type: pb.EntryConfChangeV2, Data: pb.MarshalConfChangeV2(pb.ConfChangeV2{})}}}
		if err := r.Step(m); err != nil {
			r.logger.Debug("raft: could not propose leaving the joint configuration", "err", err)
		} else {
			r.logger.Info("raft: leaving joint configuration automatically", "config", r.trk.Config.String())
		}
	}
}

// pastElectionTimeout reports whether the randomized timeout has elapsed.
func (r *raft) pastElectionTimeout() bool {
	return r.electionElapsed >= r.randomizedElectionTimeout
}

func (r *raft) resetRandomizedElectionTimeout() {
	r.randomizedElectionTimeout = r.electionTimeout + r.rng.IntN(r.electionTimeout)
}

func (r *raft) sendTimeoutNow(to uint64) {
	// The transferee's forced campaign ignores follower leases.
	r.leaseRevoked = true
	r.send(pb.Message{To: to, Type: pb.MsgTimeoutNow})
}

func (r *raft) abortLeaderTransfer() { r.leadTransferee = None }

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

// newRaft validates c and restores a member from c.Storage: its
// configuration, hard state and applied index. It starts as a follower.
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

// hasLeader reports whether a leader is known.
func (r *raft) hasLeader() bool { return r.lead != None }

// softState returns the volatile state reported in Ready.
func (r *raft) softState() SoftState { return SoftState{Lead: r.lead, RaftState: r.state} }

// hardState returns the state that must be durable.
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

// reset prepares for a new role in term: it forgets the vote if the term
// changes, restarts the timers, and resets every member's progress (the
// leader's own Match being its durable log).
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

// tickElection is the tick of followers and candidates: campaign once the
// randomized election timeout passes without news of a leader.
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

// tickHeartbeat is the leader's tick: heartbeats every HeartbeatTick,
// and every election timeout a check-quorum round and the end of any
// pending leadership transfer.
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

// becomeFollower follows lead (None if unknown) in term.
func (r *raft) becomeFollower(term, lead uint64) {
	r.step = stepFollower
	r.reset(term)
	r.tick = r.tickElection
	r.lead = lead
	r.state = StateFollower
	r.logger.Debug("raft: became follower", "term", r.Term, "lead", lead)
}

// becomeCandidate enters the next term and votes for itself.
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

// becomePreCandidate starts a pre-election without changing term or vote.
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

// becomeLeader takes leadership of the current term and appends the
// empty entry that lets it commit entries of earlier terms.
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

// stepLeader handles a message as the leader.
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

// stepFollower handles a message as a follower: it forwards requests to
// the leader and accepts the leader's appends, heartbeats and snapshots.
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

// loadState restores term, vote and commit index from storage, checking
// that the commit index lies within the log.
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

package raft

import (
	"errors"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// SoftState is volatile state worth reporting but not persisting.
type SoftState struct {
	Lead      uint64
	RaftState StateType
}

// Ready is what the application must do next. Handle it in this order:
//
//  1. Send Messages: they do not depend on this Ready being persisted, so
//     they may go out at once, in parallel with the write. On a leader these
//     are its appends, which is what makes parallel append possible.
//  2. Persist Snapshot, Entries and HardState (one write; fsync if MustSync).
//  3. Send MessagesAfterPersist: they promise persisted state (append
//     acknowledgements, votes, anything sent under a term first recorded in
//     this Ready).
//  4. Apply Snapshot and CommittedEntries (possibly asynchronously: they are
//     already durable, so applying need not wait for step 2 of this Ready).
//  5. Call Advance.
type Ready struct {
	// SoftState is set when it changed since the last Ready.
	*SoftState
	// HardState is set (non-empty) when it changed.
	pb.HardState
	// ReadStates answer ReadIndex requests; serve each once the applied
	// index reaches its Index.
	ReadStates []ReadState
	// Entries are to be appended to stable storage.
	Entries []pb.Entry
	// Snapshot is to be saved to stable storage.
	Snapshot pb.Snapshot
	// CommittedEntries are durable and committed: apply them in order.
	CommittedEntries []pb.Entry
	// Messages may be sent before persisting this Ready.
	Messages []pb.Message
	// MessagesAfterPersist must be sent only after this Ready is durable.
	MessagesAfterPersist []pb.Message
	// MustSync says whether the write must be fsynced: entries or a changed
	// term or vote must be; a commit index alone need not.
	MustSync bool
}

// isHardStateEqual reports whether two hard states are the same.
func isHardStateEqual(a, b pb.HardState) bool { return a == b }

// IsEmptyHardState reports whether st is the zero HardState.
func IsEmptyHardState(st pb.HardState) bool { return st.IsEmpty() }

// IsEmptySnap reports whether sp is the zero snapshot.
func IsEmptySnap(sp pb.Snapshot) bool { return sp.Metadata.Index == 0 }

// RawNode drives the state machine synchronously: the caller calls Step,
// Tick and the propose functions, then Ready and Advance. It is not safe for
// concurrent use.
type RawNode struct {
	raft       *raft
	prevSoftSt SoftState
	prevHardSt pb.HardState
}

// NewRawNode returns a member from config, restoring its state from
// config.Storage. A fresh member with empty storage has no configuration:
// either Bootstrap it, or let a leader send it a snapshot.
func NewRawNode(config *Config) (*RawNode, error) {
	r, err := newRaft(config)
	if err != nil {
		return nil, err
	}
	rn := &RawNode{raft: r}
	rn.prevSoftSt = r.softState()
	rn.prevHardSt = r.hardState()
	return rn, nil
}

// Tick advances logical time by one tick.
func (rn *RawNode) Tick() { rn.raft.tick() }

// Campaign makes this member start an election.
func (rn *RawNode) Campaign() error {
	return rn.raft.Step(pb.Message{Type: pb.MsgHup})
}

// Propose proposes data to be appended to the log.
func (rn *RawNode) Propose(data []byte) error {
	return rn.raft.Step(pb.Message{
		Type:    pb.MsgProp,
		From:    rn.raft.id,
		Entries: []pb.Entry{{Data: data}},
	})
}

// ProposeConfChange proposes a membership change.
func (rn *RawNode) ProposeConfChange(cc pb.ConfChangeI) error {
	return rn.raft.Step(pb.Message{
		Type:    pb.MsgProp,
		From:    rn.raft.id,
		Entries: []pb.Entry{pb.ToEntry(cc)},
	})
}

// ApplyConfChange applies a committed conf change and returns the new
// configuration. Call it for every conf change entry, in log order.
func (rn *RawNode) ApplyConfChange(cc pb.ConfChangeI) (*pb.ConfState, error) {
	cs, err := rn.raft.applyConfChange(cc.AsV2())
	return &cs, err
}

// Step feeds a message received from the network into the state machine.
func (rn *RawNode) Step(m pb.Message) error {
	if m.Type.IsLocal() {
		return ErrStepLocalMsg
	}
	if !m.Type.Valid() {
		return errors.New("raft: unknown message type; the sender may be newer or the bytes corrupt")
	}
	if m.Type.IsResponse() && rn.raft.trk.Progress[m.From] == nil {
		return ErrStepPeerNotFound
	}
	return rn.raft.Step(m)
}

// HasReady reports whether Ready would return any work.
func (rn *RawNode) HasReady() bool {
	r := rn.raft
	r.flushAppends()
	if ss := r.softState(); ss != rn.prevSoftSt {
		return true
	}
	if hs := r.hardState(); !IsEmptyHardState(hs) && !isHardStateEqual(hs, rn.prevHardSt) {
		return true
	}
	if r.raftLog.nextSnapshot() != nil {
		return true
	}
	return len(r.msgs) > 0 || r.raftLog.hasNextUnstableEnts() || r.raftLog.hasNextCommittedEnts() || len(r.readStates) > 0
}

// Ready returns the work accumulated since the last call. Everything it
// returns is handed over: the next Ready will not repeat it. The caller must
// pass it to Advance once handled.
func (rn *RawNode) Ready() Ready {
	rd := rn.readyWithoutAccept()
	rn.acceptReady(rd)
	return rd
}

// readyWithoutAccept builds the next Ready without handing it over, so
// that Node can offer it until the application takes it.
func (rn *RawNode) readyWithoutAccept() Ready {
	r := rn.raft
	r.flushAppends()
	rd := Ready{
		Entries:          r.raftLog.nextUnstableEnts(),
		CommittedEntries: r.raftLog.nextCommittedEnts(),
		ReadStates:       r.readStates,
	}
	if ss := r.softState(); ss != rn.prevSoftSt {
		// Copy inside the branch so that only a changed soft state costs
		// an allocation.
		changed := ss
		rd.SoftState = &changed
	}
	hs := r.hardState()
	termOrVoteChanged := hs.Term != rn.prevHardSt.Term || hs.Vote != rn.prevHardSt.Vote
	if !isHardStateEqual(hs, rn.prevHardSt) {
		rd.HardState = hs
	}
	if s := r.raftLog.nextSnapshot(); s != nil {
		rd.Snapshot = *s
	}
	rd.MustSync = termOrVoteChanged || len(rd.Entries) > 0
	rd.Messages, rd.MessagesAfterPersist = splitMessages(r.msgs, termOrVoteChanged)
	return rd
}

// splitMessages separates messages that may be sent before this Ready is
// persisted from those that must wait. Waiting are: acknowledgements of
// appends and snapshots (they claim durability), vote grants (the vote must
// be durable first, or a restart could vote twice), and everything when the
// term or vote changed in this Ready (a message must never carry a term the
// sender could forget).
//
// The usual Ready holds only one kind (a leader's appends, a follower's
// acknowledgements); then msgs is returned as it is, without copying.
func splitMessages(msgs []pb.Message, termOrVoteChanged bool) (now, after []pb.Message) {
	if termOrVoteChanged {
		return nil, msgs
	}
	nAfter := 0
	for i := range msgs {
		if mustWaitForPersist(msgs[i].Type) {
			nAfter++
		}
	}
	switch nAfter {
	case 0:
		return msgs, nil
	case len(msgs):
		return nil, msgs
	}
	now = make([]pb.Message, 0, len(msgs)-nAfter)
	after = make([]pb.Message, 0, nAfter)
	for _, m := range msgs {
		if mustWaitForPersist(m.Type) {
			after = append(after, m)
		} else {
			now = append(now, m)
		}
	}
	return now, after
}

// mustWaitForPersist reports whether a message of type t promises durable
// state: an append acknowledgement or a vote.
func mustWaitForPersist(t pb.MessageType) bool {
	return t == pb.MsgAppResp || t == pb.MsgVoteResp
}

// acceptReady marks the contents of rd as handed out.
func (rn *RawNode) acceptReady(rd Ready) {
	r := rn.raft
	if rd.SoftState != nil {
		rn.prevSoftSt = *rd.SoftState
	}
	if !IsEmptyHardState(rd.HardState) {
		rn.prevHardSt = rd.HardState
	}
	r.readStates = nil
	r.msgs = nil
	r.raftLog.acceptUnstable()
	if n := len(rd.CommittedEntries); n > 0 {
		r.raftLog.acceptApplying(rd.CommittedEntries[n-1].Index)
	}
}

// Advance tells the state machine that rd was handled: its entries and
// snapshot are durable and its committed entries applied. On a leader this
// is also when its own acknowledgement of the entries counts.
func (rn *RawNode) Advance(rd Ready) {
	r := rn.raft
	if !IsEmptySnap(rd.Snapshot) {
		// The snapshot is durable and its state installed: it counts as
		// applied, and entries after it are handed out next.
		r.raftLog.stableSnapTo(rd.Snapshot.Metadata.Index)
		if rd.Snapshot.Metadata.Index > r.raftLog.applied {
			r.appliedTo(rd.Snapshot.Metadata.Index)
		}
	}
	if n := len(rd.CommittedEntries); n > 0 {
		if r.state == StateLeader {
			r.reduceUncommittedSize(payloadsSize(rd.CommittedEntries))
		}
		r.appliedTo(rd.CommittedEntries[n-1].Index)
	}
	if n := len(rd.Entries); n > 0 {
		r.raftLog.stableTo(rd.Entries[n-1].Index, rd.Entries[n-1].Term)
	}
	r.selfPersisted()
}

// Status returns the member's current status.
func (rn *RawNode) Status() Status { return getStatus(rn.raft) }

// BasicStatus returns the status without the progress map, cheaply.
func (rn *RawNode) BasicStatus() BasicStatus { return getBasicStatus(rn.raft) }

// ReportUnreachable tells raft that the last send to id failed.
func (rn *RawNode) ReportUnreachable(id uint64) {
	_ = rn.raft.Step(pb.Message{Type: pb.MsgUnreachable, From: id})
}

// SnapshotStatus is the outcome of sending a snapshot.
type SnapshotStatus int

// The outcomes.
const (
	SnapshotFinish SnapshotStatus = 1 + iota
	SnapshotFailure
)

// ReportSnapshot tells raft whether the snapshot sent to id arrived.
func (rn *RawNode) ReportSnapshot(id uint64, status SnapshotStatus) {
	_ = rn.raft.Step(pb.Message{Type: pb.MsgSnapStatus, From: id, Reject: status == SnapshotFailure})
}

// TransferLeader asks the leader to hand leadership to transferee.
func (rn *RawNode) TransferLeader(transferee uint64) {
	_ = rn.raft.Step(pb.Message{Type: pb.MsgTransferLeader, From: transferee})
}

// ReadIndex requests a linearizable read point; the answer comes as a
// ReadState carrying rctx. rctx must be unique among pending reads.
func (rn *RawNode) ReadIndex(rctx []byte) {
	_ = rn.raft.Step(pb.Message{Type: pb.MsgReadIndex, Entries: []pb.Entry{{Data: rctx}}})
}

// Bootstrap initializes a fresh member of a new cluster whose initial
// voters are peers: it appends one conf change entry per peer, committed at
// term 1, exactly as if a leader had replicated them. Every initial member
// must be bootstrapped with the same peers.
func (rn *RawNode) Bootstrap(peers []Peer) error {
	if len(peers) == 0 {
		return errors.New("raft: Bootstrap needs at least one peer")
	}
	last, err := rn.raft.raftLog.storage.LastIndex()
	if err != nil {
		return err
	}
	if last != 0 {
		return errors.New("raft: Bootstrap on a non-empty storage; restart the member instead")
	}
	rn.prevHardSt = pb.HardState{}
	r := rn.raft
	r.becomeFollower(1, None)
	ents := make([]pb.Entry, len(peers))
	for i, p := range peers {
		cc := pb.ConfChange{Type: pb.ConfChangeAddNode, NodeID: p.ID, Context: p.Context}
		ents[i] = pb.Entry{Type: pb.EntryConfChange, Term: 1, Index: uint64(i + 1), Data: pb.MarshalConfChange(cc)}
	}
	r.raftLog.append(ents...)
	r.raftLog.committed = uint64(len(ents))
	for _, p := range peers {
		if _, err := r.applyConfChange(pb.ConfChange{NodeID: p.ID, Type: pb.ConfChangeAddNode}.AsV2()); err != nil {
			return err
		}
	}
	return nil
}

// Peer is an initial member given to Bootstrap.
type Peer struct {
	ID      uint64
	Context []byte
}

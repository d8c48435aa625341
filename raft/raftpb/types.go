// Package raftpb defines the values that flow into and out of the raft state
// machine: messages between members, log entries, hard state, membership
// configurations and snapshots, together with their binary encoding.
//
// The types are plain Go structs so that the state machine can build and
// inspect them without any codec in the way; encoding happens only at the
// edges (the WAL and the peer transport) through the Marshal/Unmarshal
// functions in encoding.go.
package raftpb

import "fmt"

// EntryType says how the application must interpret an entry's data.
type EntryType uint8

// The kinds of log entry.
const (
	// EntryNormal carries application data (or nothing: the empty entry a new
	// leader appends to commit entries of earlier terms).
	EntryNormal EntryType = iota
	// EntryConfChange carries an encoded ConfChange (a single membership change).
	EntryConfChange
	// EntryConfChangeV2 carries an encoded ConfChangeV2 (one or more changes,
	// possibly through a joint configuration).
	EntryConfChangeV2
)

var entryTypeNames = [...]string{"EntryNormal", "EntryConfChange", "EntryConfChangeV2"}

func (t EntryType) String() string {
	if int(t) < len(entryTypeNames) {
		return entryTypeNames[t]
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one record of the replicated log.
type Entry struct {
	Term  uint64
	Index uint64
	Type  EntryType
	Data  []byte
}

// PayloadSize is the size counted against flow-control and uncommitted-log
// limits: only the application's bytes, so that empty entries are free.
func (e *Entry) PayloadSize() uint64 { return uint64(len(e.Data)) }

// MessageType identifies what a Message asks or answers.
type MessageType uint8

// The message types. Local ones (MsgHup, MsgBeat, MsgUnreachable,
// MsgSnapStatus, MsgCheckQuorum) never cross the network: the node injects
// them into its own state machine.
const (
	MsgHup MessageType = iota
	MsgBeat
	MsgProp
	MsgApp
	MsgAppResp
	MsgVote
	MsgVoteResp
	MsgSnap
	MsgHeartbeat
	MsgHeartbeatResp
	MsgUnreachable
	MsgSnapStatus
	MsgCheckQuorum
	MsgTransferLeader
	MsgTimeoutNow
	MsgReadIndex
	MsgReadIndexResp
	MsgPreVote
	MsgPreVoteResp
	msgTypeCount
)

var msgTypeNames = [...]string{
	"MsgHup", "MsgBeat", "MsgProp", "MsgApp", "MsgAppResp", "MsgVote",
	"MsgVoteResp", "MsgSnap", "MsgHeartbeat", "MsgHeartbeatResp",
	"MsgUnreachable", "MsgSnapStatus", "MsgCheckQuorum", "MsgTransferLeader",
	"MsgTimeoutNow", "MsgReadIndex", "MsgReadIndexResp", "MsgPreVote",
	"MsgPreVoteResp",
}

func (t MessageType) String() string {
	if t < msgTypeCount {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Valid reports whether t is a known message type; decoders use it to refuse
// bytes from a newer or corrupt peer.
func (t MessageType) Valid() bool { return t < msgTypeCount }

// IsLocal reports whether messages of type t are generated and consumed
// inside one member and must never be accepted from the network.
func (t MessageType) IsLocal() bool {
	switch t {
	case MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus, MsgCheckQuorum:
		return true
	}
	return false
}

// IsResponse reports whether t answers an earlier request; responses from a
// member the leader no longer tracks are dropped by Node.
func (t MessageType) IsResponse() bool {
	switch t {
	case MsgAppResp, MsgVoteResp, MsgHeartbeatResp, MsgUnreachable, MsgPreVoteResp:
		return true
	}
	return false
}

// VoteResponseType returns the response type for a vote request type.
func VoteResponseType(t MessageType) MessageType {
	if t == MsgPreVote {
		return MsgPreVoteResp
	}
	return MsgVoteResp
}

// Message is the unit of communication between members and the only input
// of the raft state machine. Which fields are meaningful depends on Type.
type Message struct {
	Type MessageType
	To   uint64
	From uint64
	Term uint64
	// LogTerm is the term of the entry at Index (appends, votes) or, on a
	// rejected append, the term of the follower's entry at RejectHint.
	LogTerm uint64
	Index   uint64
	Entries []Entry
	Commit  uint64
	// Snapshot is set on MsgSnap only.
	Snapshot   *Snapshot
	Reject     bool
	RejectHint uint64
	// Context carries opaque bytes: the ReadIndex request context on
	// heartbeats, or the campaign kind on votes.
	Context []byte
}

// HardState is the part of a member's raft state that must be durable before
// the member acts on it: a vote given twice in one term could elect two
// leaders.
type HardState struct {
	Term   uint64
	Vote   uint64
	Commit uint64
}

// IsEmpty reports whether h carries no information (a fresh member).
func (h HardState) IsEmpty() bool { return h == HardState{} }

// ConfState is a membership configuration as recorded in snapshots and
// returned by ApplyConfChange.
type ConfState struct {
	// Voters are the voters of the incoming configuration.
	Voters []uint64
	// Learners receive the log but do not vote.
	Learners []uint64
	// VotersOutgoing are the voters of the outgoing configuration while the
	// cluster is in a joint configuration; empty otherwise.
	VotersOutgoing []uint64
	// LearnersNext are members that are voters in the outgoing configuration
	// and become learners when the joint configuration is left.
	LearnersNext []uint64
	// AutoLeave says the leader leaves the joint configuration on its own
	// once it has been applied.
	AutoLeave bool
}

// Equivalent reports whether cs and other describe the same configuration,
// ignoring the order of IDs.
func (cs ConfState) Equivalent(other ConfState) error {
	same := func(a, b []uint64) bool {
		if len(a) != len(b) {
			return false
		}
		// Compare as multisets: a set of a's IDs would accept any b whose
		// IDs all occur in a, e.g. [1 2 3] and [1 2 2].
		count := make(map[uint64]int, len(a))
		for _, id := range a {
			count[id]++
		}
		for _, id := range b {
			if count[id] == 0 {
				return false
			}
			count[id]--
		}
		return true
	}
	if !same(cs.Voters, other.Voters) || !same(cs.Learners, other.Learners) ||
		!same(cs.VotersOutgoing, other.VotersOutgoing) || !same(cs.LearnersNext, other.LearnersNext) ||
		cs.AutoLeave != other.AutoLeave {
		return fmt.Errorf("conf states differ: %+v vs %+v", cs, other)
	}
	return nil
}

// SnapshotMetadata says where in the log a snapshot stands and which
// configuration was in force there.
type SnapshotMetadata struct {
	ConfState ConfState
	Index     uint64
	Term      uint64
}

// Snapshot is the application's state at Metadata.Index, which replaces the
// log prefix up to and including that index.
type Snapshot struct {
	Data     []byte
	Metadata SnapshotMetadata
}

// IsEmpty reports whether s is the zero snapshot.
func (s *Snapshot) IsEmpty() bool { return s == nil || s.Metadata.Index == 0 }

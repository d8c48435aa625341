package tracker

import (
	"fmt"
	"strings"
)

// StateType is the replication mode the leader uses for one follower.
type StateType uint8

// The replication modes.
const (
	// StateProbe: the leader does not know where the follower's log ends; it
	// sends one append per heartbeat interval and waits for the answer.
	StateProbe StateType = iota
	// StateReplicate: the follower is known to match; the leader streams
	// appends without waiting, up to the inflights window (pipelining).
	StateReplicate
	// StateSnapshot: the follower needs entries the leader has compacted
	// away; a snapshot is on its way and nothing else is sent.
	StateSnapshot
)

var stateNames = [...]string{"StateProbe", "StateReplicate", "StateSnapshot"}

func (s StateType) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("StateType(%d)", uint8(s))
}

// Progress is the leader's view of one member's log.
//
// Invariant: Match < Next. Entries up to Match are known to be on the
// member's durable log; Next is the first entry to send.
type Progress struct {
	Match, Next uint64
	State       StateType
	// PendingSnapshot is the index of the snapshot being sent in
	// StateSnapshot.
	PendingSnapshot uint64
	// RecentActive is set when the member has been heard from since the last
	// check-quorum round.
	RecentActive bool
	// MsgAppFlowPaused is set in StateProbe after an append was sent, so
	// that at most one probe is outstanding per heartbeat interval.
	MsgAppFlowPaused bool
	// Inflights is the pipelining window used in StateReplicate.
	Inflights *Inflights
	// IsLearner marks a non-voting member.
	IsLearner bool
}

// ResetState switches to state, forgetting flow-control state of the old one.
func (pr *Progress) ResetState(state StateType) {
	pr.MsgAppFlowPaused = false
	pr.PendingSnapshot = 0
	pr.State = state
	pr.Inflights.Reset()
}

// BecomeProbe moves to StateProbe. Coming out of a snapshot, the member has
// at least the snapshot, so probing starts after it.
func (pr *Progress) BecomeProbe() {
	if pr.State == StateSnapshot {
		pending := pr.PendingSnapshot
		pr.ResetState(StateProbe)
		pr.Next = max(pr.Match+1, pending+1)
		return
	}
	pr.ResetState(StateProbe)
	pr.Next = pr.Match + 1
}

// BecomeReplicate moves to StateReplicate, streaming from just after Match.
func (pr *Progress) BecomeReplicate() {
	pr.ResetState(StateReplicate)
	pr.Next = pr.Match + 1
}

// BecomeSnapshot moves to StateSnapshot while the snapshot at snapIndex is
// sent.
func (pr *Progress) BecomeSnapshot(snapIndex uint64) {
	pr.ResetState(StateSnapshot)
	pr.PendingSnapshot = snapIndex
}

// SentEntries records that an append carrying entries up to lastIndex (n of
// them, bytes of payload) was sent. In StateReplicate Next moves on at once
// (optimistically); in StateProbe the flow pauses until an answer.
func (pr *Progress) SentEntries(n int, bytes, lastIndex uint64) {
	switch pr.State {
	case StateReplicate:
		if n > 0 {
			pr.Next = lastIndex + 1
			pr.Inflights.Add(lastIndex, bytes)
		}
	case StateProbe:
		pr.MsgAppFlowPaused = true
	}
}

// MaybeUpdate records that the member has entries up to n. It returns false
// if the acknowledgement is stale (n is not beyond Match).
func (pr *Progress) MaybeUpdate(n uint64) bool {
	pr.MsgAppFlowPaused = false
	if n <= pr.Match {
		return false
	}
	pr.Match = n
	pr.Next = max(pr.Next, n+1)
	return true
}

// MaybeDecrTo handles a rejected append of the entry at rejected; hint is
// the member's guess of the last index that could match. It returns false
// if the rejection is stale and must be ignored.
func (pr *Progress) MaybeDecrTo(rejected, hint uint64) bool {
	if pr.State == StateReplicate {
		// Only a rejection beyond Match is news; Next restarts after Match.
		if rejected <= pr.Match {
			return false
		}
		pr.Next = pr.Match + 1
		return true
	}
	// In probe mode only the answer to the outstanding probe counts.
	if pr.Next-1 != rejected {
		return false
	}
	pr.Next = max(min(rejected, hint+1), pr.Match+1)
	pr.MsgAppFlowPaused = false
	return true
}

// IsPaused reports whether the leader must hold back appends to this member.
func (pr *Progress) IsPaused() bool {
	switch pr.State {
	case StateProbe:
		return pr.MsgAppFlowPaused
	case StateReplicate:
		return pr.Inflights.Full()
	default:
		return true
	}
}

func (pr *Progress) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s match=%d next=%d", pr.State, pr.Match, pr.Next)
	if pr.IsLearner {
		b.WriteString(" learner")
	}
	if pr.IsPaused() {
		b.WriteString(" paused")
	}
	if pr.PendingSnapshot > 0 {
		fmt.Fprintf(&b, " pendingSnap=%d", pr.PendingSnapshot)
	}
	if !pr.RecentActive {
		b.WriteString(" inactive")
	}
	if n := pr.Inflights.Count(); n > 0 {
		fmt.Fprintf(&b, " inflight=%d", n)
		if pr.Inflights.Full() {
			b.WriteString("[full]")
		}
	}
	return b.String()
}

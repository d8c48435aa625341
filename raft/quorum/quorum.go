// Package quorum holds the arithmetic of majorities: which log index a set
// of voters has committed, and whether an election is won, lost or still
// open. It knows nothing of messages or progress; callers hand it what each
// voter has acknowledged.
//
// A joint configuration (two majorities during a membership change) needs a
// majority of each, so its committed index is the smaller of the two and its
// vote is won only when both are.
package quorum

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// Index is a log index as seen by quorum arithmetic.
type Index uint64

// String prints the maximal index as ∞, which is what an empty majority
// "commits".
func (i Index) String() string {
	if i == math.MaxUint64 {
		return "∞"
	}
	return strconv.FormatUint(uint64(i), 10)
}

// AckedIndexer tells the highest log index a voter is known to have
// persisted.
type AckedIndexer interface {
	AckedIndex(voterID uint64) (idx Index, found bool)
}

// MapAckIndexer is an AckedIndexer backed by a map, convenient in tests.
type MapAckIndexer map[uint64]Index

// AckedIndex implements AckedIndexer.
func (m MapAckIndexer) AckedIndex(id uint64) (Index, bool) {
	idx, ok := m[id]
	return idx, ok
}

// VoteResult is the state of an election.
type VoteResult uint8

// The election outcomes.
const (
	// VotePending means neither a win nor a loss is certain yet.
	VotePending VoteResult = 1 + iota
	// VoteLost means enough voters rejected that no win is possible.
	VoteLost
	// VoteWon means a quorum granted.
	VoteWon
)

func (v VoteResult) String() string {
	switch v {
	case VotePending:
		return "VotePending"
	case VoteLost:
		return "VoteLost"
	case VoteWon:
		return "VoteWon"
	}
	return "VoteResult(" + strconv.Itoa(int(v)) + ")"
}

// MajorityConfig is a set of voters of which a majority decides.
type MajorityConfig map[uint64]struct{}

// NewMajorityConfig returns the configuration of the given voters.
func NewMajorityConfig(ids ...uint64) MajorityConfig {
	c := make(MajorityConfig, len(ids))
	for _, id := range ids {
		c[id] = struct{}{}
	}
	return c
}

// Slice returns the voters in ascending order.
func (c MajorityConfig) Slice() []uint64 {
	ids := make([]uint64, 0, len(c))
	for id := range c {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (c MajorityConfig) String() string {
	var b strings.Builder
	b.WriteByte('(')
	for i, id := range c.Slice() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(id, 10))
	}
	b.WriteByte(')')
	return b.String()
}

// CommittedIndex returns the largest index acknowledged by a majority. The
// empty configuration returns math.MaxUint64 so that it never holds back a
// joint configuration whose other half is non-empty.
func (c MajorityConfig) CommittedIndex(l AckedIndexer) Index {
	n := len(c)
	if n == 0 {
		return math.MaxUint64
	}
	// Small clusters are the norm; keep their indexes on the stack.
	var stack [7]uint64
	var acked []uint64
	if n <= len(stack) {
		acked = stack[:0]
	} else {
		acked = make([]uint64, 0, n)
	}
	for id := range c {
		idx, _ := l.AckedIndex(id)
		acked = append(acked, uint64(idx))
	}
	// Insertion sort: n is tiny and this avoids the generic sort's overhead.
	for i := 1; i < len(acked); i++ {
		for j := i; j > 0 && acked[j] < acked[j-1]; j-- {
			acked[j], acked[j-1] = acked[j-1], acked[j]
		}
	}
	// With voters sorted ascending, the element at n-(n/2+1) is acknowledged
	// by itself and every voter after it: exactly a majority.
	return Index(acked[n-(n/2+1)])
}

// VoteResult tallies votes (true = granted) cast by members of c; votes of
// non-members are ignored. The empty configuration wins, so that a joint
// configuration with an empty half behaves as its other half.
func (c MajorityConfig) VoteResult(votes map[uint64]bool) VoteResult {
	if len(c) == 0 {
		return VoteWon
	}
	granted, missing := 0, 0
	for id := range c {
		v, ok := votes[id]
		switch {
		case !ok:
			missing++
		case v:
			granted++
		}
	}
	q := len(c)/2 + 1
	if granted >= q {
		return VoteWon
	}
	if granted+missing >= q {
		return VotePending
	}
	return VoteLost
}

// JointConfig is the pair (incoming, outgoing) of majorities that decide
// together during a membership change. Outside a change the outgoing half
// is empty.
type JointConfig [2]MajorityConfig

// IDs returns the union of both halves.
func (c JointConfig) IDs() map[uint64]struct{} {
	ids := make(map[uint64]struct{}, len(c[0])+len(c[1]))
	for _, half := range c {
		for id := range half {
			ids[id] = struct{}{}
		}
	}
	return ids
}

func (c JointConfig) String() string {
	if len(c[1]) > 0 {
		return c[0].String() + "&&" + c[1].String()
	}
	return c[0].String()
}

// CommittedIndex returns the largest index committed by both halves.
func (c JointConfig) CommittedIndex(l AckedIndexer) Index {
	return min(c[0].CommittedIndex(l), c[1].CommittedIndex(l))
}

// VoteResult combines both halves: won only if both won, lost if either lost.
func (c JointConfig) VoteResult(votes map[uint64]bool) VoteResult {
	r0, r1 := c[0].VoteResult(votes), c[1].VoteResult(votes)
	if r0 == r1 {
		return r0
	}
	if r0 == VoteLost || r1 == VoteLost {
		return VoteLost
	}
	return VotePending
}

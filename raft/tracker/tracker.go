// Package tracker keeps the leader's knowledge of every member: the
// membership configuration in force, each member's replication progress and
// flow-control window, and the votes of an election in progress.
package tracker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/synod-db/synod/raft/quorum"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// Config is a membership configuration.
//
// Invariants: a member is never both a voter (in either half) and a learner;
// LearnersNext holds only members that are voters in the outgoing half and
// not in the incoming half; outside a joint configuration Voters[1] and
// LearnersNext are empty and AutoLeave is false.
type Config struct {
	Voters quorum.JointConfig
	// AutoLeave says the leader leaves the joint configuration by itself once
	// it is applied.
	AutoLeave bool
	// Learners receive the log but never vote nor count for commitment.
	Learners map[uint64]struct{}
	// LearnersNext become learners when the joint configuration is left;
	// until then they are outgoing voters.
	LearnersNext map[uint64]struct{}
}

// Clone returns a deep copy.
func (c Config) Clone() Config {
	clone := func(m map[uint64]struct{}) map[uint64]struct{} {
		if m == nil {
			return nil
		}
		out := make(map[uint64]struct{}, len(m))
		for k := range m {
			out[k] = struct{}{}
		}
		return out
	}
	return Config{
		Voters:       quorum.JointConfig{clone(c.Voters[0]), clone(c.Voters[1])},
		AutoLeave:    c.AutoLeave,
		Learners:     clone(c.Learners),
		LearnersNext: clone(c.LearnersNext),
	}
}

func sortedIDs(m map[uint64]struct{}) []uint64 {
	if len(m) == 0 {
		return nil
	}
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// ConfState returns the configuration in the form stored in snapshots.
func (c Config) ConfState() pb.ConfState {
	return pb.ConfState{
		Voters:         sortedIDs(c.Voters[0]),
		VotersOutgoing: sortedIDs(c.Voters[1]),
		Learners:       sortedIDs(c.Learners),
		LearnersNext:   sortedIDs(c.LearnersNext),
		AutoLeave:      c.AutoLeave,
	}
}

// Joint reports whether the configuration is joint.
func (c Config) Joint() bool { return len(c.Voters[1]) > 0 }

func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "voters=%s", c.Voters)
	// Test emptiness, not nil: confchange leaves emptied maps in place, and
	// a configuration must print the same whatever history produced it.
	if len(c.Learners) > 0 {
		fmt.Fprintf(&b, " learners=%s", quorum.MajorityConfig(c.Learners))
	}
	if len(c.LearnersNext) > 0 {
		fmt.Fprintf(&b, " learners_next=%s", quorum.MajorityConfig(c.LearnersNext))
	}
	if c.AutoLeave {
		b.WriteString(" autoleave")
	}
	return b.String()
}

// ProgressMap maps member IDs to their progress.
type ProgressMap map[uint64]*Progress

// AckedIndex implements quorum.AckedIndexer: a member's acknowledged index
// is its Match.
func (m ProgressMap) AckedIndex(id uint64) (quorum.Index, bool) {
	pr, ok := m[id]
	if !ok {
		return 0, false
	}
	return quorum.Index(pr.Match), true
}

// Clone returns a deep copy.
func (m ProgressMap) Clone() ProgressMap {
	out := make(ProgressMap, len(m))
	for id, pr := range m {
		c := *pr
		c.Inflights = pr.Inflights.Clone()
		out[id] = &c
	}
	return out
}

// ProgressTracker holds the configuration, the progress of its members and
// the votes of the current election.
type ProgressTracker struct {
	Config
	Progress ProgressMap
	Votes    map[uint64]bool

	// MaxInflight and MaxInflightBytes size the pipelining window of new
	// members.
	MaxInflight      int
	MaxInflightBytes uint64

	// ids caches the sorted member IDs so that iteration is deterministic and
	// allocation-free; nil means stale.
	ids []uint64
}

// MakeProgressTracker returns an empty tracker whose members get windows of
// maxInflight messages and maxBytes bytes.
func MakeProgressTracker(maxInflight int, maxBytes uint64) ProgressTracker {
	return ProgressTracker{
		MaxInflight:      maxInflight,
		MaxInflightBytes: maxBytes,
		Config: Config{
			Voters:       quorum.JointConfig{quorum.MajorityConfig{}, nil},
			Learners:     nil,
			LearnersNext: nil,
		},
		Votes:    map[uint64]bool{},
		Progress: ProgressMap{},
	}
}

// SetConfig installs a new configuration and progress map (as produced by
// package confchange).
func (p *ProgressTracker) SetConfig(cfg Config, prs ProgressMap) {
	p.Config = cfg
	p.Progress = prs
	p.ids = nil
}

// IDs returns all member IDs (voters and learners) in ascending order. The
// slice is shared; callers must not modify it.
func (p *ProgressTracker) IDs() []uint64 {
	if p.ids == nil || len(p.ids) != len(p.Progress) {
		ids := make([]uint64, 0, len(p.Progress))
		for id := range p.Progress {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		p.ids = ids
	}
	return p.ids
}

// Visit calls f for every member in ascending ID order, so that the state
// machine's output does not depend on map iteration order.
func (p *ProgressTracker) Visit(f func(id uint64, pr *Progress)) {
	for _, id := range p.IDs() {
		f(id, p.Progress[id])
	}
}

// IsSingleton reports whether the configuration has exactly one voter and is
// not joint: such a leader needs nobody else to commit or to confirm reads.
func (p *ProgressTracker) IsSingleton() bool {
	return len(p.Voters[0]) == 1 && len(p.Voters[1]) == 0
}

// Committed returns the largest index acknowledged by a quorum.
func (p *ProgressTracker) Committed() uint64 {
	return uint64(p.Voters.CommittedIndex(p.Progress))
}

// QuorumActive reports whether a quorum of voters has been heard from
// recently (check-quorum).
func (p *ProgressTracker) QuorumActive() bool {
	votes := make(map[uint64]bool, len(p.Progress))
	for id, pr := range p.Progress {
		if !pr.IsLearner {
			votes[id] = pr.RecentActive
		}
	}
	return p.Voters.VoteResult(votes) == quorum.VoteWon
}

// VoterNodes returns the voters of both halves in ascending order.
func (p *ProgressTracker) VoterNodes() []uint64 {
	return sortedIDs(p.Voters.IDs())
}

// LearnerNodes returns the learners in ascending order.
func (p *ProgressTracker) LearnerNodes() []uint64 {
	return sortedIDs(p.Learners)
}

// IsVoter reports whether id votes in either half.
func (p *ProgressTracker) IsVoter(id uint64) bool {
	_, in0 := p.Voters[0][id]
	_, in1 := p.Voters[1][id]
	return in0 || in1
}

// ResetVotes forgets the votes of the last election.
func (p *ProgressTracker) ResetVotes() { clear(p.Votes) }

// RecordVote records id's vote unless it already voted.
func (p *ProgressTracker) RecordVote(id uint64, granted bool) {
	if _, ok := p.Votes[id]; !ok {
		p.Votes[id] = granted
	}
}

// TallyVotes counts the votes cast so far and returns the election state.
func (p *ProgressTracker) TallyVotes() (granted, rejected int, result quorum.VoteResult) {
	for id, pr := range p.Progress {
		if pr.IsLearner {
			continue
		}
		v, voted := p.Votes[id]
		if !voted {
			continue
		}
		if v {
			granted++
		} else {
			rejected++
		}
	}
	return granted, rejected, p.Voters.VoteResult(p.Votes)
}

package tracker

import (
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/synod-db/synod/raft/quorum"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// makeTracker returns a tracker with the given incoming and outgoing voters
// and learners (learnersNext must be outgoing voters), each member's Match
// taken from matches (0 when absent).
func makeTracker(in, out, learners, learnersNext []uint64, matches map[uint64]uint64) ProgressTracker {
	p := MakeProgressTracker(4, 0)
	set := func(ids []uint64) map[uint64]struct{} {
		if ids == nil {
			return nil
		}
		m := map[uint64]struct{}{}
		for _, id := range ids {
			m[id] = struct{}{}
		}
		return m
	}
	cfg := Config{
		Voters:       quorum.JointConfig{quorum.NewMajorityConfig(in...), set(out)},
		Learners:     set(learners),
		LearnersNext: set(learnersNext),
		AutoLeave:    len(out) > 0,
	}
	prs := ProgressMap{}
	for _, ids := range [][]uint64{in, out, learners} {
		for _, id := range ids {
			prs[id] = &Progress{Match: matches[id], Next: matches[id] + 1, Inflights: NewInflights(4, 0)}
		}
	}
	for _, id := range learners {
		prs[id].IsLearner = true
	}
	p.SetConfig(cfg, prs)
	return p
}

// TestTrackerCommitted checks that Committed is the quorum index over the
// voters' Match values (both halves when joint) and that learners, however
// far ahead, do not count.
func TestTrackerCommitted(t *testing.T) {
	tests := []struct {
		in, out, learners []uint64
		matches           map[uint64]uint64
		want              uint64
	}{
		{[]uint64{1}, nil, nil, map[uint64]uint64{1: 7}, 7},
		{[]uint64{1, 2, 3}, nil, nil, map[uint64]uint64{1: 7, 2: 5, 3: 1}, 5},
		{[]uint64{1, 2, 3}, nil, []uint64{4, 5}, map[uint64]uint64{1: 7, 2: 1, 3: 1, 4: 100, 5: 100}, 1},
		{[]uint64{1, 2, 3}, []uint64{1, 4, 5}, nil, map[uint64]uint64{1: 9, 2: 9, 3: 9, 4: 2, 5: 1}, 2},
		{[]uint64{1, 2, 3}, []uint64{1, 4, 5}, nil, map[uint64]uint64{1: 9, 2: 3, 3: 3, 4: 9, 5: 9}, 3},
	}
	for i, tt := range tests {
		p := makeTracker(tt.in, tt.out, tt.learners, nil, tt.matches)
		if got := p.Committed(); got != tt.want {
			t.Errorf("%d: %s Committed() = %d, want %d", i, p.Config, got, tt.want)
		}
	}
}

// TestTrackerQuorumActive checks that check-quorum needs a recently active
// majority of voters (in both halves when joint) and ignores learners.
func TestTrackerQuorumActive(t *testing.T) {
	tests := []struct {
		in, out, learners []uint64
		active            []uint64
		want              bool
	}{
		{[]uint64{1}, nil, nil, []uint64{1}, true},
		{[]uint64{1}, nil, nil, nil, false},
		{[]uint64{1, 2, 3}, nil, nil, []uint64{1, 2}, true},
		{[]uint64{1, 2, 3}, nil, nil, []uint64{1}, false},
		{[]uint64{1, 2, 3}, nil, []uint64{4, 5}, []uint64{1, 4, 5}, false},
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, nil, []uint64{1, 2, 3}, false},
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, nil, []uint64{1, 3, 4}, true},
	}
	for i, tt := range tests {
		p := makeTracker(tt.in, tt.out, tt.learners, nil, nil)
		for _, id := range tt.active {
			p.Progress[id].RecentActive = true
		}
		if got := p.QuorumActive(); got != tt.want {
			t.Errorf("%d: %s with active %v: QuorumActive() = %v, want %v", i, p.Config, tt.active, got, tt.want)
		}
	}
}

// TestTrackerTallyVotes checks vote counting: only the first vote of a
// member counts, learners' and strangers' votes are neither counted nor
// decisive, and ResetVotes starts a new election.
func TestTrackerTallyVotes(t *testing.T) {
	p := makeTracker([]uint64{1, 2, 3}, nil, []uint64{4, 5}, nil, nil)
	check := func(wantGranted, wantRejected int, wantResult quorum.VoteResult) {
		t.Helper()
		g, r, res := p.TallyVotes()
		if g != wantGranted || r != wantRejected || res != wantResult {
			t.Fatalf("TallyVotes() = %d, %d, %v; want %d, %d, %v (votes %v)", g, r, res, wantGranted, wantRejected, wantResult, p.Votes)
		}
	}
	check(0, 0, quorum.VotePending)
	p.RecordVote(1, true)
	p.RecordVote(4, true)  // learner
	p.RecordVote(5, true)  // learner
	p.RecordVote(9, true)  // not a member
	p.RecordVote(1, false) // a second vote is ignored
	check(1, 0, quorum.VotePending)
	p.RecordVote(2, false)
	check(1, 1, quorum.VotePending)
	p.RecordVote(3, true)
	check(2, 1, quorum.VoteWon)

	p.ResetVotes()
	if len(p.Votes) != 0 {
		t.Fatalf("ResetVotes left %v", p.Votes)
	}
	check(0, 0, quorum.VotePending)
	p.RecordVote(2, false)
	p.RecordVote(3, false)
	check(0, 2, quorum.VoteLost)

	// Joint: an outgoing voter in LearnersNext still votes.
	j := makeTracker([]uint64{1, 2}, []uint64{1, 2, 3}, nil, []uint64{3}, nil)
	j.RecordVote(1, true)
	j.RecordVote(3, true)
	if g, r, res := j.TallyVotes(); g != 2 || r != 0 || res != quorum.VotePending {
		t.Fatalf("joint TallyVotes() = %d, %d, %v; want 2, 0, VotePending", g, r, res)
	}
	j.RecordVote(2, true)
	if _, _, res := j.TallyVotes(); res != quorum.VoteWon {
		t.Fatalf("joint with all granted: %v", res)
	}
}

// TestTrackerVisitOrder checks that Visit and IDs go through all members in
// ascending order, and that the cached order follows SetConfig and direct
// additions to the progress map.
func TestTrackerVisitOrder(t *testing.T) {
	ids := []uint64{50, 3, 1000, 7, 1, 12, 99, 2}
	p := makeTracker(ids[:5], nil, ids[5:], nil, nil)
	var visited []uint64
	p.Visit(func(id uint64, pr *Progress) {
		if pr == nil || pr != p.Progress[id] {
			t.Fatalf("Visit passed the wrong progress for %d", id)
		}
		visited = append(visited, id)
	})
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(visited, want) {
		t.Fatalf("visited %v, want %v", visited, want)
	}
	if got := p.IDs(); !slices.Equal(got, want) {
		t.Fatalf("IDs() = %v, want %v", got, want)
	}

	// A new configuration with the same number of members but other IDs.
	q := makeTracker([]uint64{4, 5, 6}, nil, []uint64{8, 9, 10, 11, 20}, nil, nil)
	p.SetConfig(q.Config, q.Progress)
	if got := p.IDs(); !slices.Equal(got, []uint64{4, 5, 6, 8, 9, 10, 11, 20}) {
		t.Fatalf("after SetConfig IDs() = %v", got)
	}
	p.Progress[0] = &Progress{Inflights: NewInflights(1, 0)}
	if got := p.IDs(); got[0] != 0 || len(got) != 9 {
		t.Fatalf("after adding member 0 IDs() = %v", got)
	}
}

// TestTrackerMembership checks the membership queries: voters of both
// halves, learners, singleton detection and the printed configuration.
func TestTrackerMembership(t *testing.T) {
	single := makeTracker([]uint64{1}, nil, []uint64{2}, nil, nil)
	if !single.IsSingleton() {
		t.Errorf("one voter and a learner is not a singleton")
	}
	if fresh := MakeProgressTracker(1, 0); fresh.IsSingleton() || fresh.Joint() || fresh.Committed() != math.MaxUint64 {
		t.Errorf("fresh tracker: singleton=%v joint=%v committed=%d", fresh.IsSingleton(), fresh.Joint(), fresh.Committed())
	}
	p := makeTracker([]uint64{1, 2}, []uint64{1, 3}, []uint64{5, 4}, []uint64{3}, nil)
	if p.IsSingleton() || !p.Joint() {
		t.Errorf("joint tracker: singleton=%v joint=%v", p.IsSingleton(), p.Joint())
	}
	if got := p.VoterNodes(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("VoterNodes() = %v", got)
	}
	if got := p.LearnerNodes(); !slices.Equal(got, []uint64{4, 5}) {
		t.Errorf("LearnerNodes() = %v", got)
	}
	for id, want := range map[uint64]bool{1: true, 2: true, 3: true, 4: false, 5: false, 6: false} {
		if got := p.IsVoter(id); got != want {
			t.Errorf("IsVoter(%d) = %v", id, got)
		}
	}
	if got, want := p.Config.String(), "voters=(1 2)&&(1 3) learners=(4 5) learners_next=(3) autoleave"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := single.Config.String(), "voters=(1) learners=(2)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// Empty (but non-nil) sets print like absent ones, so that a
	// configuration prints the same whatever history produced it.
	emptied := Config{Voters: quorum.JointConfig{quorum.NewMajorityConfig(1)}, Learners: map[uint64]struct{}{}, LearnersNext: map[uint64]struct{}{}}
	if got, want := emptied.String(), "voters=(1)"; got != want {
		t.Errorf("String() with empty learner sets = %q, want %q", got, want)
	}
	want := pb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{4, 5}, VotersOutgoing: []uint64{1, 3}, LearnersNext: []uint64{3}, AutoLeave: true}
	if got := p.ConfState(); !reflect.DeepEqual(got, want) {
		t.Errorf("ConfState() = %+v, want %+v", got, want)
	}
	if got := MakeProgressTracker(1, 0).ConfState(); !reflect.DeepEqual(got, pb.ConfState{}) {
		t.Errorf("empty ConfState() = %+v", got)
	}
}

// TestConfigAndProgressClone checks that clones share nothing with the
// original: configuration maps, progress values and inflight windows.
func TestConfigAndProgressClone(t *testing.T) {
	p := makeTracker([]uint64{1, 2}, []uint64{1, 3}, []uint64{4}, []uint64{3}, map[uint64]uint64{1: 5})
	cfg := p.Config.Clone()
	if !reflect.DeepEqual(cfg, p.Config) {
		t.Fatalf("clone %+v differs from %+v", cfg, p.Config)
	}
	cfg.Voters[0][9] = struct{}{}
	cfg.Voters[1][9] = struct{}{}
	cfg.Learners[9] = struct{}{}
	cfg.LearnersNext[9] = struct{}{}
	if p.IsVoter(9) || len(p.Learners) != 1 || len(p.LearnersNext) != 1 {
		t.Fatalf("changing the clone changed the original: %s", p.Config)
	}
	if c := (Config{}).Clone(); c.Voters[0] != nil || c.Learners != nil || c.LearnersNext != nil {
		t.Fatalf("clone of the zero config has non-nil maps: %+v", c)
	}

	prs := p.Progress.Clone()
	prs[1].Match = 77
	prs[1].Inflights.Add(6, 1)
	delete(prs, 2)
	if p.Progress[1].Match != 5 || p.Progress[1].Inflights.Count() != 0 || p.Progress[2] == nil {
		t.Fatalf("changing the cloned progress changed the original")
	}
	if idx, ok := p.Progress.AckedIndex(1); idx != 5 || !ok {
		t.Fatalf("AckedIndex(1) = %v, %v", idx, ok)
	}
	if idx, ok := p.Progress.AckedIndex(42); idx != 0 || ok {
		t.Fatalf("AckedIndex(42) = %v, %v", idx, ok)
	}
}

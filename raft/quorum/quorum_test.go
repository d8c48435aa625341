package quorum

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

const testSeed = 7331

// ids returns 1..n.
func ids(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// TestMajorityCommittedIndex checks CommittedIndex of single majorities of
// 0 to 7 voters (and one larger than the stack buffer), with missing acks
// counting as index 0 and acks of non-members ignored.
func TestMajorityCommittedIndex(t *testing.T) {
	tests := []struct {
		voters []uint64
		acks   MapAckIndexer
		want   Index
	}{
		{nil, MapAckIndexer{1: 5}, math.MaxUint64},
		{ids(1), MapAckIndexer{}, 0},
		{ids(1), MapAckIndexer{1: 12}, 12},
		{ids(1), MapAckIndexer{2: 12}, 0},
		{ids(2), MapAckIndexer{1: 12}, 0},
		{ids(2), MapAckIndexer{1: 12, 2: 5}, 5},
		{ids(3), MapAckIndexer{1: 12}, 0},
		{ids(3), MapAckIndexer{1: 12, 2: 5}, 5},
		{ids(3), MapAckIndexer{1: 12, 2: 5, 3: 7}, 7},
		{ids(3), MapAckIndexer{1: 5, 2: 5, 3: 5}, 5},
		{ids(3), MapAckIndexer{1: 12, 2: 12, 4: 100}, 12},
		{ids(4), MapAckIndexer{1: 1, 2: 2, 3: 3, 4: 4}, 2},
		{ids(4), MapAckIndexer{1: 9, 2: 9, 3: 1}, 1},
		{ids(4), MapAckIndexer{1: 9, 2: 9}, 0},
		{ids(5), MapAckIndexer{1: 1, 2: 2, 3: 3, 4: 4, 5: 5}, 3},
		{ids(5), MapAckIndexer{1: 50, 2: 40, 3: 30}, 30},
		{ids(5), MapAckIndexer{1: 50, 2: 40}, 0},
		{ids(6), MapAckIndexer{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6}, 3},
		{ids(6), MapAckIndexer{1: 6, 2: 6, 3: 6}, 0},
		{ids(7), MapAckIndexer{1: 7, 2: 6, 3: 5, 4: 4, 5: 3, 6: 2, 7: 1}, 4},
		{ids(7), MapAckIndexer{1: 7, 2: 7, 3: 7, 4: 7}, 7},
		{ids(7), MapAckIndexer{1: 7, 2: 7, 3: 7}, 0},
		{ids(8), MapAckIndexer{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8}, 4},
		{ids(9), MapAckIndexer{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9}, 5},
		{[]uint64{10, 20, 30}, MapAckIndexer{10: math.MaxUint64, 20: math.MaxUint64 - 1}, math.MaxUint64 - 1},
	}
	for i, tt := range tests {
		c := NewMajorityConfig(tt.voters...)
		if got := c.CommittedIndex(tt.acks); got != tt.want {
			t.Errorf("%d: %s.CommittedIndex(%v) = %s, want %s", i, c, tt.acks, got, tt.want)
		}
	}
}

// TestJointCommittedIndex checks that a joint configuration commits the
// smaller of its halves' indexes, and that an empty (or nil) half does not
// hold the other back.
func TestJointCommittedIndex(t *testing.T) {
	acks := MapAckIndexer{1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
	tests := []struct {
		in, out []uint64
		want    Index
	}{
		{nil, nil, math.MaxUint64},
		{[]uint64{1, 2, 3}, nil, 20},
		{nil, []uint64{1, 2, 3}, 20},
		{[]uint64{1, 2, 3}, []uint64{1, 2, 3}, 20},
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, 20},
		{[]uint64{3, 4, 5}, []uint64{1, 2, 3}, 20},
		{[]uint64{4, 5}, []uint64{1, 2, 3}, 20},
		{[]uint64{4, 5}, []uint64{3, 4, 5}, 40},
		{[]uint64{1}, []uint64{5}, 10},
		{[]uint64{1, 6}, []uint64{5}, 0},
	}
	for i, tt := range tests {
		c := JointConfig{NewMajorityConfig(tt.in...), NewMajorityConfig(tt.out...)}
		if got := c.CommittedIndex(acks); got != tt.want {
			t.Errorf("%d: %s.CommittedIndex = %s, want %s", i, c, got, tt.want)
		}
	}
	var zero JointConfig // both halves nil
	if got := zero.CommittedIndex(acks); got != math.MaxUint64 {
		t.Errorf("zero JointConfig commits %s, want ∞", got)
	}
}

// votes builds a vote map from "y"/"n" per voter ID; "_" means no vote.
func votes(spec string) map[uint64]bool {
	m := map[uint64]bool{}
	for i, c := range spec {
		switch c {
		case 'y':
			m[uint64(i+1)] = true
		case 'n':
			m[uint64(i+1)] = false
		}
	}
	return m
}

// TestMajorityVoteResult checks the won/lost/pending outcome of single
// majorities: the empty config wins, votes of non-members are ignored.
func TestMajorityVoteResult(t *testing.T) {
	tests := []struct {
		n     int
		votes string // vote of voter i+1 at position i
		want  VoteResult
	}{
		{0, "", VoteWon},
		{0, "nnn", VoteWon},
		{1, "", VotePending},
		{1, "y", VoteWon},
		{1, "n", VoteLost},
		{1, "_yy", VotePending},
		{2, "y", VotePending},
		{2, "yy", VoteWon},
		{2, "yn", VoteLost},
		{2, "n", VoteLost},
		{3, "", VotePending},
		{3, "y", VotePending},
		{3, "yn", VotePending},
		{3, "yy", VoteWon},
		{3, "nn", VoteLost},
		{3, "yny", VoteWon},
		{3, "ynn", VoteLost},
		{3, "_ynyyy", VotePending}, // grants of non-members 4..6 do not count
		{4, "yyy", VoteWon},
		{4, "yyn", VotePending},
		{4, "yynn", VoteLost},
		{5, "yyy", VoteWon},
		{5, "yynn", VotePending},
		{5, "yynnn", VoteLost},
		{5, "nnn", VoteLost},
	}
	for i, tt := range tests {
		c := NewMajorityConfig(ids(tt.n)...)
		if got := c.VoteResult(votes(tt.votes)); got != tt.want {
			t.Errorf("%d: %s with votes %q = %v, want %v", i, c, tt.votes, got, tt.want)
		}
	}
}

// TestJointVoteResult checks that a joint vote is won only when both halves
// win, lost when either loses, and that an empty half defers to the other.
func TestJointVoteResult(t *testing.T) {
	tests := []struct {
		in, out []uint64
		votes   string
		want    VoteResult
	}{
		{nil, nil, "", VoteWon},
		{[]uint64{1, 2, 3}, nil, "yy", VoteWon},
		{[]uint64{1, 2, 3}, nil, "y", VotePending},
		{[]uint64{1, 2, 3}, nil, "nn", VoteLost},
		{nil, []uint64{1, 2, 3}, "nn", VoteLost},
		{nil, []uint64{1, 2, 3}, "yy", VoteWon},
		// won + won
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "yyyy", VoteWon},
		// won + pending
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "yy", VotePending},
		// pending + won
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "__yy", VotePending},
		// won + lost
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "yynn", VoteLost},
		// lost + won
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "nnyyy", VoteLost},
		// pending + lost
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "y_nn", VoteLost},
		// lost + pending
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "nn_y", VoteLost},
		// pending + pending
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "y__y", VotePending},
		// lost + lost
		{[]uint64{1, 2, 3}, []uint64{3, 4, 5}, "nnnnn", VoteLost},
		// the shared voter's rejection can decide both halves
		{[]uint64{1, 2}, []uint64{2, 3}, "yny", VoteLost},
	}
	for i, tt := range tests {
		c := JointConfig{NewMajorityConfig(tt.in...), NewMajorityConfig(tt.out...)}
		if got := c.VoteResult(votes(tt.votes)); got != tt.want {
			t.Errorf("%d: %s with votes %q = %v, want %v", i, c, tt.votes, got, tt.want)
		}
	}
}

// bruteCommitted is the definition of a majority's committed index: the
// largest index that at least a majority of voters has acked (a missing ack
// is 0), or MaxUint64 for no voters.
func bruteCommitted(voters []uint64, acks MapAckIndexer) Index {
	if len(voters) == 0 {
		return math.MaxUint64
	}
	best := Index(0)
	for _, cand := range voters {
		idx := acks[cand]
		n := 0
		for _, v := range voters {
			if acks[v] >= idx {
				n++
			}
		}
		if n > len(voters)/2 && idx > best {
			best = idx
		}
	}
	return best
}

// bruteVote enumerates every way the missing voters could still vote:
// won if all completions win, lost if none does, pending otherwise. A
// completion wins when every non-empty half has a majority of grants.
func bruteVote(halves [][]uint64, votes map[uint64]bool) VoteResult {
	var missing []uint64
	seen := map[uint64]bool{}
	for _, h := range halves {
		for _, id := range h {
			if _, ok := votes[id]; !ok && !seen[id] {
				seen[id] = true
				missing = append(missing, id)
			}
		}
	}
	wins, total := 0, 1<<len(missing)
	for mask := range total {
		all := true
		for _, h := range halves {
			granted := 0
			for _, id := range h {
				v, ok := votes[id]
				if !ok {
					for j, m := range missing {
						if m == id {
							v = mask&(1<<j) != 0
						}
					}
				}
				if v {
					granted++
				}
			}
			if len(h) > 0 && granted <= len(h)/2 {
				all = false
			}
		}
		if all {
			wins++
		}
	}
	switch wins {
	case total:
		return VoteWon
	case 0:
		return VoteLost
	}
	return VotePending
}

// randVoters returns up to max distinct IDs from a small range, so that the
// halves of a joint configuration overlap often.
func randVoters(r *rand.Rand, max int) []uint64 {
	n := r.IntN(max + 1)
	perm := r.Perm(12)
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(perm[i] + 1)
	}
	return out
}

// TestCommittedIndexProperty compares CommittedIndex of random single and
// joint configurations (up to 11 voters per half, so both the stack and
// heap paths run) with random acks against the brute-force definition.
func TestCommittedIndexProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed, 1))
	for i := range 20000 {
		in, out := randVoters(r, 11), randVoters(r, 11)
		acks := MapAckIndexer{}
		for id := uint64(1); id <= 12; id++ {
			if r.IntN(5) > 0 {
				acks[id] = Index(r.Uint64N(10))
			}
		}
		c := JointConfig{NewMajorityConfig(in...), NewMajorityConfig(out...)}
		if got, want := c[0].CommittedIndex(acks), bruteCommitted(in, acks); got != want {
			t.Fatalf("seed %d iteration %d: %s.CommittedIndex(%v) = %s, want %s", testSeed, i, c[0], acks, got, want)
		}
		want := min(bruteCommitted(in, acks), bruteCommitted(out, acks))
		if got := c.CommittedIndex(acks); got != want {
			t.Fatalf("seed %d iteration %d: %s.CommittedIndex(%v) = %s, want %s", testSeed, i, c, acks, got, want)
		}
	}
}

// TestVoteResultProperty compares VoteResult of random single and joint
// configurations with random partial votes (including votes of
// non-members) against an enumeration of all possible outcomes.
func TestVoteResultProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed, 2))
	for i := range 5000 {
		in, out := randVoters(r, 6), randVoters(r, 6)
		vs := map[uint64]bool{}
		for id := uint64(1); id <= 12; id++ {
			switch r.IntN(3) {
			case 0:
				vs[id] = true
			case 1:
				vs[id] = false
			}
		}
		c := JointConfig{NewMajorityConfig(in...), NewMajorityConfig(out...)}
		if got, want := c[0].VoteResult(vs), bruteVote([][]uint64{in}, vs); got != want {
			t.Fatalf("seed %d iteration %d: %s.VoteResult(%v) = %v, want %v", testSeed, i, c[0], vs, got, want)
		}
		if got, want := c.VoteResult(vs), bruteVote([][]uint64{in, out}, vs); got != want {
			t.Fatalf("seed %d iteration %d: %s.VoteResult(%v) = %v, want %v", testSeed, i, c, vs, got, want)
		}
	}
}

// TestCommittedIndexNoAllocs checks that CommittedIndex of up to 7 voters
// (the common cluster sizes) does not allocate.
func TestCommittedIndexNoAllocs(t *testing.T) {
	for n := 1; n <= 7; n++ {
		c := NewMajorityConfig(ids(n)...)
		acks := MapAckIndexer{}
		for _, id := range ids(n) {
			acks[id] = Index(100 - id)
		}
		var l AckedIndexer = acks
		if a := testing.AllocsPerRun(200, func() { _ = c.CommittedIndex(l) }); a != 0 {
			t.Errorf("%d voters: %v allocations per CommittedIndex, want 0", n, a)
		}
	}
}

// TestStrings checks the printed forms of indexes, vote results and
// configurations, and the ID helpers they rely on.
func TestStrings(t *testing.T) {
	checks := []struct{ got, want string }{
		{Index(0).String(), "0"},
		{Index(42).String(), "42"},
		{Index(math.MaxUint64).String(), "∞"},
		{VotePending.String(), "VotePending"},
		{VoteLost.String(), "VoteLost"},
		{VoteWon.String(), "VoteWon"},
		{VoteResult(0).String(), "VoteResult(0)"},
		{NewMajorityConfig().String(), "()"},
		{NewMajorityConfig(3, 1, 20).String(), "(1 3 20)"},
		{JointConfig{NewMajorityConfig(1, 2)}.String(), "(1 2)"},
		{JointConfig{NewMajorityConfig(1, 2), NewMajorityConfig()}.String(), "(1 2)"},
		{JointConfig{NewMajorityConfig(1, 2), NewMajorityConfig(2, 3)}.String(), "(1 2)&&(2 3)"},
		{fmt.Sprint(NewMajorityConfig(5, 4, 4).Slice()), "[4 5]"},
		{fmt.Sprint(NewMajorityConfig(1, 2).Slice()), "[1 2]"},
		{fmt.Sprint(len(JointConfig{NewMajorityConfig(1, 2), NewMajorityConfig(2, 3)}.IDs())), "3"},
		{fmt.Sprint(len(JointConfig{}.IDs())), "0"},
	}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("%d: got %q, want %q", i, c.got, c.want)
		}
	}
	if idx, ok := (MapAckIndexer{1: 4}).AckedIndex(1); idx != 4 || !ok {
		t.Errorf("AckedIndex of a present voter = %v, %v", idx, ok)
	}
	if idx, ok := (MapAckIndexer{1: 4}).AckedIndex(2); idx != 0 || ok {
		t.Errorf("AckedIndex of an absent voter = %v, %v", idx, ok)
	}
}

// BenchmarkCommittedIndex measures CommittedIndex for the usual cluster
// sizes; it should report 0 allocations.
func BenchmarkCommittedIndex(b *testing.B) {
	for _, n := range []int{3, 5, 7} {
		b.Run(fmt.Sprintf("voters=%d", n), func(b *testing.B) {
			c := NewMajorityConfig(ids(n)...)
			acks := MapAckIndexer{}
			for _, id := range ids(n) {
				acks[id] = Index(1000 + id*7%5)
			}
			b.ReportAllocs()
			var sink Index
			for b.Loop() {
				sink += c.CommittedIndex(acks)
			}
			_ = sink
		})
	}
}

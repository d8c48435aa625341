package confchange

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// model is an independent, set-based statement of what a configuration
// change does, used to predict the Changer's results.
type model struct {
	in, out, learners, next map[uint64]bool
	autoLeave               bool
}

func newModel() model {
	return model{in: map[uint64]bool{}, out: map[uint64]bool{}, learners: map[uint64]bool{}, next: map[uint64]bool{}}
}

func (m model) clone() model {
	return model{maps.Clone(m.in), maps.Clone(m.out), maps.Clone(m.learners), maps.Clone(m.next), m.autoLeave}
}

func keys(m map[uint64]bool) []uint64 { return slices.Sorted(maps.Keys(m)) }

func (m model) confState() pb.ConfState {
	return pb.ConfState{Voters: keys(m.in), VotersOutgoing: keys(m.out), Learners: keys(m.learners), LearnersNext: keys(m.next), AutoLeave: m.autoLeave}
}

// apply applies ccs to the incoming voters; ok is false when the result
// has no incoming voter.
func (m model) apply(ccs []pb.ConfChangeSingle) (ok bool) {
	for _, cc := range ccs {
		id := cc.NodeID
		if id == 0 {
			continue
		}
		switch cc.Type {
		case pb.ConfChangeAddNode:
			delete(m.learners, id)
			delete(m.next, id)
			m.in[id] = true
		case pb.ConfChangeAddLearnerNode:
			if m.learners[id] {
				continue
			}
			delete(m.in, id)
			if m.out[id] {
				m.next[id] = true
			} else {
				m.learners[id] = true
			}
		case pb.ConfChangeRemoveNode:
			delete(m.in, id)
			delete(m.learners, id)
			delete(m.next, id)
		}
	}
	return len(m.in) > 0
}

// simple predicts Changer.Simple: the new model, or ok=false for an error.
func (m model) simple(ccs []pb.ConfChangeSingle) (model, bool) {
	if len(m.out) > 0 {
		return m, false
	}
	n := m.clone()
	if !n.apply(ccs) {
		return m, false
	}
	changed := 0
	for id := range m.in {
		if !n.in[id] {
			changed++
		}
	}
	for id := range n.in {
		if !m.in[id] {
			changed++
		}
	}
	return n, changed <= 1
}

// enter predicts Changer.EnterJoint.
func (m model) enter(autoLeave bool, ccs []pb.ConfChangeSingle) (model, bool) {
	if len(m.out) > 0 || len(m.in) == 0 {
		return m, false
	}
	n := m.clone()
	n.out = maps.Clone(m.in)
	if !n.apply(ccs) {
		return m, false
	}
	n.autoLeave = autoLeave
	return n, true
}

// leave predicts Changer.LeaveJoint.
func (m model) leave() (model, bool) {
	if len(m.out) == 0 {
		return m, false
	}
	n := m.clone()
	for id := range n.next {
		n.learners[id] = true
	}
	n.next, n.out, n.autoLeave = map[uint64]bool{}, map[uint64]bool{}, false
	return n, true
}

// checkConsistent checks the tracker's invariants from the outside: the
// members with progress are exactly the voters and learners, progress
// marks exactly the learners, and the sets relate as documented.
func checkConsistent(cfg tracker.Config, prs tracker.ProgressMap) error {
	members := map[uint64]bool{}
	for _, s := range []map[uint64]struct{}{cfg.Voters[0], cfg.Voters[1], cfg.Learners} {
		for id := range s {
			members[id] = true
		}
	}
	if !slices.Equal(keys(members), slices.Sorted(maps.Keys(prs))) {
		return fmt.Errorf("members %v but progress for %s", keys(members), describeProgress(prs))
	}
	for id, pr := range prs {
		if _, l := cfg.Learners[id]; l != pr.IsLearner {
			return fmt.Errorf("member %d: in learners %v, progress says learner %v", id, l, pr.IsLearner)
		}
	}
	voters := cfg.Voters.IDs()
	for id := range cfg.Learners {
		if _, v := voters[id]; v {
			return fmt.Errorf("learner %d is a voter", id)
		}
	}
	for id := range cfg.LearnersNext {
		_, in := cfg.Voters[0][id]
		_, out := cfg.Voters[1][id]
		if in || !out {
			return fmt.Errorf("learner-next %d: incoming %v outgoing %v", id, in, out)
		}
	}
	if !cfg.Joint() && (len(cfg.LearnersNext) > 0 || cfg.AutoLeave) {
		return fmt.Errorf("non-joint configuration %s has joint-only state", cfg)
	}
	return nil
}

// randChanges returns n random changes on members 1..6 (rarely 0).
func randChanges(r *rand.Rand, n int) []pb.ConfChangeSingle {
	out := make([]pb.ConfChangeSingle, n)
	for i := range out {
		id := uint64(1 + r.IntN(6))
		if r.IntN(40) == 0 {
			id = 0
		}
		out[i] = pb.ConfChangeSingle{Type: pb.ConfChangeType(r.IntN(4)), NodeID: id}
	}
	return out
}

// TestRandomChanges applies random sequences of Simple, EnterJoint and
// LeaveJoint calls and checks after each one that:
//   - the tracker handed to the Changer was not modified;
//   - success or failure, and the resulting configuration, match an
//     independent set-based model of the rules;
//   - the result is internally consistent (progress exactly for members,
//     learner flags, LearnersNext only for outgoing voters);
//   - members that stay keep their progress, new ones start at LastIndex+1;
//   - Restore of its ConfState on an empty tracker yields an equivalent
//     configuration with the same members and learner flags.
func TestRandomChanges(t *testing.T) {
	const seed = 4242
	r := rand.New(rand.NewPCG(seed, 0))
	var ok, failed, joint int
	for run := range 300 {
		trk := tracker.MakeProgressTracker(16, 0)
		m := newModel()
		lastIndex := uint64(0)
		for step := range 40 {
			lastIndex += r.Uint64N(5)
			c := Changer{Tracker: trk, LastIndex: lastIndex}
			var desc string
			var cfg tracker.Config
			var prs tracker.ProgressMap
			var err error
			var want model
			var wantOK bool
			// removed holds the members that a change removes; they may
			// come back in the same change, with fresh progress.
			removed := map[uint64]bool{}
			noteRemoved := func(ccs []pb.ConfChangeSingle) {
				for _, cc := range ccs {
					if cc.Type == pb.ConfChangeRemoveNode {
						removed[cc.NodeID] = true
					}
				}
			}
			before, beforePrs := trk.Config.Clone(), trk.Progress.Clone()
			switch k := r.IntN(10); {
			case k < 5:
				ccs := randChanges(r, 1+r.IntN(2))
				desc = fmt.Sprintf("Simple(%v)", ccs)
				noteRemoved(ccs)
				want, wantOK = m.simple(ccs)
				cfg, prs, err = c.Simple(ccs...)
			case k < 7:
				auto := r.IntN(2) == 0
				ccs := randChanges(r, 1+r.IntN(4))
				desc = fmt.Sprintf("EnterJoint(%v, %v)", auto, ccs)
				noteRemoved(ccs)
				want, wantOK = m.enter(auto, ccs)
				cfg, prs, err = c.EnterJoint(auto, ccs...)
			default:
				desc = "LeaveJoint()"
				want, wantOK = m.leave()
				cfg, prs, err = c.LeaveJoint()
			}
			where := fmt.Sprintf("seed %d run %d step %d: %s on %s", seed, run, step, desc, trk.Config)
			unchanged(t, where, before, beforePrs, trk)
			if (err == nil) != wantOK {
				t.Fatalf("%s: err = %v, model expected success=%v", where, err, wantOK)
			}
			if err != nil {
				failed++
				continue
			}
			ok++
			if cfg.Joint() {
				joint++
			}
			if e := cfg.ConfState().Equivalent(want.confState()); e != nil {
				t.Fatalf("%s: result differs from the model: %v", where, e)
			}
			if e := checkConsistent(cfg, prs); e != nil {
				t.Fatalf("%s: %v", where, e)
			}
			for id, pr := range prs {
				fresh := pr.Match == 0 && pr.Next == lastIndex+1
				if old, ok := trk.Progress[id]; ok && !(removed[id] && fresh) {
					if pr.Match != old.Match || pr.Next != old.Next {
						t.Fatalf("%s: member %d's progress changed from %v to %v", where, id, old, pr)
					}
				} else if !fresh {
					t.Fatalf("%s: new member %d starts at %v, want next=%d", where, id, pr, lastIndex+1)
				}
			}

			cs := cfg.ConfState()
			rcfg, rprs, err := Restore(Changer{Tracker: tracker.MakeProgressTracker(16, 0), LastIndex: lastIndex}, cs)
			if err != nil {
				t.Fatalf("%s: Restore(%+v): %v", where, cs, err)
			}
			if e := rcfg.ConfState().Equivalent(cs); e != nil {
				t.Fatalf("%s: restored configuration differs: %v", where, e)
			}
			if got, want := describeProgress(rprs), describeProgress(prs); got != want {
				t.Fatalf("%s: restored progress for %q, want %q", where, got, want)
			}
			if rcfg.String() != cfg.String() {
				t.Fatalf("%s: restored configuration prints %q, original %q", where, rcfg, cfg)
			}

			trk.SetConfig(cfg, prs)
			m = want
			// Let the leader learn something about its members, so that
			// kept progress is distinguishable from fresh progress.
			trk.Visit(func(id uint64, pr *tracker.Progress) {
				if r.IntN(3) == 0 {
					pr.Match = lastIndex - r.Uint64N(lastIndex+1)
					pr.Next = pr.Match + 1 + r.Uint64N(3)
				}
			})
		}
	}
	// The sequences must exercise both outcomes substantially.
	if ok < 2000 || failed < 1000 || joint < 500 {
		t.Fatalf("seed %d: %d successful (%d joint) and %d failed changes; the generator is too one-sided", seed, ok, joint, failed)
	}
	t.Logf("seed %d: %d successful (%d joint), %d refused changes", seed, ok, joint, failed)
}

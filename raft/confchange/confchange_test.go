package confchange

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/synod-db/synod/raft/quorum"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// ccs parses a terse change list, failing the test on a typo.
func ccs(t testing.TB, s string) []pb.ConfChangeSingle {
	t.Helper()
	out, err := pb.ConfChangesFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// describeProgress lists the members that have progress in ascending
// order, marking learners with "L": "1 2 3L".
func describeProgress(prs tracker.ProgressMap) string {
	ids := make([]uint64, 0, len(prs))
	for id := range prs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var parts []string
	for _, id := range ids {
		s := fmt.Sprint(id)
		if prs[id].IsLearner {
			s += "L"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// run applies one operation of the step language: "simple", "enter"
// (explicit leave), "enter-auto" or "leave".
func run(t testing.TB, c Changer, op, changes string) (tracker.Config, tracker.ProgressMap, error) {
	t.Helper()
	switch op {
	case "simple":
		return c.Simple(ccs(t, changes)...)
	case "enter":
		return c.EnterJoint(false, ccs(t, changes)...)
	case "enter-auto":
		return c.EnterJoint(true, ccs(t, changes)...)
	case "leave":
		if changes != "" {
			t.Fatalf("leave takes no changes, got %q", changes)
		}
		return c.LeaveJoint()
	}
	t.Fatalf("unknown op %q", op)
	return tracker.Config{}, nil, nil
}

// unchanged fails if the tracker's configuration or progress differs from
// the copies taken before an operation.
func unchanged(t testing.TB, what string, before tracker.Config, beforePrs tracker.ProgressMap, after tracker.ProgressTracker) {
	t.Helper()
	if !reflect.DeepEqual(before, after.Config) {
		t.Fatalf("%s modified the input configuration: %s became %s", what, before, after.Config)
	}
	if !reflect.DeepEqual(beforePrs, after.Progress) {
		t.Fatalf("%s modified the input progress: %s became %s", what, describeProgress(beforePrs), describeProgress(after.Progress))
	}
}

type step struct {
	op, changes string
	// want is the expected Config.String() after the step (when err is
	// empty), prs the expected describeProgress.
	want, prs string
	// err is a substring of the expected error; the configuration then
	// stays as it was.
	err string
}

// TestChanger runs scripted sequences of changes, in the manner of a
// data-driven test: each step applies a change list through Simple,
// EnterJoint or LeaveJoint and states the resulting configuration and
// progress members, or the expected error. Every step also checks that the
// tracker handed to the Changer was left untouched, and that a failing step
// returns no configuration.
func TestChanger(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"add voters one by one", []step{
			{op: "simple", changes: "v1", want: "voters=(1)", prs: "1"},
			{op: "simple", changes: "v2", want: "voters=(1 2)", prs: "1 2"},
			{op: "simple", changes: "v3", want: "voters=(1 2 3)", prs: "1 2 3"},
			{op: "simple", changes: "v3 v2", want: "voters=(1 2 3)", prs: "1 2 3"}, // already voters: no-op
			{op: "simple", changes: "v4 v5", err: "may add or remove one voter, these change 2"},
			{op: "simple", changes: "v0 u1 u7", want: "voters=(1 2 3)", prs: "1 2 3"}, // ID 0 and updates are ignored
		}},
		{"add learners", []step{
			{op: "simple", changes: "v1", want: "voters=(1)", prs: "1"},
			{op: "simple", changes: "l2", want: "voters=(1) learners=(2)", prs: "1 2L"},
			{op: "simple", changes: "l2", want: "voters=(1) learners=(2)", prs: "1 2L"},
			{op: "simple", changes: "l3 l4 l5", want: "voters=(1) learners=(2 3 4 5)", prs: "1 2L 3L 4L 5L"}, // learners are free
			{op: "simple", changes: "v2 l6", want: "voters=(1 2) learners=(3 4 5 6)", prs: "1 2 3L 4L 5L 6L"},
		}},
		{"promote and demote with simple changes", []step{
			{op: "simple", changes: "v1 l2", want: "voters=(1) learners=(2)", prs: "1 2L"},
			{op: "simple", changes: "v2", want: "voters=(1 2)", prs: "1 2"}, // promote
			{op: "simple", changes: "v3", want: "voters=(1 2 3)", prs: "1 2 3"},
			{op: "simple", changes: "l3", want: "voters=(1 2) learners=(3)", prs: "1 2 3L"}, // demote
			{op: "simple", changes: "l3 v3", want: "voters=(1 2 3)", prs: "1 2 3"},
			{op: "simple", changes: "l2 l3", err: "these change 2"},
			{op: "simple", changes: "l1 l2 l3", err: "removes all voters"},
		}},
		{"remove", []step{
			{op: "simple", changes: "v1", want: "voters=(1)", prs: "1"},
			{op: "simple", changes: "v2", want: "voters=(1 2)", prs: "1 2"},
			{op: "simple", changes: "l3", want: "voters=(1 2) learners=(3)", prs: "1 2 3L"},
			{op: "simple", changes: "r9", want: "voters=(1 2) learners=(3)", prs: "1 2 3L"}, // unknown: no-op
			{op: "simple", changes: "r3", want: "voters=(1 2)", prs: "1 2"},
			{op: "simple", changes: "r1", want: "voters=(2)", prs: "2"},
			{op: "simple", changes: "r2", err: "removes all voters"},
			{op: "simple", changes: "r2 v1", err: "these change 2"},
			{op: "simple", changes: "v1 r2", err: "these change 2"},
			{op: "simple", changes: "r2 v2", want: "voters=(2)", prs: "2"}, // removed and re-added: one voter, no change
		}},
		{"joint: replace a voter and leave", []step{
			{op: "simple", changes: "v1", want: "voters=(1)"},
			{op: "simple", changes: "v2", want: "voters=(1 2)"},
			{op: "simple", changes: "v3", want: "voters=(1 2 3)"},
			{op: "enter-auto", changes: "r1 v4", want: "voters=(2 3 4)&&(1 2 3) autoleave", prs: "1 2 3 4"},
			{op: "simple", changes: "v5", err: "simple change cannot be applied to a joint"},
			{op: "enter", changes: "v5", err: "leave it before entering a new one"},
			{op: "leave", want: "voters=(2 3 4)", prs: "2 3 4"},
			{op: "leave", err: "not joint"},
		}},
		{"joint: demote a voter through LearnersNext", []step{
			{op: "simple", changes: "v1", want: "voters=(1)"},
			{op: "simple", changes: "v2", want: "voters=(1 2)"},
			{op: "simple", changes: "v3", want: "voters=(1 2 3)"},
			{op: "enter", changes: "l3 l4", want: "voters=(1 2)&&(1 2 3) learners=(4) learners_next=(3)", prs: "1 2 3 4L"},
			{op: "leave", want: "voters=(1 2) learners=(3 4)", prs: "1 2 3L 4L"},
		}},
		{"joint: changes of mind inside one joint change", []step{
			{op: "simple", changes: "v1", want: "voters=(1)"},
			{op: "simple", changes: "v2", want: "voters=(1 2)"},
			{op: "simple", changes: "v3", want: "voters=(1 2 3)"},
			// Demoted, then made a voter again: back in the incoming half.
			{op: "enter", changes: "l3 v3", want: "voters=(1 2 3)&&(1 2 3)", prs: "1 2 3"},
			{op: "leave", want: "voters=(1 2 3)", prs: "1 2 3"},
			// Removed, then re-added as a learner: staged in LearnersNext.
			{op: "enter-auto", changes: "r3 l3", want: "voters=(1 2)&&(1 2 3) learners_next=(3) autoleave", prs: "1 2 3"},
			{op: "leave", want: "voters=(1 2) learners=(3)", prs: "1 2 3L"},
			// A learner that becomes a voter in a joint change.
			{op: "enter-auto", changes: "v3 r1", want: "voters=(2 3)&&(1 2) autoleave", prs: "1 2 3"},
			{op: "leave", want: "voters=(2 3)", prs: "2 3"},
			// Demoted then removed: still counted in the outgoing half,
			// gone after leaving.
			{op: "enter", changes: "l2 r2", want: "voters=(3)&&(2 3)", prs: "2 3"},
			{op: "leave", want: "voters=(3)", prs: "3"},
		}},
		{"joint: learner changes only and demotion of all but one", []step{
			{op: "simple", changes: "v1", want: "voters=(1)"},
			{op: "simple", changes: "v2", want: "voters=(1 2)"},
			{op: "enter-auto", changes: "l5", want: "voters=(1 2)&&(1 2) learners=(5) autoleave", prs: "1 2 5L"},
			{op: "leave", want: "voters=(1 2) learners=(5)", prs: "1 2 5L"},
			{op: "enter", changes: "v3 v4 l1 r5", want: "voters=(2 3 4)&&(1 2) learners_next=(1)", prs: "1 2 3 4"},
			{op: "leave", want: "voters=(2 3 4) learners=(1)", prs: "1L 2 3 4"},
		}},
		{"joint: removing all incoming voters errors", []step{
			{op: "simple", changes: "v1", want: "voters=(1)"},
			{op: "simple", changes: "v2", want: "voters=(1 2)"},
			{op: "enter", changes: "r1 r2", err: "removes all voters"},
			{op: "enter", changes: "l1 l2 v3 r3", err: "removes all voters"},
			{op: "enter", changes: "r1 r2 v3", want: "voters=(3)&&(1 2)", prs: "1 2 3"},
		}},
		{"no voters", []step{
			{op: "leave", err: "not joint"},
			{op: "enter", changes: "v1", err: "without voters"},
			{op: "enter-auto", changes: "v1 v2", err: "without voters"},
			{op: "simple", changes: "l1", err: "removes all voters"},
			{op: "simple", changes: "", err: "removes all voters"},
			{op: "simple", changes: "v1 l2", want: "voters=(1) learners=(2)", prs: "1 2L"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trk := tracker.MakeProgressTracker(8, 1024)
			for i, s := range tt.steps {
				before, beforePrs := trk.Config.Clone(), trk.Progress.Clone()
				c := Changer{Tracker: trk, LastIndex: uint64(10 * (i + 1))}
				cfg, prs, err := run(t, c, s.op, s.changes)
				unchanged(t, fmt.Sprintf("step %d (%s %q)", i, s.op, s.changes), before, beforePrs, trk)
				if s.err != "" {
					if err == nil || !strings.Contains(err.Error(), s.err) {
						t.Fatalf("step %d (%s %q): err = %v, want one containing %q (got config %s)", i, s.op, s.changes, err, s.err, cfg)
					}
					if prs != nil || !reflect.DeepEqual(cfg, tracker.Config{}) {
						t.Fatalf("step %d: a failed change returned a configuration %s", i, cfg)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d (%s %q): %v", i, s.op, s.changes, err)
				}
				if got := cfg.String(); got != s.want {
					t.Fatalf("step %d (%s %q): config %q, want %q", i, s.op, s.changes, got, s.want)
				}
				if got := describeProgress(prs); s.prs != "" && got != s.prs {
					t.Fatalf("step %d (%s %q): progress of %q, want %q", i, s.op, s.changes, got, s.prs)
				}
				trk.SetConfig(cfg, prs)
			}
		})
	}
}

// TestNewMemberProgress checks how members get their progress: a new member
// probes from LastIndex+1, counts as recently active and gets a window of
// the tracker's size; existing members keep their progress untouched
// through promotion, demotion and joint changes.
func TestNewMemberProgress(t *testing.T) {
	trk := tracker.MakeProgressTracker(3, 100)
	apply := func(cfg tracker.Config, prs tracker.ProgressMap, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		trk.SetConfig(cfg, prs)
	}
	apply(Changer{Tracker: trk, LastIndex: 41}.Simple(ccs(t, "v1 l2")...))
	for _, id := range []uint64{1, 2} {
		pr := trk.Progress[id]
		if pr.Match != 0 || pr.Next != 42 || !pr.RecentActive || pr.State != tracker.StateProbe {
			t.Fatalf("new member %d: %+v", id, pr)
		}
		for i := range uint64(3) {
			pr.Inflights.Add(i+1, 1)
		}
		if !pr.Inflights.Full() {
			t.Fatalf("member %d's window is not sized by the tracker's MaxInflight", id)
		}
		pr.Inflights.Reset()
		pr.Inflights.Add(1, 100)
		if !pr.Inflights.Full() {
			t.Fatalf("member %d's window is not sized by the tracker's MaxInflightBytes", id)
		}
	}
	trk.Progress[1].Match, trk.Progress[1].Next, trk.Progress[1].RecentActive = 30, 35, false
	trk.Progress[2].Match, trk.Progress[2].Next = 20, 21
	apply(Changer{Tracker: trk, LastIndex: 50}.Simple(ccs(t, "v2")...))
	apply(Changer{Tracker: trk, LastIndex: 60}.EnterJoint(false, ccs(t, "l1 v3")...))
	apply(Changer{Tracker: trk, LastIndex: 70}.LeaveJoint())
	if pr := trk.Progress[1]; pr.Match != 30 || pr.Next != 35 || pr.RecentActive || !pr.IsLearner {
		t.Fatalf("demoted member 1 lost its progress: %+v", pr)
	}
	if pr := trk.Progress[2]; pr.Match != 20 || pr.Next != 21 || pr.IsLearner {
		t.Fatalf("promoted member 2 lost its progress: %+v", pr)
	}
	if pr := trk.Progress[3]; pr.Match != 0 || pr.Next != 61 {
		t.Fatalf("member 3 added at last index 60: %+v", pr)
	}
}

// TestUnknownChangeType checks that a change of an unknown type is refused
// rather than ignored.
func TestUnknownChangeType(t *testing.T) {
	trk := tracker.MakeProgressTracker(1, 0)
	bad := pb.ConfChangeSingle{Type: pb.ConfChangeType(9), NodeID: 1}
	if _, _, err := (Changer{Tracker: trk}).Simple(bad); err == nil || !strings.Contains(err.Error(), "unknown change type") {
		t.Fatalf("Simple: err = %v", err)
	}
	cfg, prs, err := Changer{Tracker: trk}.Simple(ccs(t, "v1")...)
	if err != nil {
		t.Fatal(err)
	}
	trk.SetConfig(cfg, prs)
	if _, _, err := (Changer{Tracker: trk}).EnterJoint(true, bad); err == nil || !strings.Contains(err.Error(), "unknown change type") {
		t.Fatalf("EnterJoint: err = %v", err)
	}
}

// TestBrokenTracker checks that every operation refuses a tracker whose
// configuration breaks the invariants (or was never initialized), instead
// of building on it.
func TestBrokenTracker(t *testing.T) {
	set := func(ids ...uint64) map[uint64]struct{} {
		m := map[uint64]struct{}{}
		for _, id := range ids {
			m[id] = struct{}{}
		}
		return m
	}
	pr := func(learner bool) *tracker.Progress {
		return &tracker.Progress{Next: 1, Inflights: tracker.NewInflights(1, 0), IsLearner: learner}
	}
	tests := []struct {
		name string
		cfg  tracker.Config
		prs  tracker.ProgressMap
		err  string
	}{
		{"uninitialized", tracker.Config{}, nil, "no voter set"},
		{"voter without progress", tracker.Config{Voters: quorum.JointConfig{set(1, 2)}}, tracker.ProgressMap{1: pr(false)}, "no progress for member 2"},
		{"outgoing voter without progress", tracker.Config{Voters: quorum.JointConfig{set(1), set(3)}}, tracker.ProgressMap{1: pr(false)}, "no progress for member 3"},
		{"learner without progress", tracker.Config{Voters: quorum.JointConfig{set(1)}, Learners: set(4)}, tracker.ProgressMap{1: pr(false)}, "no progress for member 4"},
		{"learners next not outgoing", tracker.Config{Voters: quorum.JointConfig{set(1), set(1)}, LearnersNext: set(2)}, tracker.ProgressMap{1: pr(false), 2: pr(false)}, "not an outgoing voter"},
		{"learners next marked learner", tracker.Config{Voters: quorum.JointConfig{set(1), set(1, 2)}, LearnersNext: set(2)}, tracker.ProgressMap{1: pr(false), 2: pr(true)}, "already a learner"},
		{"learner and incoming voter", tracker.Config{Voters: quorum.JointConfig{set(1, 2)}, Learners: set(2)}, tracker.ProgressMap{1: pr(false), 2: pr(true)}, "both learner and incoming voter"},
		{"learner and outgoing voter", tracker.Config{Voters: quorum.JointConfig{set(1), set(2)}, Learners: set(2)}, tracker.ProgressMap{1: pr(false), 2: pr(true)}, "both learner and outgoing voter"},
		{"learner with voter progress", tracker.Config{Voters: quorum.JointConfig{set(1)}, Learners: set(2)}, tracker.ProgressMap{1: pr(false), 2: pr(false)}, "has a voter's progress"},
		{"auto leave outside joint", tracker.Config{Voters: quorum.JointConfig{set(1)}, AutoLeave: true}, tracker.ProgressMap{1: pr(false)}, "AutoLeave is set outside"},
	}
	for _, tt := range tests {
		trk := tracker.MakeProgressTracker(1, 0)
		trk.SetConfig(tt.cfg, tt.prs)
		c := Changer{Tracker: trk}
		for _, op := range []string{"simple", "enter", "leave"} {
			changes := "l9"
			if op == "leave" {
				changes = ""
			}
			if _, _, err := run(t, c, op, changes); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s, %s: err = %v, want one containing %q", tt.name, op, err, tt.err)
			}
		}
	}
}

// TestRestore checks that Restore rebuilds simple and joint configurations
// from a ConfState on an empty tracker, with every member probing from
// LastIndex+1, and refuses states that no sequence of changes produces.
func TestRestore(t *testing.T) {
	tests := []struct {
		cs   pb.ConfState
		want string
		prs  string
		err  string
	}{
		{cs: pb.ConfState{}, want: "voters=()", prs: ""},
		{cs: pb.ConfState{Voters: []uint64{3, 1, 2}}, want: "voters=(1 2 3)", prs: "1 2 3"},
		{cs: pb.ConfState{Voters: []uint64{1}, Learners: []uint64{5, 4}}, want: "voters=(1) learners=(4 5)", prs: "1 4L 5L"},
		{cs: pb.ConfState{Voters: []uint64{1, 2}, VotersOutgoing: []uint64{1, 2, 3}, LearnersNext: []uint64{3}, Learners: []uint64{4}, AutoLeave: true},
			want: "voters=(1 2)&&(1 2 3) learners=(4) learners_next=(3) autoleave", prs: "1 2 3 4L"},
		{cs: pb.ConfState{Voters: []uint64{4, 5}, VotersOutgoing: []uint64{1, 2, 3}},
			want: "voters=(4 5)&&(1 2 3)", prs: "1 2 3 4 5"},
		{cs: pb.ConfState{Learners: []uint64{1}}, err: "removes all voters"},
		{cs: pb.ConfState{VotersOutgoing: []uint64{1}}, err: "removes all voters"},
	}
	for i, tt := range tests {
		trk := tracker.MakeProgressTracker(4, 0)
		cfg, prs, err := Restore(Changer{Tracker: trk, LastIndex: 7}, tt.cs)
		unchanged(t, "Restore", tracker.MakeProgressTracker(4, 0).Config, tracker.ProgressMap{}, trk)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%d: Restore(%+v) err = %v, want one containing %q", i, tt.cs, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d: Restore(%+v): %v", i, tt.cs, err)
		}
		if got := cfg.String(); got != tt.want {
			t.Errorf("%d: Restore(%+v) = %q, want %q", i, tt.cs, got, tt.want)
		}
		if got := describeProgress(prs); got != tt.prs {
			t.Errorf("%d: Restore(%+v) progress of %q, want %q", i, tt.cs, got, tt.prs)
		}
		if err := cfg.ConfState().Equivalent(tt.cs); err != nil {
			t.Errorf("%d: %v", i, err)
		}
		for id, pr := range prs {
			if pr.Match != 0 || pr.Next != 8 {
				t.Errorf("%d: restored member %d: %+v", i, id, pr)
			}
		}
	}
}

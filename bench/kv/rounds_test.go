package main

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoundOrderAlternates(t *testing.T) {
	sys := []string{"etcd", "synod"}
	first := map[string]int{}
	for r := range 4 {
		o := roundOrder(sys, r)
		first[o[0]]++
		if len(o) != 2 || o[0] == o[1] {
			t.Fatalf("round %d: order %v", r, o)
		}
	}
	if first["etcd"] != 2 || first["synod"] != 2 {
		t.Errorf("each system should go first in half of 4 rounds: %v", first)
	}
	if !slices.Equal(sys, []string{"etcd", "synod"}) {
		t.Errorf("roundOrder changed its argument: %v", sys)
	}
}

// TestMedianByIsTheMiddleElement checks medianBy against sorting, over
// random lists (seeded; the seed is in the failure message).
func TestMedianByIsTheMiddleElement(t *testing.T) {
	const seed = 7
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := range 200 {
		n := 1 + rng.IntN(9)
		xs := make([]float64, n)
		for j := range xs {
			xs[j] = float64(rng.IntN(20))
		}
		got := medianBy(xs, func(x float64) float64 { return x })
		below, above := 0, 0
		for _, x := range xs {
			if x < got {
				below++
			}
			if x > got {
				above++
			}
		}
		// At most half strictly below (lower middle) and at most half
		// strictly above.
		if below > (n-1)/2 || above > n/2 {
			t.Fatalf("seed %d case %d: median of %v is %v (%d below, %d above)", seed, i, xs, got, below, above)
		}
	}
	if got := medianBy([]int(nil), func(int) float64 { return 0 }); got != 0 {
		t.Errorf("empty: %v", got)
	}
}

func roundRun(name string, round int, rps float64, p99 time.Duration, serving time.Duration, leaderRSS int64, leader string) *SystemResult {
	w := Workload{Name: "put-c1000", Kind: kindPut, Conns: 100, Clients: 1000, Total: 10}
	return &SystemResult{Name: name, Round: round,
		Results:  []*Result{{Workload: w, Stats: Stats{Requests: 10, RPS: rps, P99: p99, Mean: p99 / 2}}},
		Recovery: &RecoveryResult{Keys: 10, Serving: serving},
		Resources: []MemberResources{
			{Name: name + "-1", Leader: leader == name+"-1", PeakRSSAfterWorkloads: map[bool]int64{true: leaderRSS, false: 10}[leader == name+"-1"]},
			{Name: name + "-2", Leader: leader == name+"-2", PeakRSSAfterWorkloads: map[bool]int64{true: leaderRSS, false: 10}[leader == name+"-2"]},
		}}
}

// TestMergeRoundsTakesMedianRound: the merged row is the median round's
// whole result (its p99 with its throughput), the recovery the median by
// time to serve, and memory is compared by role whichever member led.
func TestMergeRoundsTakesMedianRound(t *testing.T) {
	runs := []*SystemResult{
		roundRun("synod", 1, 900, 9*time.Millisecond, 3*time.Second, 300, "synod-1"),
		roundRun("synod", 2, 100, 1*time.Millisecond, 1*time.Second, 100, "synod-2"),
		roundRun("synod", 3, 500, 5*time.Millisecond, 2*time.Second, 200, "synod-2"),
	}
	runs[2].Error = "workload: boom"
	m := mergeRounds(runs)
	r := m.result("put-c1000")
	if r == nil || r.Stats.RPS != 500 || r.Stats.P99 != 5*time.Millisecond {
		t.Errorf("median round: %+v", r)
	}
	if m.Recovery == nil || m.Recovery.Serving != 2*time.Second {
		t.Errorf("median recovery: %+v", m.Recovery)
	}
	if len(m.Resources) != 2 || !m.Resources[0].Leader || m.Resources[0].PeakRSSAfterWorkloads != 200 || m.Resources[1].PeakRSSAfterWorkloads != 10 {
		t.Errorf("resources by role: %+v", m.Resources)
	}
	if !strings.Contains(m.Error, "round 3: workload: boom") {
		t.Errorf("error of a round lost: %q", m.Error)
	}
	if one := mergeRounds(runs[:1]); one != runs[0] {
		t.Errorf("one round should be kept as it is")
	}
}

func TestRenderRoundsShowsEachRound(t *testing.T) {
	rep := fakeReport()
	rep.Rounds = 2
	rep.Workloads = []Workload{{Name: "put-c1000", Kind: kindPut, Conns: 100, Clients: 1000, Total: 10}}
	rep.Runs = []*SystemResult{
		roundRun("etcd", 1, 1000, 4*time.Millisecond, 4*time.Second, 100, "etcd-1"),
		roundRun("synod", 1, 500, 8*time.Millisecond, time.Second, 100, "synod-1"),
		roundRun("synod", 2, 3000, 2*time.Millisecond, time.Second, 100, "synod-1"),
		roundRun("etcd", 2, 1000, 4*time.Millisecond, 4*time.Second, 100, "etcd-1"),
	}
	mergeReport(rep, []string{"etcd", "synod"})
	txt := renderReport(rep, false)
	for _, want := range []string{"round 1 (etcd then synod)", "round 2 (synod then etcd)", "0.50x", "3.00x", "0.25x", "median of 2 rounds"} {
		if !strings.Contains(txt, want) {
			t.Errorf("report lacks %q:\n%s", want, txt)
		}
	}
	// Two rounds: the lower middle by throughput is synod's round 1.
	if got := rep.system("synod").result("put-c1000").Stats.RPS; got != 500 {
		t.Errorf("median synod put-c1000 = %v, want 500", got)
	}
}

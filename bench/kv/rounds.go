package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// On a shared two-core machine the disk and the CPU drift during a run
// (the fdatasync p50 doubled between two back-to-back runs), and the
// system that runs second pays for it. compare therefore runs the systems
// in several rounds, alternating which goes first, and reports for each
// measure the median round. One round with one order is an anecdote.

// roundOrder returns the order the systems run in round r (0-based): the
// given order in even rounds, reversed in odd ones, so that with two
// systems each goes first equally often.
func roundOrder(systems []string, r int) []string {
	order := slices.Clone(systems)
	if r%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// medianBy returns the element of xs at the median of key (the lower of
// the two middle ones for an even count), or the zero T for none. Taking
// a whole element rather than the median of each field keeps the figures
// of one row consistent with each other (a p99 from the same run as the
// throughput next to it).
func medianBy[T any](xs []T, key func(T) float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.SortStableFunc(s, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return s[(len(s)-1)/2]
}

// mergeRounds folds one system's runs (one per round) into one result:
// per workload the median round by throughput, the median recovery by
// time to serve, and per member role (leader first, then the followers by
// name) the median of each resource figure. Errors of any round are kept.
func mergeRounds(runs []*SystemResult) *SystemResult {
	if len(runs) == 1 {
		return runs[0]
	}
	first := runs[0]
	m := &SystemResult{Name: first.Name, Binary: first.Binary, Build: first.Build, Leader: first.Leader}
	var names []string
	for _, r := range runs {
		for _, res := range r.Results {
			if !slices.Contains(names, res.Workload.Name) {
				names = append(names, res.Workload.Name)
			}
		}
	}
	for _, n := range names {
		var rs []*Result
		for _, r := range runs {
			if res := r.result(n); res != nil {
				rs = append(rs, res)
			}
		}
		m.Results = append(m.Results, medianBy(rs, func(r *Result) float64 { return r.Stats.RPS }))
	}
	var recs []*RecoveryResult
	for _, r := range runs {
		if r.Recovery != nil && r.Recovery.Serving > 0 {
			recs = append(recs, r.Recovery)
		}
	}
	m.Recovery = medianBy(recs, func(r *RecoveryResult) float64 { return float64(r.Serving) })
	m.Resources = mergeResources(runs)
	var errs []string
	for i, r := range runs {
		if r.Error != "" {
			errs = append(errs, fmt.Sprintf("round %d: %s", i+1, r.Error))
		}
		m.Logs = append(m.Logs, r.Logs...)
	}
	m.Error = strings.Join(errs, "; ")
	return m
}

// byRole orders a run's members leader first, then the others by name:
// which member leads changes between rounds, so figures are compared by
// role, not by name.
func byRole(ms []MemberResources) []MemberResources {
	s := slices.Clone(ms)
	slices.SortStableFunc(s, func(a, b MemberResources) int {
		if a.Leader != b.Leader {
			if a.Leader {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return s
}

func mergeResources(runs []*SystemResult) []MemberResources {
	var roles [][]MemberResources
	n := 0
	for _, r := range runs {
		if len(r.Resources) > 0 {
			roles = append(roles, byRole(r.Resources))
			n = max(n, len(r.Resources))
		}
	}
	if len(roles) == 0 {
		return nil
	}
	out := make([]MemberResources, n)
	for i := range n {
		var at []MemberResources
		for _, rs := range roles {
			if i < len(rs) {
				at = append(at, rs[i])
			}
		}
		out[i] = MemberResources{
			Name:                  at[0].Name,
			Leader:                at[0].Leader,
			PeakRSSAfterWorkloads: medianBy(at, func(m MemberResources) float64 { return float64(m.PeakRSSAfterWorkloads) }).PeakRSSAfterWorkloads,
			PeakRSSEnd:            medianBy(at, func(m MemberResources) float64 { return float64(m.PeakRSSEnd) }).PeakRSSEnd,
			DataBytes:             medianBy(at, func(m MemberResources) float64 { return float64(m.DataBytes) }).DataBytes,
		}
	}
	return out
}

// mergeReport sets rep.Systems to the median of each system's runs.
func mergeReport(rep *Report, systems []string) {
	rep.Systems = nil
	for _, name := range systems {
		var runs []*SystemResult
		for _, r := range rep.Runs {
			if r.Name == name {
				runs = append(runs, r)
			}
		}
		if len(runs) > 0 {
			rep.Systems = append(rep.Systems, mergeRounds(runs))
		}
	}
}

// renderRounds is the table of each round's ratios, which shows how much
// of a median's ratio is the system and how much the machine.
func renderRounds(rep *Report, markdown bool) string {
	if rep.Rounds < 2 {
		return ""
	}
	header := []string{"measure"}
	for i := range rep.Rounds {
		header = append(header, fmt.Sprintf("round %d (%s)", i+1, strings.Join(roundOrder(systemNames(rep), i), " then ")))
	}
	t := table{leftCols: 1, header: header}
	names, _, _ := rowResults(rep)
	for _, n := range names {
		rps, p99 := []string{n + " req/s"}, []string{n + " p99"}
		for i := range rep.Rounds {
			e, s := findResult(rep.run(baseSystem, i), n), findResult(rep.run(otherSystem, i), n)
			rps = append(rps, ratio(stats(s).RPS, stats(e).RPS))
			p99 = append(p99, ratio(float64(stats(s).P99), float64(stats(e).P99)))
		}
		t.add(rps...)
		t.add(p99...)
	}
	serve := []string{"recovery: restart to linearizable read"}
	seen := false
	for i := range rep.Rounds {
		e, s := recovery(rep.run(baseSystem, i)), recovery(rep.run(otherSystem, i))
		serve = append(serve, ratio(float64(s.Serving), float64(e.Serving)))
		seen = seen || e.Serving > 0 || s.Serving > 0
	}
	if seen {
		t.add(serve...)
	}
	return t.render(markdown)
}

// systemNames lists the systems of the report in the order of round 1.
func systemNames(rep *Report) []string {
	var names []string
	for _, r := range rep.Runs {
		if r.Round == 1 && !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
	}
	return names
}

// run returns the named system's run of round r (0-based), or nil.
func (r *Report) run(name string, round int) *SystemResult {
	for _, s := range r.Runs {
		if s.Name == name && s.Round == round+1 {
			return s
		}
	}
	return nil
}

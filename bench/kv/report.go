package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// The pair compared in the ratio columns: other/base.
const (
	baseSystem  = "etcd"
	otherSystem = "synod"
)

// table is a grid of cells printed as aligned text or as markdown. The
// first leftCols columns are left-aligned, the others right-aligned.
type table struct {
	header   []string
	rows     [][]string
	leftCols int
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) render(markdown bool) string {
	widths := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	pad := func(s string, i int) string {
		n := widths[i] - utf8.RuneCountInString(s)
		if i < t.leftCols {
			return s + strings.Repeat(" ", n)
		}
		return strings.Repeat(" ", n) + s
	}
	var b strings.Builder
	line := func(r []string) {
		cells := make([]string, len(t.header))
		for i := range cells {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			cells[i] = pad(c, i)
		}
		if markdown {
			b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		} else {
			b.WriteString(strings.TrimRight(strings.Join(cells, "  "), " ") + "\n")
		}
	}
	line(t.header)
	if markdown {
		seps := make([]string, len(t.header))
		for i := range seps {
			if i < t.leftCols {
				seps[i] = strings.Repeat("-", max(3, widths[i]))
			} else {
				seps[i] = strings.Repeat("-", max(3, widths[i])-1) + ":"
			}
		}
		b.WriteString("| " + strings.Join(seps, " | ") + " |\n")
	} else {
		total := 0
		for _, w := range widths {
			total += w + 2
		}
		b.WriteString(strings.Repeat("-", total-2) + "\n")
	}
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// ratio prints other/base, or "-" when either is missing.
func ratio(other, base float64) string {
	if other <= 0 || base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", other/base)
}

func fmtRPS(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtMiB(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// rowResults returns, for each compared workload name in order (the
// measured workloads, then the recovery fill), the base and other
// system's results (either may be nil).
func rowResults(rep *Report) (names []string, base, other map[string]*Result) {
	base, other = map[string]*Result{}, map[string]*Result{}
	bs, ot := rep.system(baseSystem), rep.system(otherSystem)
	add := func(name string) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, w := range rep.Workloads {
		add(w.Name)
	}
	for _, s := range rep.Systems {
		if s.Recovery != nil && s.Recovery.Fill != nil {
			add(s.Recovery.Fill.Workload.Name)
		}
	}
	for _, n := range names {
		base[n], other[n] = findResult(bs, n), findResult(ot, n)
	}
	return names, base, other
}

func findResult(s *SystemResult, name string) *Result {
	if s == nil {
		return nil
	}
	if r := s.result(name); r != nil {
		return r
	}
	if s.Recovery != nil && s.Recovery.Fill != nil && s.Recovery.Fill.Workload.Name == name {
		return s.Recovery.Fill
	}
	return nil
}

func stats(r *Result) Stats {
	if r == nil {
		return Stats{}
	}
	return r.Stats
}

// renderReport prints the comparison tables (as text or markdown).
func renderReport(rep *Report, markdown bool) string {
	var b strings.Builder
	h := func(s string) {
		if markdown {
			b.WriteString("\n## " + s + "\n\n")
		} else {
			b.WriteString("\n" + s + "\n")
		}
	}
	names, base, other := rowResults(rep)

	h("Throughput and latency (ratio = synod/etcd: above 1 is better for req/s, below 1 is better for latency)")
	t := table{leftCols: 2, header: []string{"workload", "conns/clients",
		"etcd req/s", "synod req/s", "ratio",
		"etcd avg", "synod avg", "ratio",
		"etcd p99", "synod p99", "ratio", "errors e/s"}}
	for _, n := range names {
		e, s := stats(base[n]), stats(other[n])
		shape := "-"
		if r := firstNonNil(base[n], other[n]); r != nil {
			shape = fmt.Sprintf("%d/%d", r.Workload.Conns, r.Workload.Clients)
		}
		t.add(n, shape,
			fmtRPS(e.RPS), fmtRPS(s.RPS), ratio(s.RPS, e.RPS),
			fmtDur(e.Mean), fmtDur(s.Mean), ratio(float64(s.Mean), float64(e.Mean)),
			fmtDur(e.P99), fmtDur(s.P99), ratio(float64(s.P99), float64(e.P99)),
			fmt.Sprintf("%s/%s", errCount(base[n]), errCount(other[n])))
	}
	b.WriteString(wrapTable(t.render(markdown), markdown))

	h("Latency distribution")
	d := table{leftCols: 2, header: []string{"workload", "system", "req/s", "avg", "p50", "p90", "p99", "p99.9", "slowest", "errors"}}
	for _, n := range names {
		for _, sys := range []string{baseSystem, otherSystem} {
			r := base[n]
			if sys == otherSystem {
				r = other[n]
			}
			if r == nil {
				continue
			}
			st := r.Stats
			d.add(n, sys, fmtRPS(st.RPS), fmtDur(st.Mean), fmtDur(st.P50), fmtDur(st.P90), fmtDur(st.P99), fmtDur(st.P999), fmtDur(st.Slowest), fmt.Sprint(st.Errors))
			if r.Reads != nil {
				d.add("  reads", sys, fmtRPS(r.Reads.RPS), fmtDur(r.Reads.Mean), fmtDur(r.Reads.P50), fmtDur(r.Reads.P90), fmtDur(r.Reads.P99), fmtDur(r.Reads.P999), fmtDur(r.Reads.Slowest), fmt.Sprint(r.Reads.Errors))
				d.add("  writes", sys, fmtRPS(r.Writes.RPS), fmtDur(r.Writes.Mean), fmtDur(r.Writes.P50), fmtDur(r.Writes.P90), fmtDur(r.Writes.P99), fmtDur(r.Writes.P999), fmtDur(r.Writes.Slowest), fmt.Sprint(r.Writes.Errors))
			}
		}
	}
	b.WriteString(wrapTable(d.render(markdown), markdown))

	h("Memory, disk and recovery (ratio = synod/etcd: below 1 is better)")
	bs, ss := rep.system(baseSystem), rep.system(otherSystem)
	res := table{leftCols: 1, header: []string{"measure", "etcd", "synod", "ratio"}}
	// Peak RSS by role: the leader's, and the largest of the followers'.
	byRole := func(s *SystemResult, leader bool, end bool) int64 {
		var v int64
		if s == nil {
			return 0
		}
		for _, m := range s.Resources {
			if m.Leader != leader {
				continue
			}
			x := m.PeakRSSAfterWorkloads
			if end {
				x = m.PeakRSSEnd
			}
			v = max(v, x)
		}
		return v
	}
	for _, row := range []struct {
		label       string
		leader, end bool
	}{
		{"leader peak RSS after workloads", true, false},
		{"follower peak RSS after workloads (largest)", false, false},
		{"leader peak RSS at end", true, true},
		{"follower peak RSS at end (largest)", false, true},
	} {
		e, s := byRole(bs, row.leader, row.end), byRole(ss, row.leader, row.end)
		res.add(row.label, fmtMiB(e), fmtMiB(s), ratio(float64(s), float64(e)))
	}
	members := 0
	for _, s := range rep.Systems {
		members = max(members, len(s.Resources))
	}
	member := func(s *SystemResult, i int) MemberResources {
		if s == nil || i >= len(s.Resources) {
			return MemberResources{}
		}
		return s.Resources[i]
	}
	var ed, sd int64
	for i := range members {
		ed += member(bs, i).DataBytes
		sd += member(ss, i).DataBytes
	}
	res.add("data dirs at end (all members)", fmtMiB(ed), fmtMiB(sd), ratio(float64(sd), float64(ed)))
	er, sr := recovery(bs), recovery(ss)
	if er.Keys > 0 || sr.Keys > 0 {
		keys := max(er.Keys, sr.Keys)
		res.add(fmt.Sprintf("recovery after %d keys: restart to client port open", keys), fmtDur(er.PortOpen), fmtDur(sr.PortOpen), ratio(float64(sr.PortOpen), float64(er.PortOpen)))
		res.add(fmt.Sprintf("recovery after %d keys: restart to linearizable read", keys), fmtDur(er.Serving), fmtDur(sr.Serving), ratio(float64(sr.Serving), float64(er.Serving)))
		res.add("restarted member peak RSS", fmtMiB(er.RestartPeakRSS), fmtMiB(sr.RestartPeakRSS), ratio(float64(sr.RestartPeakRSS), float64(er.RestartPeakRSS)))
	}
	b.WriteString(wrapTable(res.render(markdown), markdown))

	if f := rep.Floor; f != nil {
		h("One-client put against its floor (fdatasync on leader and follower at once, plus two loopback round trips)")
		ft := table{leftCols: 1, header: []string{"measure", "p50", "p99", "avg"}}
		ft.add("fdatasync of 4 KiB, 2 writers at once", fmtDur(f.Sync.P50), fmtDur(f.Sync.P99), fmtDur(f.Sync.Mean))
		ft.add("loopback round trip", fmtDur(f.RoundTrip.P50), fmtDur(f.RoundTrip.P99), fmtDur(f.RoundTrip.Mean))
		ft.add("floor (fdatasync p50 + 2 round trips)", fmtDur(f.Estimate), "", "")
		for _, n := range names {
			r := firstNonNil(base[n], other[n])
			if r == nil || r.Workload.Kind != kindPut || r.Workload.Clients != 1 {
				continue
			}
			for _, sys := range []string{baseSystem, otherSystem} {
				st := stats(base[n])
				if sys == otherSystem {
					st = stats(other[n])
				}
				if st.Requests > 0 {
					ft.add(fmt.Sprintf("%s %s: avg is %s the floor", sys, n, ratio(float64(st.Mean), float64(f.Estimate))), fmtDur(st.P50), fmtDur(st.P99), fmtDur(st.Mean))
				}
			}
		}
		b.WriteString(wrapTable(ft.render(markdown), markdown))
	}

	if rt := renderRounds(rep, markdown); rt != "" {
		h(fmt.Sprintf("Ratio synod/etcd in each round (the tables above give each measure's median of %d rounds)", rep.Rounds))
		b.WriteString(wrapTable(rt, markdown))
	}

	var failures []string
	runs := rep.Runs
	if len(runs) == 0 {
		runs = rep.Systems
	}
	for _, s := range runs {
		name := s.Name
		if rep.Rounds > 1 {
			name = fmt.Sprintf("%s (round %d)", s.Name, s.Round)
		}
		if s.Error != "" {
			failures = append(failures, name+": "+s.Error)
			if len(s.Logs) > 0 {
				failures = append(failures, name+": members' logs saved in "+filepath.Dir(s.Logs[0]))
			}
		}
		for _, r := range append(append([]*Result{}, s.Results...), recoveryFill(s)...) {
			if len(r.ErrorLog) == 0 {
				continue
			}
			msgs := make([]string, 0, len(r.ErrorLog))
			for m, n := range r.ErrorLog {
				msgs = append(msgs, fmt.Sprintf("%s %s: %dx %s", name, r.Workload.Name, n, m))
			}
			sort.Strings(msgs)
			failures = append(failures, msgs...)
		}
	}
	if len(failures) > 0 {
		h("Failures and errors")
		b.WriteString(wrapTable(strings.Join(failures, "\n")+"\n", markdown))
	}
	return b.String()
}

func recoveryFill(s *SystemResult) []*Result {
	if s.Recovery != nil && s.Recovery.Fill != nil {
		return []*Result{s.Recovery.Fill}
	}
	return nil
}

func recovery(s *SystemResult) RecoveryResult {
	if s == nil || s.Recovery == nil {
		return RecoveryResult{}
	}
	return *s.Recovery
}

func firstNonNil(rs ...*Result) *Result {
	for _, r := range rs {
		if r != nil {
			return r
		}
	}
	return nil
}

func errCount(r *Result) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprint(r.Stats.Errors)
}

// wrapTable leaves markdown tables as they are and indents text ones.
func wrapTable(s string, markdown bool) string {
	if markdown {
		return s
	}
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

// renderMarkdown is the whole report file.
func renderMarkdown(rep *Report, svgName string) string {
	var b strings.Builder
	b.WriteString("# synod vs etcd: KV benchmark\n\n")
	mode := "full"
	if rep.Quick {
		mode = "quick (smoke test: small totals, the numbers mean little)"
	}
	fmt.Fprintf(&b, "- run: %s, %s, mode %s\n", rep.Started.Format(time.RFC3339), rep.Finished.Sub(rep.Started).Round(time.Second), mode)
	fmt.Fprintf(&b, "- host: %d CPUs (%s), %s, %s, %s; data on %s\n", rep.Host.CPUs, rep.Host.CPUModel, rep.Host.MemTotal, rep.Host.OS, rep.Host.GoVersion, rep.Host.DataFS)
	fmt.Fprintf(&b, "- load average at start %s, at end %s (the client runs on the same machine as the %d members)\n", rep.Host.LoadStart, rep.Host.LoadEnd, rep.Cluster.Size)
	fmt.Fprintf(&b, "- cluster: %d members on loopback, same flags for both: --snapshot-count=%d --heartbeat-interval=%d --election-timeout=%d --logger=zap --log-level=%s, fsync on\n",
		rep.Cluster.Size, rep.Cluster.SnapshotCount, rep.Cluster.HeartbeatInterval, rep.Cluster.ElectionTimeout, rep.Cluster.LogLevel)
	fmt.Fprintf(&b, "- clients connect to: %s\n", rep.Target)
	if rep.Rounds > 1 {
		fmt.Fprintf(&b, "- %d rounds, each on fresh clusters, alternating which system goes first; every figure is the median round (per workload by throughput, recovery by time to serve, memory per role)\n", rep.Rounds)
	}
	if rep.Host.SynodCommit != "" {
		fmt.Fprintf(&b, "- synod tree: %s\n", rep.Host.SynodCommit)
	}
	for _, s := range rep.Systems {
		keys := make([]string, 0, len(s.Build))
		for k := range s.Build {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+" "+s.Build[k])
		}
		fmt.Fprintf(&b, "- %s build: %s\n", s.Name, strings.Join(parts, ", "))
	}
	b.WriteString(renderReport(rep, true))
	if svgName != "" {
		fmt.Fprintf(&b, "\n## Put throughput and p99 latency by client count\n\n![put throughput and p99 latency](%s)\n", svgName)
	}
	b.WriteString("\n## Workloads\n\n")
	for _, w := range rep.Workloads {
		fmt.Fprintf(&b, "- `%s`: `%s`\n", w.Name, w.describe())
	}
	for _, s := range rep.Systems {
		if s.Recovery != nil && s.Recovery.Fill != nil {
			w := s.Recovery.Fill.Workload
			fmt.Fprintf(&b, "- `%s`: `%s`, then kill -9 of one %s, restart, and time to its first linearizable read through its own endpoint\n",
				w.Name, w.describe(), map[bool]string{true: "leader", false: "follower"}[s.Recovery.WasLeader])
			break
		}
	}
	return b.String()
}

// chartPanels builds the put throughput and p99 panels.
func chartPanels(rep *Report) []panel {
	colors := map[string]string{baseSystem: "#1f77b4", otherSystem: "#d62728"}
	thr := panel{Title: "put throughput", XLabel: "clients (log scale)", YLabel: "requests/sec", LogX: true}
	lat := panel{Title: "put p99 latency", XLabel: "clients (log scale)", YLabel: "p99 latency, ms (log scale)", LogX: true, LogY: true}
	for _, name := range []string{baseSystem, otherSystem} {
		s := rep.system(name)
		if s == nil {
			continue
		}
		ts := series{Name: name, Color: colors[name]}
		ls := series{Name: name, Color: colors[name]}
		for _, w := range rep.Workloads {
			r := s.result(w.Name)
			if w.Kind != kindPut || r == nil || r.Stats.Requests == 0 {
				continue
			}
			ts.Points = append(ts.Points, point{X: float64(w.Clients), Y: r.Stats.RPS})
			ls.Points = append(ls.Points, point{X: float64(w.Clients), Y: float64(r.Stats.P99) / float64(time.Millisecond)})
		}
		thr.Series = append(thr.Series, ts)
		lat.Series = append(lat.Series, ls)
	}
	return []panel{thr, lat}
}

// reportBase is the file name, without extension, of a run's outputs.
func reportBase(rep *Report) string {
	base := "kv-" + rep.Started.Format("20060102-150405")
	if rep.Quick {
		base += "-quick"
	}
	return base
}

// writeReport writes the markdown report, the JSON numbers and the SVG
// chart into dir and returns their paths.
func writeReport(rep *Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := reportBase(rep)
	svgPath := filepath.Join(dir, base+".svg")
	f, err := os.Create(svgPath)
	if err != nil {
		return nil, err
	}
	title := "synod vs etcd, 3 members on one machine"
	if rep.Quick {
		title += " (quick mode: smoke test)"
	}
	err = writeSVG(f, title, chartPanels(rep))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	mdPath := filepath.Join(dir, base+".md")
	if err := os.WriteFile(mdPath, []byte(renderMarkdown(rep, base+".svg")), 0o644); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	jsonPath := filepath.Join(dir, base+".json")
	if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	return []string{mdPath, jsonPath, svgPath}, nil
}

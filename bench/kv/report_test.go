package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fakeReport() *Report {
	w1 := Workload{Name: "put-c1", Kind: kindPut, Conns: 1, Clients: 1, Total: 10, KeySize: 8, ValSize: 256, KeySpaceSize: 10}
	w2 := Workload{Name: "put-c10", Kind: kindPut, Conns: 1, Clients: 10, Total: 10, KeySize: 8, ValSize: 256, KeySpaceSize: 10}
	mk := func(w Workload, rps float64, p99 time.Duration) *Result {
		return &Result{Workload: w, Stats: Stats{Requests: 10, RPS: rps, Mean: p99 / 2, P50: p99 / 2, P99: p99, Slowest: p99}}
	}
	return &Report{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Finished: time.Date(2026, 1, 2, 3, 9, 5, 0, time.UTC),
		Quick: true, Target: "leader", Cluster: ClusterOptions{Size: 3, SnapshotCount: 10000, HeartbeatInterval: 100, ElectionTimeout: 1000, LogLevel: "info"},
		Workloads: []Workload{w1, w2},
		Systems: []*SystemResult{
			{Name: "etcd", Results: []*Result{mk(w1, 400, 4*time.Millisecond), mk(w2, 2000, 8*time.Millisecond)},
				Resources: []MemberResources{{Name: "etcd-1", Leader: true, PeakRSSAfterWorkloads: 100 << 20, PeakRSSEnd: 200 << 20, DataBytes: 64 << 20}},
				Recovery:  &RecoveryResult{Keys: 1000, PortOpen: 300 * time.Millisecond, Serving: 500 * time.Millisecond}},
			{Name: "synod", Results: []*Result{mk(w1, 800, 2*time.Millisecond)}, Error: "start: boom",
				Resources: []MemberResources{{Name: "synod-1", Leader: true, PeakRSSAfterWorkloads: 50 << 20}}},
		},
	}
}

func TestRenderReport(t *testing.T) {
	rep := fakeReport()
	txt := renderReport(rep, false)
	for _, want := range []string{"put-c1", "400", "800", "2.00x", "0.50x", "start: boom", "100 MiB", "leader peak RSS after workloads", "restart to linearizable read"} {
		if !strings.Contains(txt, want) {
			t.Errorf("text report lacks %q:\n%s", want, txt)
		}
	}
	// A workload the second system did not run shows "-", not a ratio.
	for _, line := range strings.Split(txt, "\n") {
		if strings.Contains(line, "put-c10 ") && strings.Contains(line, "1/10") && strings.Contains(line, "x") {
			t.Errorf("ratio for a missing result: %s", line)
		}
	}
	md := renderMarkdown(rep, "chart.svg")
	if !strings.Contains(md, "| put-c1 ") || !strings.Contains(md, "![put throughput") || !strings.Contains(md, "--: |") {
		t.Errorf("markdown:\n%s", md)
	}
}

// TestFloorInReport checks that the one-client put rows are set against
// the floor: etcd's put-c1 averages 2ms, synod's 1ms, the floor is 0.5ms.
func TestFloorInReport(t *testing.T) {
	rep := fakeReport()
	rep.Floor = &Floor{Sync: Stats{P50: 300 * time.Microsecond, P99: time.Millisecond, Mean: 400 * time.Microsecond},
		RoundTrip: Stats{P50: 100 * time.Microsecond}, Estimate: 500 * time.Microsecond}
	txt := renderReport(rep, false)
	for _, want := range []string{"floor (fdatasync p50 + 2 round trips)", "etcd put-c1: avg is 4.00x the floor", "synod put-c1: avg is 2.00x the floor"} {
		if !strings.Contains(txt, want) {
			t.Errorf("report lacks %q:\n%s", want, txt)
		}
	}
	if strings.Contains(txt, "put-c10: avg") {
		t.Errorf("a put with 10 clients is set against the one-client floor:\n%s", txt)
	}
}

// TestMeasureFloor measures the floor on a temporary directory: every
// sync and round trip is timed, and the estimate is their sum.
func TestMeasureFloor(t *testing.T) {
	f, err := measureFloor(t.TempDir(), 20)
	if err != nil {
		t.Fatal(err)
	}
	if f.Sync.Requests != 40 || f.RoundTrip.Requests != 80 {
		t.Fatalf("timed %d syncs and %d round trips, want 40 and 80", f.Sync.Requests, f.RoundTrip.Requests)
	}
	if f.Sync.P50 <= 0 || f.RoundTrip.P50 <= 0 || f.Estimate != f.Sync.P50+2*f.RoundTrip.P50 {
		t.Fatalf("floor %+v", f)
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	files, err := writeReport(fakeReport(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("files %v", files)
	}
	b, err := os.ReadFile(filepath.Join(dir, "kv-20260102-030405-quick.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Systems[0].Results[0].Stats.RPS != 400 || back.Systems[0].Recovery.Serving != 500*time.Millisecond {
		t.Errorf("round trip: %+v", back.Systems[0])
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "kv-20260102-030405-quick.svg"))
	checkXML(t, string(svg))
}

func TestTableRender(t *testing.T) {
	tb := table{leftCols: 1, header: []string{"name", "value"}}
	tb.add("a", "1")
	tb.add("longer", "12345")
	got := tb.render(false)
	want := "name    value\n-------------\na           1\nlonger  12345\n"
	if got != want {
		t.Errorf("text:\n%q\nwant\n%q", got, want)
	}
	md := tb.render(true)
	if !strings.HasPrefix(md, "| name   | value |\n| ------ | ----: |\n") {
		t.Errorf("markdown:\n%s", md)
	}
}

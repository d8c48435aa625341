package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func durs(vs ...int) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v)
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	one := durs(7)
	for _, p := range []float64{0.1, 50, 99, 99.9, 100} {
		if got := percentile(one, p); got != 7 {
			t.Errorf("percentile([7], %v) = %v, want 7", p, got)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	// 1..100: the p-th percentile of the nearest-rank method is p itself.
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {1, 1}, {10, 10}, {50, 50}, {50.5, 51}, {90, 90}, {99, 99}, {99.9, 100}, {100, 100}} {
		if got := percentile(hundred, c.p); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	// 1..1000: 99.9% of 1000 is exactly rank 999, not 1000.
	var thousand []time.Duration
	for i := 1; i <= 1000; i++ {
		thousand = append(thousand, time.Duration(i))
	}
	if got := percentile(thousand, 99.9); got != 999 {
		t.Errorf("p99.9 of 1..1000 = %v, want 999", got)
	}
	if got := percentile(thousand, 99); got != 990 {
		t.Errorf("p99 of 1..1000 = %v, want 990", got)
	}
	// Four values: p50 is the 2nd, p75 the 3rd, p76 the 4th.
	four := durs(10, 20, 30, 40)
	for p, want := range map[float64]time.Duration{25: 10, 50: 20, 75: 30, 76: 40} {
		if got := percentile(four, p); got != want {
			t.Errorf("percentile(%v, %v) = %v, want %v", four, p, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	lat := durs(40, 10, int(failed), 30, 20, int(failed))
	s := summarize(lat, 2*time.Second)
	if s.Requests != 4 || s.Errors != 2 {
		t.Fatalf("requests %d errors %d, want 4 and 2", s.Requests, s.Errors)
	}
	if s.RPS != 2 {
		t.Errorf("RPS %v, want 2 (4 ok in 2s)", s.RPS)
	}
	if s.Fastest != 10 || s.Slowest != 40 || s.Mean != 25 || s.P50 != 20 || s.P99 != 40 {
		t.Errorf("got %+v", s)
	}
	// Population standard deviation of 10,20,30,40 is sqrt(125) = 11.18.
	if s.Stddev != 11 {
		t.Errorf("stddev %v, want 11", s.Stddev)
	}

	empty := summarize(durs(int(failed)), time.Second)
	if empty.Requests != 0 || empty.Errors != 1 || empty.P99 != 0 || empty.RPS != 0 {
		t.Errorf("all failed: %+v", empty)
	}
	if z := summarize(nil, 0); z.RPS != 0 || z.Requests != 0 {
		t.Errorf("nothing: %+v", z)
	}
}

func TestSummarizeMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 10007)
	for i := range lat {
		lat[i] = time.Duration(r.IntN(1e6)) + 1
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	s := summarize(lat, time.Second)
	if s.Fastest != sorted[0] || s.Slowest != sorted[len(sorted)-1] {
		t.Errorf("min/max wrong")
	}
	// rank = ceil(0.9 * 10007) = 9007 (1-based)
	if s.P90 != sorted[9006] {
		t.Errorf("p90 = %v, want %v", s.P90, sorted[9006])
	}
	if !(s.P10 <= s.P25 && s.P25 <= s.P50 && s.P50 <= s.P75 && s.P75 <= s.P90 && s.P90 <= s.P95 && s.P95 <= s.P99 && s.P99 <= s.P999 && s.P999 <= s.Slowest) {
		t.Errorf("percentiles not monotonic: %+v", s)
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "-",
		250 * time.Microsecond:  "250µs",
		1500 * time.Microsecond: "1.50ms",
		42 * time.Millisecond:   "42.0ms",
		2500 * time.Millisecond: "2.50s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

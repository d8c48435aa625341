package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// failed marks a request that returned an error in a latency slice. Real
// latencies are never negative.
const failed time.Duration = -1

// Stats summarises the latencies of one run (or of one kind of request
// within a run). Durations are marshalled as nanoseconds.
type Stats struct {
	Requests int           `json:"requests"` // answered without error
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	RPS      float64       `json:"requests_per_sec"` // Requests / Elapsed
	Fastest  time.Duration `json:"fastest_ns"`
	Mean     time.Duration `json:"mean_ns"`
	Stddev   time.Duration `json:"stddev_ns"`
	P10      time.Duration `json:"p10_ns"`
	P25      time.Duration `json:"p25_ns"`
	P50      time.Duration `json:"p50_ns"`
	P75      time.Duration `json:"p75_ns"`
	P90      time.Duration `json:"p90_ns"`
	P95      time.Duration `json:"p95_ns"`
	P99      time.Duration `json:"p99_ns"`
	P999     time.Duration `json:"p99_9_ns"`
	Slowest  time.Duration `json:"slowest_ns"`
}

// summarize computes the statistics of lat over a run that took elapsed.
// Entries equal to failed count as errors; the others are sorted in place
// (they are moved to the front of lat), so the caller must not rely on
// the order of lat afterwards.
func summarize(lat []time.Duration, elapsed time.Duration) Stats {
	ok := lat[:0]
	errs := 0
	for _, d := range lat {
		if d == failed {
			errs++
			continue
		}
		ok = append(ok, d)
	}
	s := Stats{Requests: len(ok), Errors: errs, Elapsed: elapsed}
	if elapsed > 0 {
		s.RPS = float64(len(ok)) / elapsed.Seconds()
	}
	if len(ok) == 0 {
		return s
	}
	slices.Sort(ok)
	var sum float64
	for _, d := range ok {
		sum += float64(d)
	}
	mean := sum / float64(len(ok))
	var sq float64
	for _, d := range ok {
		x := float64(d) - mean
		sq += x * x
	}
	s.Fastest = ok[0]
	s.Slowest = ok[len(ok)-1]
	s.Mean = time.Duration(math.Round(mean))
	s.Stddev = time.Duration(math.Round(math.Sqrt(sq / float64(len(ok)))))
	s.P10 = percentile(ok, 10)
	s.P25 = percentile(ok, 25)
	s.P50 = percentile(ok, 50)
	s.P75 = percentile(ok, 75)
	s.P90 = percentile(ok, 90)
	s.P95 = percentile(ok, 95)
	s.P99 = percentile(ok, 99)
	s.P999 = percentile(ok, 99.9)
	return s
}

// percentile returns the p-th percentile (0 < p <= 100) of the sorted
// slice by the nearest-rank method: the smallest value such that at least
// p percent of the values are less than or equal to it. It returns 0 for
// an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	// The small epsilon keeps exact products such as 99.9% of 1000 from
	// rounding up to the next rank through floating-point error.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// fmtDur prints a latency with a unit that suits its size.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// String prints the summary in a few lines, indented.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  total %s, %.1f requests/sec, %d ok, %d errors\n", s.Elapsed.Round(time.Millisecond), s.RPS, s.Requests, s.Errors)
	if s.Requests > 0 {
		fmt.Fprintf(&b, "  latency: fastest %s  avg %s  stddev %s  slowest %s\n", fmtDur(s.Fastest), fmtDur(s.Mean), fmtDur(s.Stddev), fmtDur(s.Slowest))
		fmt.Fprintf(&b, "           p10 %s  p25 %s  p50 %s  p75 %s  p90 %s  p95 %s  p99 %s  p99.9 %s\n",
			fmtDur(s.P10), fmtDur(s.P25), fmtDur(s.P50), fmtDur(s.P75), fmtDur(s.P90), fmtDur(s.P95), fmtDur(s.P99), fmtDur(s.P999))
	}
	return b.String()
}

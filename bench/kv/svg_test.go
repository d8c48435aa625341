package main

import (
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// checkXML fails unless s is well-formed XML.
func checkXML(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, s)
		}
	}
}

func TestWriteSVG(t *testing.T) {
	panels := []panel{
		{Title: "put throughput", XLabel: "clients", YLabel: "req/s", LogX: true, Series: []series{
			{Name: "etcd", Color: "#1f77b4", Points: []point{{1, 400}, {10, 3000}, {100, 12000}, {1000, 25000}}},
			{Name: "synod <&>", Color: "#d62728", Points: []point{{1, 500}, {10, 3500}, {100, 15000}, {1000, 30000}}},
		}},
		{Title: "p99", XLabel: "clients", YLabel: "ms", LogX: true, LogY: true, Series: []series{
			{Name: "etcd", Color: "#1f77b4", Points: []point{{1, 2.5}, {10, 6}, {100, 20}, {1000, 110}}},
			{Name: "synod <&>", Color: "#d62728"},
		}},
	}
	var b strings.Builder
	if err := writeSVG(&b, `title "quoted" & <tagged>`, panels); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	checkXML(t, s)
	for _, want := range []string{"<svg", "put throughput", "synod &lt;&amp;&gt;", "<polyline", "25k"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Errorf("SVG has NaN or Inf coordinates:\n%s", s)
	}
	if strings.Contains(s, "(no data)") {
		t.Errorf("legend says no data for a series with points in the first panel")
	}
	b.Reset()
	panels[0].Series[1].Points = nil
	if err := writeSVG(&b, "t", panels); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "synod &lt;&amp;&gt; (no data)") {
		t.Errorf("legend does not mark the series without points")
	}
}

func TestWriteSVGDegenerate(t *testing.T) {
	cases := map[string][]panel{
		"no panels":   nil,
		"no series":   {{Title: "empty"}},
		"one point":   {{LogX: true, LogY: true, Series: []series{{Name: "a", Color: "red", Points: []point{{1, 1}}}}}},
		"zeros":       {{LogX: true, LogY: true, Series: []series{{Name: "a", Color: "red", Points: []point{{0, 0}, {10, 0}}}}}},
		"flat linear": {{Series: []series{{Name: "a", Color: "red", Points: []point{{1, 5}, {2, 5}}}}}},
		"nan":         {{Series: []series{{Name: "a", Color: "red", Points: []point{{1, math.NaN()}, {2, 3}}}}}},
	}
	for name, panels := range cases {
		var b strings.Builder
		if err := writeSVG(&b, name, panels); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkXML(t, b.String())
		if name != "nan" && strings.Contains(b.String(), "NaN") {
			t.Errorf("%s: NaN in output", name)
		}
	}
}

func TestAxisTicks(t *testing.T) {
	a := newAxis([]float64{0, 23000}, false, false, 0, 100)
	if a.ticks[0] != 0 || a.ticks[len(a.ticks)-1] < 23000 {
		t.Errorf("linear ticks %v do not cover [0, 23000]", a.ticks)
	}
	if a.pos(a.lo) != 0 || a.pos(a.hi) != 100 {
		t.Errorf("linear axis maps its ends to %v and %v", a.pos(a.lo), a.pos(a.hi))
	}
	l := newAxis([]float64{0.7, 120}, true, false, 0, 100)
	want := []float64{0.1, 1, 10, 100, 1000}
	if len(l.ticks) != len(want) {
		t.Fatalf("log ticks %v, want %v", l.ticks, want)
	}
	for i := range want {
		if math.Abs(l.ticks[i]-want[i]) > 1e-9 {
			t.Fatalf("log ticks %v, want %v", l.ticks, want)
		}
	}
	x := newAxis([]float64{1000, 1, 10, 100, 10}, true, true, 0, 100)
	if got := x.tickText; strings.Join(got, ",") != "1,10,100,1k" {
		t.Errorf("data ticks %v", got)
	}
	if !(x.pos(1) < x.pos(10) && x.pos(100) < x.pos(1000) && x.pos(1) > 0 && x.pos(1000) < 100) {
		t.Errorf("data axis positions wrong")
	}
}

func TestNiceStepAndFmtNum(t *testing.T) {
	for _, c := range []struct{ span, want float64 }{{10, 2}, {23000, 5000}, {1, 0.2}, {0, 1}} {
		if got := niceStep(c.span, 5); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("niceStep(%v) = %v, want %v", c.span, got, c.want)
		}
	}
	for v, want := range map[float64]string{0: "0", 5: "5", 2.5: "2.5", 1500: "1.5k", 20000: "20k", 1250000: "1.25M", 0.25: "0.25"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}

package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// point is one measurement in a chart.
type point struct{ X, Y float64 }

// series is one line of a chart.
type series struct {
	Name   string
	Color  string
	Points []point
}

// panel is one chart: axes, grid and lines.
type panel struct {
	Title  string
	XLabel string
	YLabel string
	LogX   bool
	LogY   bool
	Series []series
}

// Chart geometry, in SVG user units.
const (
	panelW     = 480
	panelH     = 360
	plotLeft   = 70 // inside a panel
	plotRight  = 20
	plotTop    = 40
	plotBottom = 60
	titleH     = 36
	legendH    = 34
)

// esc escapes text for SVG.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// fmtNum prints an axis or tooltip number compactly: 1.5k, 20k, 0.25.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trimZeros(strconv.FormatFloat(v/1e6, 'f', 2, 64)) + "M"
	case a >= 1e3:
		return trimZeros(strconv.FormatFloat(v/1e3, 'f', 2, 64)) + "k"
	case a >= 1 || a == 0:
		return trimZeros(strconv.FormatFloat(v, 'f', 2, 64))
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// niceStep returns a step of the form 1, 2 or 5 times a power of ten that
// divides span into about n parts.
func niceStep(span float64, n int) float64 {
	if span <= 0 || n < 1 || math.IsInf(span, 0) || math.IsNaN(span) {
		return 1
	}
	rough := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(rough)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= rough {
			return m * mag
		}
	}
	return 10 * mag
}

// axis maps data values to pixels along one dimension.
type axis struct {
	log      bool
	lo, hi   float64 // data range (log10 of it if log)
	p0, p1   float64 // pixel range
	ticks    []float64
	tickText []string
}

func (a *axis) pos(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	if a.hi == a.lo {
		return (a.p0 + a.p1) / 2
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

// newAxis fits an axis to the values. A log axis ignores values <= 0.
// dataTicks, when set, puts the ticks on the data values themselves (for
// client counts); otherwise ticks are round numbers (or powers of ten).
func newAxis(vals []float64, log, dataTicks bool, p0, p1 float64) axis {
	a := axis{log: log, p0: p0, p1: p1}
	var vs []float64
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) || (log && v <= 0) {
			continue
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		vs = []float64{1}
	}
	lo, hi := slices.Min(vs), slices.Max(vs)
	switch {
	case log && dataTicks:
		a.lo, a.hi = math.Log10(lo), math.Log10(hi)
		pad := math.Max((a.hi-a.lo)*0.06, 0.1)
		a.lo, a.hi = a.lo-pad, a.hi+pad
		slices.Sort(vs)
		a.ticks = slices.Compact(vs)
	case log:
		a.lo, a.hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if a.hi == a.lo {
			a.hi++
		}
		for e := a.lo; e <= a.hi; e++ {
			a.ticks = append(a.ticks, math.Pow(10, e))
		}
	default:
		lo = math.Min(lo, 0)
		if hi <= lo {
			hi = lo + 1
		}
		step := niceStep(hi-lo, 5)
		a.lo, a.hi = math.Floor(lo/step)*step, math.Ceil(hi*1.05/step)*step
		for t := a.lo; t <= a.hi+step/2; t += step {
			a.ticks = append(a.ticks, t)
		}
	}
	for _, t := range a.ticks {
		a.tickText = append(a.tickText, fmtNum(t))
	}
	return a
}

// writeSVG draws the panels side by side under a title, with one legend
// for all of them (taken from the first panel's series).
func writeSVG(w io.Writer, title string, panels []panel) error {
	width := max(1, len(panels)) * panelW
	height := titleH + panelH + legendH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" text-anchor="middle" font-size="16" font-weight="bold">%s</text>`+"\n", width/2, esc(title))
	for i, p := range panels {
		drawPanel(&b, p, float64(i*panelW), titleH)
	}
	if len(panels) > 0 {
		hasData := map[string]bool{}
		for _, p := range panels {
			for _, s := range p.Series {
				hasData[s.Name] = hasData[s.Name] || len(s.Points) > 0
			}
		}
		x := 20.0
		y := float64(titleH + panelH + 20)
		for _, s := range panels[0].Series {
			name := s.Name
			if !hasData[s.Name] {
				name += " (no data)"
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"/>`+"\n", x, y-4, x+24, y-4, esc(s.Color))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x+12, y-4, esc(s.Color))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+30, y, esc(name))
			x += 40 + 8*float64(len([]rune(name)))
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func drawPanel(b *strings.Builder, p panel, ox, oy float64) {
	left, right := ox+plotLeft, ox+panelW-plotRight
	top, bottom := oy+plotTop, oy+panelH-plotBottom
	var xs, ys []float64
	for _, s := range p.Series {
		for _, pt := range s.Points {
			xs = append(xs, pt.X)
			ys = append(ys, pt.Y)
		}
	}
	xa := newAxis(xs, p.LogX, true, left, right)
	ya := newAxis(ys, p.LogY, false, bottom, top)

	fmt.Fprintf(b, `<g><text x="%.1f" y="%.1f" text-anchor="middle" font-size="14">%s</text>`+"\n", (left+right)/2, oy+20, esc(p.Title))
	// Grid and ticks.
	for i, t := range ya.ticks {
		y := ya.pos(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", left, y, right, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, esc(ya.tickText[i]))
	}
	for i, t := range xa.ticks {
		x := xa.pos(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, bottom+16, esc(xa.tickText[i]))
	}
	// Axes and labels.
	fmt.Fprintf(b, `<polyline points="%.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="none" stroke="#333"/>`+"\n", left, top, left, bottom, right, bottom)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (left+right)/2, bottom+40, esc(p.XLabel))
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		ox+16, (top+bottom)/2, ox+16, (top+bottom)/2, esc(p.YLabel))
	// Lines and points.
	for _, s := range p.Series {
		var pts []string
		for _, pt := range s.Points {
			if (p.LogX && pt.X <= 0) || (p.LogY && pt.Y <= 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xa.pos(pt.X), ya.pos(pt.Y)))
		}
		if len(pts) > 1 {
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5"/>`+"\n", strings.Join(pts, " "), esc(s.Color))
		}
		for _, pt := range s.Points {
			if (p.LogX && pt.X <= 0) || (p.LogY && pt.Y <= 0) {
				continue
			}
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s at %s</title></circle>`+"\n",
				xa.pos(pt.X), ya.pos(pt.Y), esc(s.Color), esc(s.Name), esc(fmtNum(pt.Y)), esc(fmtNum(pt.X)))
		}
	}
	b.WriteString("</g>\n")
}

package main

import (
	"strings"
	"testing"
)

func TestKeyTable(t *testing.T) {
	k := newKeyTable(1000, 8)
	if got := k.key(0); got != "00000000" {
		t.Errorf("key 0 = %q", got)
	}
	if got := k.key(999); got != "00000999" {
		t.Errorf("key 999 = %q", got)
	}
	seen := map[string]bool{}
	for i := range 1000 {
		seen[k.key(i)] = true
	}
	if len(seen) != 1000 {
		t.Errorf("%d distinct keys, want 1000", len(seen))
	}
	if n := testing.AllocsPerRun(100, func() { _ = k.key(517) }); n != 0 {
		t.Errorf("key() allocates %v times", n)
	}
}

func TestValuePool(t *testing.T) {
	p := newValuePool(256, 1)
	seen := map[string]bool{}
	for n := range 1000 {
		v := p.value(n)
		if len(v) != 256 {
			t.Fatalf("value %d has %d bytes", n, len(v))
		}
		seen[v] = true
	}
	if len(seen) < 990 {
		t.Errorf("only %d distinct values of 1000", len(seen))
	}
	if q := newValuePool(256, 1); q.value(42) != p.value(42) {
		t.Errorf("values not deterministic")
	}
	if n := testing.AllocsPerRun(100, func() { _ = p.value(12345) }); n != 0 {
		t.Errorf("value() allocates %v times", n)
	}
	if z := newValuePool(0, 1); z.value(7) != "" {
		t.Errorf("zero-size value not empty")
	}
}

func TestIsWriteSlot(t *testing.T) {
	count := func(share float64, n int) int {
		w := 0
		for i := range n {
			if isWriteSlot(i, share) {
				w++
			}
		}
		return w
	}
	for _, c := range []struct {
		ratio float64
		want  int
	}{{0, 1000}, {1, 500}, {3, 250}, {9, 100}} {
		if got := count(1/(1+c.ratio), 1000); got != c.want {
			t.Errorf("rw-ratio %v: %d writes of 1000, want %d", c.ratio, got, c.want)
		}
	}
	// With ratio 1, reads and writes alternate.
	var b strings.Builder
	for i := range 6 {
		if isWriteSlot(i, 0.5) {
			b.WriteByte('w')
		} else {
			b.WriteByte('r')
		}
	}
	if b.String() != "rwrwrw" {
		t.Errorf("pattern %s", b.String())
	}
}

func TestWorkloadValidate(t *testing.T) {
	ok := Workload{Name: "p", Kind: kindPut, Conns: 1, Clients: 1, Total: 1, KeySize: 8, ValSize: 0, KeySpaceSize: 1}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(w *Workload){
		func(w *Workload) { w.Kind = "delete" },
		func(w *Workload) { w.Total = 0 },
		func(w *Workload) { w.Conns = 2 },
		func(w *Workload) { w.KeySize = 0 },
		func(w *Workload) { w.KeySpaceSize = 0 },
		func(w *Workload) { w.KeySpaceSize = 1000; w.KeySize = 2 },
		func(w *Workload) { w.Kind = kindRange },
		func(w *Workload) { w.Consistency = "q" },
	}
	for i, f := range bad {
		w := ok
		f(&w)
		if err := w.validate(); err == nil {
			t.Errorf("case %d: %+v validated", i, w)
		}
	}
	// A key space of exactly 10^size keys fits: 0 .. 10^size-1.
	w := ok
	w.KeySize, w.KeySpaceSize = 2, 100
	if err := w.validate(); err != nil {
		t.Errorf("100 keys of 2 digits: %v", err)
	}
}

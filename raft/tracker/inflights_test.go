package tracker

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// contents returns the (index, bytes) pairs in flight, oldest first, read
// straight from the ring so that tests see where wrap-around put them.
func contents(in *Inflights) []inflight {
	var out []inflight
	for i := range in.count {
		out = append(out, in.buf[(in.start+i)%in.size])
	}
	return out
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s did not panic", what)
		}
	}()
	f()
}

// TestInflightsFullByCount checks that a window without a byte limit fills
// after exactly size messages, that Add on a full window panics, and that
// freeing one message reopens it.
func TestInflightsFullByCount(t *testing.T) {
	in := NewInflights(4, 0)
	for i := range uint64(4) {
		if in.Full() {
			t.Fatalf("full after %d of 4 messages", i)
		}
		in.Add(10+i, 1000)
	}
	if !in.Full() || in.Count() != 4 || in.Bytes() != 4000 {
		t.Fatalf("after 4 adds: full=%v count=%d bytes=%d", in.Full(), in.Count(), in.Bytes())
	}
	mustPanic(t, "Add on a full window", func() { in.Add(20, 1) })
	if in.Count() != 4 || in.Bytes() != 4000 {
		t.Fatalf("a refused Add changed the window: count=%d bytes=%d", in.Count(), in.Bytes())
	}
	in.FreeLE(10)
	if in.Full() || in.Count() != 3 || in.Bytes() != 3000 {
		t.Fatalf("after freeing one: full=%v count=%d bytes=%d", in.Full(), in.Count(), in.Bytes())
	}
}

// TestInflightsFullByBytes checks the byte limit: the window is full once
// the bytes in flight reach maxBytes (even with few messages), a single
// message larger than the limit is accepted into an empty window, and
// freeing bytes reopens it.
func TestInflightsFullByBytes(t *testing.T) {
	in := NewInflights(10, 100)
	in.Add(1, 40)
	in.Add(2, 40)
	if in.Full() {
		t.Fatalf("full at 80 of 100 bytes")
	}
	in.Add(3, 20)
	if !in.Full() || in.Bytes() != 100 {
		t.Fatalf("at exactly 100 bytes: full=%v bytes=%d", in.Full(), in.Bytes())
	}
	in.FreeLE(1)
	if in.Full() || in.Bytes() != 60 {
		t.Fatalf("after freeing 40 bytes: full=%v bytes=%d", in.Full(), in.Bytes())
	}
	in.Add(4, 500) // overshooting is allowed; the window is then full
	if !in.Full() || in.Bytes() != 560 || in.Count() != 3 {
		t.Fatalf("after overshoot: full=%v bytes=%d count=%d", in.Full(), in.Bytes(), in.Count())
	}
	mustPanic(t, "Add on a byte-full window", func() { in.Add(5, 0) })

	big := NewInflights(3, 10)
	big.Add(1, 1000)
	if !big.Full() || big.Count() != 1 {
		t.Fatalf("an oversized message should be accepted alone and fill the window")
	}

	// Zero-byte messages are limited by count only.
	zero := NewInflights(3, 10)
	for i := range uint64(3) {
		zero.Add(i+1, 0)
	}
	if !zero.Full() || zero.Bytes() != 0 {
		t.Fatalf("three empty messages in a window of 3: full=%v bytes=%d", zero.Full(), zero.Bytes())
	}
}

// TestInflightsGrowth checks that the ring buffer starts empty and grows by
// doubling, capped at the window size, only when needed.
func TestInflightsGrowth(t *testing.T) {
	in := NewInflights(10, 0)
	if len(in.buf) != 0 {
		t.Fatalf("a new window allocated %d slots", len(in.buf))
	}
	wantLen := []int{1, 2, 4, 4, 8, 8, 8, 8, 10, 10}
	for i, want := range wantLen {
		in.Add(uint64(i+1), 1)
		if len(in.buf) != want {
			t.Fatalf("after %d adds the buffer has %d slots, want %d", i+1, len(in.buf), want)
		}
	}
	// Freeing everything resets start so that refilling does not grow.
	in.FreeLE(100)
	if in.start != 0 || in.Count() != 0 || in.Bytes() != 0 {
		t.Fatalf("after freeing all: start=%d count=%d bytes=%d", in.start, in.Count(), in.Bytes())
	}
	small := NewInflights(3, 0)
	small.Add(1, 0)
	small.FreeLE(1)
	small.Add(2, 0)
	if len(small.buf) != 1 {
		t.Fatalf("re-adding after emptying grew the buffer to %d slots", len(small.buf))
	}
}

// TestInflightsWrapAround checks that the ring wraps past its end: after
// freeing the oldest messages, new ones go to the start of the buffer and
// are freed in order.
func TestInflightsWrapAround(t *testing.T) {
	in := NewInflights(5, 0)
	for i := uint64(1); i <= 5; i++ {
		in.Add(i, i*10)
	}
	in.FreeLE(3) // frees 1, 2, 3
	if in.start != 3 || in.Count() != 2 || in.Bytes() != 90 {
		t.Fatalf("after FreeLE(3): start=%d count=%d bytes=%d", in.start, in.Count(), in.Bytes())
	}
	in.Add(6, 60)
	in.Add(7, 70)
	in.Add(8, 80)
	if !in.Full() {
		t.Fatalf("window of 5 not full with 5 messages")
	}
	// 6, 7, 8 wrapped to slots 0, 1, 2.
	if in.buf[0].index != 6 || in.buf[1].index != 7 || in.buf[2].index != 8 {
		t.Fatalf("wrapped messages are not at the buffer's start: %+v", in.buf)
	}
	want := []inflight{{4, 40}, {5, 50}, {6, 60}, {7, 70}, {8, 80}}
	if got := contents(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("contents %+v, want %+v", got, want)
	}
	in.FreeLE(6) // frees across the end of the buffer
	if in.start != 1 || in.Count() != 2 || in.Bytes() != 150 {
		t.Fatalf("after FreeLE(6): start=%d count=%d bytes=%d", in.start, in.Count(), in.Bytes())
	}
	in.FreeFirstOne()
	if got := contents(in); !reflect.DeepEqual(got, []inflight{{8, 80}}) {
		t.Fatalf("after FreeFirstOne: %+v", got)
	}
}

// TestInflightsFreeLE checks that FreeLE frees exactly the messages whose
// index is at most the given one, ignoring indexes below the window.
func TestInflightsFreeLE(t *testing.T) {
	in := NewInflights(8, 0)
	for _, idx := range []uint64{10, 20, 30, 40} {
		in.Add(idx, idx)
	}
	in.FreeLE(5)
	if in.Count() != 4 || in.Bytes() != 100 {
		t.Fatalf("FreeLE below the window freed something: count=%d bytes=%d", in.Count(), in.Bytes())
	}
	in.FreeLE(25)
	if got := contents(in); !reflect.DeepEqual(got, []inflight{{30, 30}, {40, 40}}) || in.Bytes() != 70 {
		t.Fatalf("after FreeLE(25): %+v bytes=%d", got, in.Bytes())
	}
	in.FreeLE(30)
	if got := contents(in); !reflect.DeepEqual(got, []inflight{{40, 40}}) {
		t.Fatalf("after FreeLE(30): %+v", got)
	}
	in.FreeLE(1000)
	if in.Count() != 0 || in.Bytes() != 0 || in.start != 0 {
		t.Fatalf("after freeing all: count=%d bytes=%d start=%d", in.Count(), in.Bytes(), in.start)
	}
	in.FreeLE(1000) // on an empty window: no effect, no panic
	in.FreeFirstOne()
	if in.Count() != 0 {
		t.Fatalf("freeing an empty window changed it")
	}
}

// TestInflightsFreeFirstOne checks that FreeFirstOne frees only the oldest
// message, also when several messages share its index.
func TestInflightsFreeFirstOne(t *testing.T) {
	in := NewInflights(4, 0)
	in.Add(1, 5)
	in.Add(2, 6)
	in.Add(3, 7)
	in.FreeFirstOne()
	if got := contents(in); !reflect.DeepEqual(got, []inflight{{2, 6}, {3, 7}}) || in.Bytes() != 13 {
		t.Fatalf("after FreeFirstOne: %+v bytes=%d", got, in.Bytes())
	}
}

// TestInflightsResetAndClone checks that Reset empties the window (which can
// then be refilled) and that a clone is independent of the original.
func TestInflightsResetAndClone(t *testing.T) {
	in := NewInflights(3, 50)
	in.Add(1, 20)
	in.Add(2, 20)
	c := in.Clone()
	in.Add(3, 20)
	in.FreeLE(1)
	if got := contents(c); c.Count() != 2 || c.Bytes() != 40 || !reflect.DeepEqual(got, []inflight{{1, 20}, {2, 20}}) {
		t.Fatalf("clone changed with the original: %+v count=%d bytes=%d", got, c.Count(), c.Bytes())
	}
	c.Add(9, 1)
	if got := contents(in); !reflect.DeepEqual(got, []inflight{{2, 20}, {3, 20}}) {
		t.Fatalf("original changed with the clone: %+v", got)
	}
	if empty := NewInflights(3, 0).Clone(); empty.Count() != 0 || empty.Full() {
		t.Fatalf("clone of an empty window is not empty")
	}

	in.Reset()
	if in.Count() != 0 || in.Bytes() != 0 || in.Full() || in.start != 0 {
		t.Fatalf("after Reset: count=%d bytes=%d full=%v start=%d", in.Count(), in.Bytes(), in.Full(), in.start)
	}
	for i := uint64(1); i <= 2; i++ {
		in.Add(i, 20)
	}
	if got := contents(in); !reflect.DeepEqual(got, []inflight{{1, 20}, {2, 20}}) {
		t.Fatalf("refilled after Reset: %+v", got)
	}
}

// TestInflightsModel runs random sequences of Add, FreeLE, FreeFirstOne and
// Reset on windows of random size and byte limit, and compares Count, Bytes,
// Full and the contents with a plain slice after every step.
func TestInflightsModel(t *testing.T) {
	const seed = 99
	r := rand.New(rand.NewPCG(seed, 0))
	for run := range 300 {
		size := 1 + r.IntN(9)
		maxBytes := uint64(0)
		if r.IntN(2) == 0 {
			maxBytes = 1 + r.Uint64N(200)
		}
		in := NewInflights(size, maxBytes)
		var model []inflight
		var modelBytes uint64
		next := uint64(1)
		for step := range 200 {
			full := len(model) == size || (maxBytes != 0 && modelBytes >= maxBytes)
			switch op := r.IntN(10); {
			case op < 5:
				if full {
					continue
				}
				b := r.Uint64N(60)
				in.Add(next, b)
				model = append(model, inflight{next, b})
				modelBytes += b
				next += 1 + r.Uint64N(3)
			case op < 8:
				to := next - r.Uint64N(next)
				in.FreeLE(to)
				for len(model) > 0 && model[0].index <= to {
					modelBytes -= model[0].bytes
					model = model[1:]
				}
			case op < 9:
				in.FreeFirstOne()
				if len(model) > 0 {
					modelBytes -= model[0].bytes
					model = model[1:]
				}
			default:
				if r.IntN(4) == 0 {
					in.Reset()
					model, modelBytes = nil, 0
				}
			}
			full = len(model) == size || (maxBytes != 0 && modelBytes >= maxBytes)
			if in.Count() != len(model) || in.Bytes() != modelBytes || in.Full() != full || !slices.Equal(contents(in), model) {
				t.Fatalf("seed %d run %d step %d (size %d, maxBytes %d): count=%d bytes=%d full=%v contents=%+v; model count=%d bytes=%d full=%v contents=%+v",
					seed, run, step, size, maxBytes, in.Count(), in.Bytes(), in.Full(), contents(in), len(model), modelBytes, full, model)
			}
			if len(in.buf) > size {
				t.Fatalf("seed %d run %d step %d: buffer of %d slots exceeds the window size %d", seed, run, step, len(in.buf), size)
			}
		}
	}
}

package watch

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

type testItem struct {
	sp   span
	id   int
	slot slot[*testItem]
}

func (it *testItem) spanOf() *span            { return &it.sp }
func (it *testItem) slotOf() *slot[*testItem] { return &it.slot }

// TestIndexAgainstBruteForce adds and removes random single keys and
// ranges (many identical) and checks every point query against a scan of
// all items, and the tree's invariants.
func TestIndexAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	keys := []string{"", "\x00", "a", "ab", "abc", "b", "b\x00", "ba", "c", "zz", "\xff"}
	randKey := func() string { return keys[rng.Intn(len(keys))] }
	ix := newIndex[*testItem]()
	live := map[*testItem]bool{}
	for step := range 20000 {
		if len(live) > 0 && rng.Intn(3) == 0 {
			for it := range live { // any one
				ix.remove(it)
				delete(live, it)
				break
			}
		} else {
			var sp span
			switch rng.Intn(3) {
			case 0:
				sp = span{key: randKey()}
			case 1:
				sp = span{key: randKey(), fromKey: true}
			default:
				a, b := randKey(), randKey()
				if a >= b {
					a, b = b, a+"\x00"
				}
				sp = span{key: a, end: b}
			}
			it := &testItem{sp: sp, id: step}
			ix.add(it)
			live[it] = true
		}
		if ix.len() != len(live) {
			t.Fatalf("step %d: len %d, want %d", step, ix.len(), len(live))
		}
		if step%50 == 0 {
			checkTree(t, ix.root)
			for _, k := range append(keys, "a\x00", "bb", "zzz") {
				var got, want []int
				ix.visit(k, func(it *testItem) { got = append(got, it.id) })
				for it := range live {
					if it.sp.contains(k) {
						want = append(want, it.id)
					}
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("step %d: visit(%q) = %v, want %v", step, k, got, want)
				}
			}
			n := 0
			ix.each(func(*testItem) { n++ })
			if n != len(live) {
				t.Fatalf("each visited %d of %d", n, len(live))
			}
		}
	}
}

// checkTree checks the treap's order, heap and max-end invariants.
func checkTree[T any](t *testing.T, n *node[T]) (maxEnd string, maxInf bool) {
	if n == nil {
		return "", false
	}
	if len(n.g.items) == 0 {
		t.Fatal("empty group left in the tree")
	}
	maxEnd, maxInf = n.g.end, n.g.fromKey
	for _, c := range []*node[T]{n.left, n.right} {
		if c == nil {
			continue
		}
		if c.prio > n.prio {
			t.Fatal("heap order broken")
		}
		e, inf := checkTree(t, c)
		maxEnd, maxInf = max(maxEnd, e), maxInf || inf
	}
	if n.left != nil && cmpSpan(&n.left.g.span, &n.g.span) >= 0 || n.right != nil && cmpSpan(&n.right.g.span, &n.g.span) <= 0 {
		t.Fatal("search order broken")
	}
	if maxEnd != n.maxEnd || maxInf != n.maxInf {
		t.Fatalf("max end %q/%v, stored %q/%v", maxEnd, maxInf, n.maxEnd, n.maxInf)
	}
	return maxEnd, maxInf
}

// BenchmarkIndexVisit measures a point query among 100,000 distinct
// prefix ranges, of which a handful contain the key.
func BenchmarkIndexVisit(b *testing.B) {
	ix := newIndex[*testItem]()
	for i := range 100000 {
		p := fmt.Sprintf("/svc/%05d/", i)
		ix.add(&testItem{sp: span{key: p, end: p[:len(p)-1] + "0"}, id: i})
	}
	b.ReportAllocs()
	n := 0
	fn := func(*testItem) { n++ }
	for i := 0; b.Loop(); i++ {
		ix.visit(fmt.Sprintf("/svc/%05d/x", i%100000), fn)
	}
	if n != b.N {
		b.Fatalf("%d matches for %d queries", n, b.N)
	}
}

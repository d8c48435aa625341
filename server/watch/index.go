package watch

// span is the set of keys a watcher selects, with etcd's range rules
// already resolved: a single key (end empty, fromKey false), every key
// >= key (fromKey), or the keys in [key, end).
type span struct {
	key, end string
	fromKey  bool
}

// single reports whether the span is one key.
func (s *span) single() bool { return s.end == "" && !s.fromKey }

// contains reports whether k is in the span.
func (s *span) contains(k string) bool {
	switch {
	case s.single():
		return k == s.key
	case s.fromKey:
		return k >= s.key
	default:
		return k >= s.key && k < s.end
	}
}

// cmpSpan orders ranges by start key, then by end (an unbounded end
// last): the order of the interval tree.
func cmpSpan(a, b *span) int {
	switch {
	case a.key < b.key:
		return -1
	case a.key > b.key:
		return 1
	case a.fromKey != b.fromKey:
		if a.fromKey {
			return 1
		}
		return -1
	case a.fromKey || a.end == b.end:
		return 0
	case a.end < b.end:
		return -1
	}
	return 1
}

// slot is where an item sits in an index: its group and its position in
// the group, so that removal is O(1) without searching.
type slot[T any] struct {
	grp *group[T]
	pos int
}

// indexed is what an index holds: an item that knows its span and keeps
// its slot.
type indexed[T any] interface {
	comparable
	spanOf() *span
	slotOf() *slot[T]
}

// group holds the items with one exact span. Many watchers usually watch
// the same key or prefix; grouping them keeps the tree small and makes a
// match cost one comparison for the whole group.
type group[T any] struct {
	span
	items []T
}

// node is a node of the interval tree: a treap ordered by cmpSpan and
// augmented with the greatest end in its subtree, so that a point query
// skips every subtree whose ranges all end at or before the point.
type node[T any] struct {
	g           *group[T]
	maxEnd      string
	maxInf      bool
	prio        uint64
	left, right *node[T]
}

// fix recomputes the subtree's greatest end after a change below.
func (n *node[T]) fix() {
	n.maxInf, n.maxEnd = n.g.fromKey, n.g.end
	n.absorb(n.left)
	n.absorb(n.right)
}

func (n *node[T]) absorb(c *node[T]) {
	if c == nil {
		return
	}
	if c.maxInf {
		n.maxInf = true
	}
	if c.maxEnd > n.maxEnd {
		n.maxEnd = c.maxEnd
	}
}

// index finds the items whose spans contain a key: single keys in a hash
// map, ranges in an interval tree. A lookup costs O(1) for single keys
// plus O(log r + m) for r distinct ranges of which m match, so the cost
// of an event grows with the watchers it concerns, not with all of them.
type index[T indexed[T]] struct {
	keys map[string]*group[T]
	root *node[T]
	n    int
	rnd  uint64
}

func newIndex[T indexed[T]]() *index[T] {
	return &index[T]{keys: make(map[string]*group[T]), rnd: 0x9e3779b97f4a7c15}
}

// len returns the number of items.
func (ix *index[T]) len() int { return ix.n }

// add inserts it, which must not be in any index.
func (ix *index[T]) add(it T) {
	sp := it.spanOf()
	var g *group[T]
	if sp.single() {
		g = ix.keys[sp.key]
		if g == nil {
			g = &group[T]{span: *sp}
			ix.keys[sp.key] = g
		}
	} else {
		g = ix.find(sp)
		if g == nil {
			g = &group[T]{span: *sp}
			ix.rnd ^= ix.rnd << 13
			ix.rnd ^= ix.rnd >> 7
			ix.rnd ^= ix.rnd << 17
			ix.root = insertNode(ix.root, &node[T]{g: g, prio: ix.rnd, maxEnd: sp.end, maxInf: sp.fromKey})
		}
	}
	s := it.slotOf()
	s.grp, s.pos = g, len(g.items)
	g.items = append(g.items, it)
	ix.n++
}

// remove deletes it from the index; it must be in it.
func (ix *index[T]) remove(it T) {
	s := it.slotOf()
	g := s.grp
	last := len(g.items) - 1
	moved := g.items[last]
	g.items[s.pos] = moved
	moved.slotOf().pos = s.pos
	var zero T
	g.items[last] = zero
	g.items = g.items[:last]
	if c := cap(g.items); c > 64 && last < c/4 {
		g.items = append(make([]T, 0, last*2), g.items...)
	}
	s.grp, s.pos = nil, 0
	ix.n--
	if last > 0 {
		return
	}
	if g.single() {
		delete(ix.keys, g.key)
	} else {
		ix.root = deleteNode(ix.root, &g.span)
	}
}

// find returns the group of the range sp, nil if none.
func (ix *index[T]) find(sp *span) *group[T] {
	n := ix.root
	for n != nil {
		switch c := cmpSpan(sp, &n.g.span); {
		case c < 0:
			n = n.left
		case c > 0:
			n = n.right
		default:
			return n.g
		}
	}
	return nil
}

// visit calls fn for every item whose span contains k.
func (ix *index[T]) visit(k string, fn func(T)) {
	if g := ix.keys[k]; g != nil {
		for _, it := range g.items {
			fn(it)
		}
	}
	visitNode(ix.root, k, fn)
}

func visitNode[T any](n *node[T], k string, fn func(T)) {
	for n != nil {
		if !n.maxInf && n.maxEnd <= k {
			return // every range below ends at or before k
		}
		visitNode(n.left, k, fn)
		if n.g.key > k {
			return // this range and those to the right start after k
		}
		if n.g.contains(k) {
			for _, it := range n.g.items {
				fn(it)
			}
		}
		n = n.right
	}
}

// each calls fn for every item; fn must not change the index.
func (ix *index[T]) each(fn func(T)) {
	for _, g := range ix.keys {
		for _, it := range g.items {
			fn(it)
		}
	}
	eachNode(ix.root, fn)
}

func eachNode[T any](n *node[T], fn func(T)) {
	for n != nil {
		eachNode(n.left, fn)
		for _, it := range n.g.items {
			fn(it)
		}
		n = n.right
	}
}

func insertNode[T any](n, nn *node[T]) *node[T] {
	if n == nil {
		return nn
	}
	if cmpSpan(&nn.g.span, &n.g.span) < 0 {
		n.left = insertNode(n.left, nn)
		if n.left.prio > n.prio {
			n = rotateRight(n)
		}
	} else {
		n.right = insertNode(n.right, nn)
		if n.right.prio > n.prio {
			n = rotateLeft(n)
		}
	}
	n.fix()
	return n
}

func deleteNode[T any](n *node[T], sp *span) *node[T] {
	if n == nil {
		return nil
	}
	switch c := cmpSpan(sp, &n.g.span); {
	case c < 0:
		n.left = deleteNode(n.left, sp)
	case c > 0:
		n.right = deleteNode(n.right, sp)
	default:
		return mergeNodes(n.left, n.right)
	}
	n.fix()
	return n
}

// mergeNodes joins two treaps where every range of a sorts before every
// range of b.
func mergeNodes[T any](a, b *node[T]) *node[T] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = mergeNodes(a.right, b)
		a.fix()
		return a
	default:
		b.left = mergeNodes(a, b.left)
		b.fix()
		return b
	}
}

func rotateRight[T any](n *node[T]) *node[T] {
	l := n.left
	n.left = l.right
	n.fix()
	l.right = n
	l.fix()
	return l
}

func rotateLeft[T any](n *node[T]) *node[T] {
	r := n.right
	n.right = r.left
	n.fix()
	r.left = n
	r.fix()
	return r
}

package tracker

// Inflights is the leader's window of append messages sent to one follower
// and not yet acknowledged. It bounds pipelining both in messages and in
// bytes, so that a fast leader cannot queue unbounded data behind a slow
// follower. It is a ring buffer that grows to its limit on demand.
type Inflights struct {
	start int // index of the oldest message in buf
	count int
	bytes uint64

	size     int    // maximum number of messages
	maxBytes uint64 // maximum total payload; 0 means no byte limit

	buf []inflight
}

type inflight struct {
	index uint64 // last entry index carried by the message
	bytes uint64
}

// NewInflights returns a window of at most size messages and maxBytes bytes
// (0: unlimited bytes).
func NewInflights(size int, maxBytes uint64) *Inflights {
	return &Inflights{size: size, maxBytes: maxBytes}
}

// Clone returns an independent copy.
func (in *Inflights) Clone() *Inflights {
	c := *in
	c.buf = append([]inflight(nil), in.buf...)
	return &c
}

// Add records a message whose last entry is index and whose payload is
// bytes. Indexes must be added in increasing order.
func (in *Inflights) Add(index, bytes uint64) {
	if in.Full() {
		panic("tracker: Add on a full inflights window; check Full first")
	}
	next := in.start + in.count
	if next >= in.size {
		next -= in.size
	}
	if next >= len(in.buf) {
		in.grow()
	}
	in.buf[next] = inflight{index: index, bytes: bytes}
	in.count++
	in.bytes += bytes
}

func (in *Inflights) grow() {
	n := max(2*len(in.buf), 1)
	n = min(n, in.size)
	buf := make([]inflight, n)
	copy(buf, in.buf)
	in.buf = buf
}

// FreeLE frees every message whose last index is at most to: they were
// acknowledged.
func (in *Inflights) FreeLE(to uint64) {
	if in.count == 0 || to < in.buf[in.start].index {
		return
	}
	idx := in.start
	var i int
	var freed uint64
	for i = 0; i < in.count; i++ {
		if to < in.buf[idx].index {
			break
		}
		freed += in.buf[idx].bytes
		if idx++; idx >= in.size {
			idx -= in.size
		}
	}
	in.count -= i
	in.bytes -= freed
	in.start = idx
	if in.count == 0 {
		in.start = 0
	}
}

// FreeFirstOne frees the oldest message. The leader uses it when a
// follower answers a heartbeat while the window is full: some message was
// probably lost, and sending one more lets the follower's rejection reveal
// the gap.
func (in *Inflights) FreeFirstOne() {
	if in.count > 0 {
		in.FreeLE(in.buf[in.start].index)
	}
}

// Full reports whether no more messages may be sent.
func (in *Inflights) Full() bool {
	return in.count == in.size || (in.maxBytes != 0 && in.bytes >= in.maxBytes)
}

// Count returns the number of messages in flight.
func (in *Inflights) Count() int { return in.count }

// Bytes returns the payload bytes in flight.
func (in *Inflights) Bytes() uint64 { return in.bytes }

// Reset empties the window.
func (in *Inflights) Reset() {
	in.count = 0
	in.start = 0
	in.bytes = 0
}

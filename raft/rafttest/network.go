// Package rafttest runs raft members in one goroutine over a deterministic,
// fault-injecting in-memory network, for scenario tests and randomized
// simulations. Given the same seed and the same calls, a run is replayed
// exactly: members are visited in ID order and every random choice comes
// from one seeded source.
package rafttest

import (
	"math/rand/v2"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// Faults are the network's random misbehaviours, each a probability per
// message (delays are in delivery rounds).
type Faults struct {
	// Drop loses the message.
	Drop float64
	// Duplicate delivers the message twice.
	Duplicate float64
	// MaxDelay holds each message back a random number of rounds in
	// [0, MaxDelay], which also reorders messages.
	MaxDelay int
	// Reorder shuffles the messages delivered in one round.
	Reorder bool
}

type link struct{ from, to uint64 }

type envelope struct {
	m   pb.Message
	due int
}

// Network carries messages between members, losing, duplicating, delaying
// and reordering them as its Faults say, and refusing to carry them across
// cut links.
type Network struct {
	Faults Faults

	rng   *rand.Rand
	queue []envelope
	// failed holds messages whose loss the sender will be told of.
	failed []pb.Message
	cut    map[link]bool
	round  int

	// Counters of what the network did, for run summaries.
	Sent, Dropped, Duplicated int
}

// NewNetwork returns a fault-free network whose random choices come from
// seed.
func NewNetwork(seed uint64) *Network {
	return &Network{rng: rand.New(rand.NewPCG(seed, 0x5eed)), cut: map[link]bool{}}
}

// Send queues messages for delivery.
func (n *Network) Send(msgs ...pb.Message) {
	for _, m := range msgs {
		n.Sent++
		if n.Faults.Drop > 0 && n.rng.Float64() < n.Faults.Drop {
			n.Dropped++
			if m.Type == pb.MsgSnap {
				// Snapshots travel on a stream whose failure the sender
				// sees; report it like a cut link.
				n.failed = append(n.failed, m)
			}
			continue
		}
		n.enqueue(m)
		if n.Faults.Duplicate > 0 && n.rng.Float64() < n.Faults.Duplicate {
			n.Duplicated++
			n.enqueue(m)
		}
	}
}

func (n *Network) enqueue(m pb.Message) {
	due := n.round
	if n.Faults.MaxDelay > 0 {
		due += n.rng.IntN(n.Faults.MaxDelay + 1)
	}
	n.queue = append(n.queue, envelope{m: m, due: due})
}

// Cut blocks messages from one member to another (one direction).
func (n *Network) Cut(from, to uint64) { n.cut[link{from, to}] = true }

// Mend unblocks the link from one member to another.
func (n *Network) Mend(from, to uint64) { delete(n.cut, link{from, to}) }

// Isolate cuts every link to and from id among ids.
func (n *Network) Isolate(id uint64, ids []uint64) {
	for _, other := range ids {
		if other != id {
			n.Cut(id, other)
			n.Cut(other, id)
		}
	}
}

// Partition cuts every link between members of different groups.
func (n *Network) Partition(groups ...[]uint64) {
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.Cut(a, b)
				}
			}
		}
	}
}

// Heal removes every cut and every random fault.
func (n *Network) Heal() {
	clear(n.cut)
	n.Faults = Faults{}
}

// IsCut reports whether messages from one member to another are blocked.
func (n *Network) IsCut(from, to uint64) bool { return n.cut[link{from, to}] }

// Pending returns the number of queued messages.
func (n *Network) Pending() int { return len(n.queue) }

// Round takes the messages due in this round out of the queue and advances
// the round. Messages on cut links, and snapshots the network lost, come
// back as blocked so that the sender can learn of the failure.
func (n *Network) Round() (deliver, blocked []pb.Message) {
	blocked, n.failed = n.failed, nil
	keep := n.queue[:0]
	for _, e := range n.queue {
		switch {
		case e.due > n.round:
			keep = append(keep, e)
		case n.cut[link{e.m.From, e.m.To}]:
			blocked = append(blocked, e.m)
		default:
			deliver = append(deliver, e.m)
		}
	}
	clear(n.queue[len(keep):])
	n.queue = keep
	n.round++
	if n.Faults.Reorder {
		n.rng.Shuffle(len(deliver), func(i, j int) { deliver[i], deliver[j] = deliver[j], deliver[i] })
	}
	return deliver, blocked
}

// Filter removes queued messages for which drop returns true; tests use it
// to lose specific messages.
func (n *Network) Filter(drop func(m pb.Message) bool) {
	keep := n.queue[:0]
	for _, e := range n.queue {
		if !drop(e.m) {
			keep = append(keep, e)
		}
	}
	clear(n.queue[len(keep):])
	n.queue = keep
}

// Rewrite replaces every queued message by what f returns, dropping those
// for which it returns false; tests use it to alter messages in flight.
func (n *Network) Rewrite(f func(m pb.Message) (pb.Message, bool)) {
	keep := n.queue[:0]
	for _, e := range n.queue {
		if m, ok := f(e.m); ok {
			e.m = m
			keep = append(keep, e)
		}
	}
	clear(n.queue[len(keep):])
	n.queue = keep
}

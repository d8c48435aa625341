package rafttest

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// msg returns a message of type typ from one member to another, tagged
// with index so that tests can tell messages apart.
func msg(typ pb.MessageType, from, to, index uint64) pb.Message {
	return pb.Message{Type: typ, From: from, To: to, Index: index}
}

// describe renders messages compactly, for comparing delivery sequences.
func describe(msgs []pb.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = fmt.Sprintf("%v %d->%d #%d", m.Type, m.From, m.To, m.Index)
	}
	return out
}

// tags returns the Index tags of msgs.
func tags(msgs []pb.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Index
	}
	return out
}

// within fails the test unless got is within tol of want.
func within(t *testing.T, what string, got int, want, tol float64) {
	t.Helper()
	if math.Abs(float64(got)-want) > tol {
		t.Errorf("%s = %d, want %.0f ± %.0f", what, got, want, tol)
	}
}

// runScript drives a faulty network through a fixed workload (sends of
// appends and snapshots between five members, interleaved with rounds) and
// returns everything it delivered and reported blocked, round by round.
func runScript(seed uint64) (trace []string, sent, dropped, duplicated int) {
	n := NewNetwork(seed)
	n.Faults = Faults{Drop: 0.2, Duplicate: 0.2, MaxDelay: 3, Reorder: true}
	n.Cut(5, 1)
	tag := uint64(0)
	for round := 0; round < 40; round++ {
		for from := uint64(1); from <= 5; from++ {
			to := from%5 + 1
			typ := pb.MsgApp
			if round%7 == 0 {
				typ = pb.MsgSnap
			}
			tag++
			n.Send(msg(typ, from, to, tag))
		}
		deliver, blocked := n.Round()
		trace = append(trace, fmt.Sprintf("round %d", round))
		trace = append(trace, describe(deliver)...)
		for _, b := range describe(blocked) {
			trace = append(trace, "blocked "+b)
		}
	}
	return trace, n.Sent, n.Dropped, n.Duplicated
}

// TestNetworkSameSeedSameSequence checks that the network is deterministic:
// with every fault enabled, the same seed and the same calls give exactly
// the same deliveries, blocked reports and counters, while another seed
// gives a different run.
func TestNetworkSameSeedSameSequence(t *testing.T) {
	a, sentA, dropA, dupA := runScript(7)
	b, sentB, dropB, dupB := runScript(7)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with seed 7 delivered different sequences")
	}
	if sentA != sentB || dropA != dropB || dupA != dupB {
		t.Errorf("counters differ between identical runs: (%d %d %d) vs (%d %d %d)", sentA, dropA, dupA, sentB, dropB, dupB)
	}
	if dropA == 0 || dupA == 0 {
		t.Errorf("the script exercised no faults: dropped %d duplicated %d", dropA, dupA)
	}
	if c, _, _, _ := runScript(8); reflect.DeepEqual(a, c) {
		t.Error("seeds 7 and 8 gave identical runs; the seed has no effect")
	}
}

// TestNetworkFaultRates checks that drop and duplicate probabilities are
// respected over many messages (within about six standard deviations), that
// the counters match what was delivered, and that without faults every
// message is delivered exactly once in the next round.
func TestNetworkFaultRates(t *testing.T) {
	const total = 20000
	tests := []struct {
		name            string
		faults          Faults
		wantDeliveredPr float64 // expected deliveries per message sent
		wantDropPr      float64
		wantDupPr       float64
	}{
		{"no faults", Faults{}, 1, 0, 0},
		{"drop 30%", Faults{Drop: 0.3}, 0.7, 0.3, 0},
		{"duplicate 25%", Faults{Duplicate: 0.25}, 1.25, 0, 0.25},
		// Only messages that survive the drop can be duplicated.
		{"drop 20% duplicate 50%", Faults{Drop: 0.2, Duplicate: 0.5}, 0.8 * 1.5, 0.2, 0.8 * 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNetwork(99)
			n.Faults = tt.faults
			for i := 0; i < total; i++ {
				n.Send(msg(pb.MsgApp, 1, 2, uint64(i)))
			}
			deliver, blocked := n.Round()
			if len(blocked) != 0 {
				t.Errorf("%d appends reported blocked; only lost snapshots are", len(blocked))
			}
			if n.Pending() != 0 {
				t.Errorf("%d messages still pending without delay", n.Pending())
			}
			if n.Sent != total {
				t.Errorf("Sent = %d, want %d", n.Sent, total)
			}
			if got := total - n.Dropped + n.Duplicated; len(deliver) != got {
				t.Errorf("delivered %d, but counters say %d sent - %d dropped + %d duplicated", len(deliver), total, n.Dropped, n.Duplicated)
			}
			sd := func(p float64) float64 { return 6*math.Sqrt(total*p*(1-p)) + 1 }
			within(t, "dropped", n.Dropped, total*tt.wantDropPr, sd(tt.wantDropPr))
			within(t, "duplicated", n.Duplicated, total*tt.wantDupPr, sd(tt.wantDupPr))
			within(t, "delivered", len(deliver), total*tt.wantDeliveredPr, sd(tt.wantDropPr)+sd(tt.wantDupPr))

			// A duplicate is the same message delivered twice; nothing is
			// delivered more often than that.
			seen := map[uint64]int{}
			for _, m := range deliver {
				seen[m.Index]++
			}
			twice := 0
			for tag, k := range seen {
				if k > 2 {
					t.Fatalf("message %d delivered %d times", tag, k)
				}
				if k == 2 {
					twice++
				}
			}
			if twice != n.Duplicated {
				t.Errorf("%d messages delivered twice, Duplicated = %d", twice, n.Duplicated)
			}
		})
	}
}

// TestNetworkMaxDelay checks that MaxDelay holds each message back the
// number of rounds the network chose for it, never more than MaxDelay
// rounds after it was sent, that every delay in [0, MaxDelay] occurs about
// equally often, and that Pending counts the held messages.
func TestNetworkMaxDelay(t *testing.T) {
	const maxDelay, perRound, sendRounds = 3, 500, 4
	n := NewNetwork(5)
	n.Faults.MaxDelay = maxDelay

	sentRound := map[uint64]int{}
	dueRound := map[uint64]int{}
	delays := make([]int, maxDelay+1)
	tag := uint64(0)
	for r := 0; r < sendRounds+maxDelay+1; r++ {
		if r < sendRounds {
			before := len(n.queue)
			for i := 0; i < perRound; i++ {
				tag++
				n.Send(msg(pb.MsgApp, 1, 2, tag))
			}
			for _, e := range n.queue[before:] {
				sentRound[e.m.Index] = r
				dueRound[e.m.Index] = e.due
				d := e.due - r
				if d < 0 || d > maxDelay {
					t.Fatalf("message %d sent in round %d is due in round %d", e.m.Index, r, e.due)
				}
				delays[d]++
			}
		}
		wantPending := 0
		for tg, due := range dueRound {
			if due > r && sentRound[tg] <= r {
				wantPending++
			}
		}
		deliver, _ := n.Round()
		for _, m := range deliver {
			if dueRound[m.Index] != r {
				t.Fatalf("message %d due in round %d delivered in round %d", m.Index, dueRound[m.Index], r)
			}
			delete(dueRound, m.Index)
		}
		if n.Pending() != wantPending {
			t.Errorf("after round %d: Pending = %d, want %d", r, n.Pending(), wantPending)
		}
	}
	if len(dueRound) != 0 || n.Pending() != 0 {
		t.Fatalf("%d messages never delivered (%d pending)", len(dueRound), n.Pending())
	}
	total := float64(perRound * sendRounds)
	for d, k := range delays {
		p := 1.0 / (maxDelay + 1)
		within(t, fmt.Sprintf("messages delayed %d rounds", d), k, total*p, 6*math.Sqrt(total*p*(1-p)))
	}
}

// TestNetworkNoDelayDeliversNextRound checks that without MaxDelay each
// message comes out of the very next Round, in the order sent, and that
// Reorder delivers the same messages in a different order.
func TestNetworkNoDelayDeliversNextRound(t *testing.T) {
	n := NewNetwork(1)
	var want []uint64
	for i := uint64(1); i <= 50; i++ {
		n.Send(msg(pb.MsgApp, 1, 2, i))
		want = append(want, i)
	}
	if n.Pending() != 50 {
		t.Fatalf("Pending = %d, want 50", n.Pending())
	}
	deliver, _ := n.Round()
	if !slices.Equal(tags(deliver), want) {
		t.Errorf("delivered %v, want %v in order", tags(deliver), want)
	}
	if d, b := n.Round(); len(d)+len(b) != 0 || n.Pending() != 0 {
		t.Errorf("an empty round returned %d delivered, %d blocked", len(d), len(b))
	}

	n.Faults.Reorder = true
	for _, tg := range want {
		n.Send(msg(pb.MsgApp, 1, 2, tg))
	}
	deliver, _ = n.Round()
	got := tags(deliver)
	if slices.Equal(got, want) {
		t.Error("Reorder delivered 50 messages in the order sent")
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Reorder changed the set of messages: %v", got)
	}
}

// TestNetworkCuts checks Cut/Mend/Isolate/Partition/Heal: after each, one
// message is sent on every link among five members, and exactly the cut
// links must come back as blocked from Round while the others are
// delivered.
func TestNetworkCuts(t *testing.T) {
	members := []uint64{1, 2, 3, 4, 5}
	type link struct{ from, to uint64 }
	n := NewNetwork(3)
	check := func(step string, cut func(from, to uint64) bool) {
		t.Helper()
		for _, from := range members {
			for _, to := range members {
				if from != to {
					n.Send(msg(pb.MsgHeartbeat, from, to, 0))
				}
			}
		}
		deliver, blocked := n.Round()
		got := map[link]string{}
		for _, m := range deliver {
			got[link{m.From, m.To}] = "delivered"
		}
		for _, m := range blocked {
			got[link{m.From, m.To}] = "blocked"
		}
		if len(deliver)+len(blocked) != len(members)*(len(members)-1) {
			t.Errorf("%s: %d delivered + %d blocked, want %d in all", step, len(deliver), len(blocked), len(members)*(len(members)-1))
		}
		for _, from := range members {
			for _, to := range members {
				if from == to {
					continue
				}
				want := "delivered"
				if cut(from, to) {
					want = "blocked"
				}
				if got[link{from, to}] != want {
					t.Errorf("%s: %d->%d %s, want %s", step, from, to, got[link{from, to}], want)
				}
				if n.IsCut(from, to) != cut(from, to) {
					t.Errorf("%s: IsCut(%d, %d) = %v", step, from, to, n.IsCut(from, to))
				}
			}
		}
	}
	none := func(from, to uint64) bool { return false }
	inGroup := func(g []uint64, id uint64) bool { return slices.Contains(g, id) }

	check("healthy", none)

	n.Cut(1, 2)
	check("cut 1->2 (one direction only)", func(from, to uint64) bool { return from == 1 && to == 2 })

	n.Mend(1, 2)
	check("mended", none)

	n.Isolate(3, members)
	check("isolated 3", func(from, to uint64) bool { return from == 3 || to == 3 })
	n.Heal()
	check("healed after isolation", none)

	g1, g2 := []uint64{1, 2}, []uint64{3, 4, 5}
	n.Partition(g1, g2)
	check("partition {1,2} {3,4,5}", func(from, to uint64) bool { return inGroup(g1, from) != inGroup(g1, to) })

	n.Mend(3, 1)
	check("partition with 3->1 mended", func(from, to uint64) bool {
		return inGroup(g1, from) != inGroup(g1, to) && !(from == 3 && to == 1)
	})

	n.Faults = Faults{Drop: 1}
	n.Heal()
	if n.Faults != (Faults{}) {
		t.Errorf("Heal left faults %+v", n.Faults)
	}
	check("healed after partition", none)

	// A link is checked when the message is due, not when it was sent: a
	// cut made after sending still blocks it, and mending before the
	// round lets it through.
	n.Send(msg(pb.MsgApp, 4, 5, 1))
	n.Cut(4, 5)
	if d, b := n.Round(); len(d) != 0 || len(b) != 1 || b[0].Index != 1 {
		t.Errorf("message sent before a cut: delivered %d, blocked %d; want it blocked", len(d), len(b))
	}
	n.Send(msg(pb.MsgApp, 4, 5, 2))
	n.Mend(4, 5)
	if d, b := n.Round(); len(d) != 1 || len(b) != 0 {
		t.Errorf("message sent before a mend: delivered %d, blocked %d; want it delivered", len(d), len(b))
	}
}

// TestNetworkDroppedSnapshotIsBlocked checks that a snapshot lost by the
// network is reported as blocked in the next round (so that the sender
// learns of the failure), exactly once, while other lost messages vanish
// silently; and that a snapshot on a cut link is blocked too.
func TestNetworkDroppedSnapshotIsBlocked(t *testing.T) {
	n := NewNetwork(11)
	n.Faults = Faults{Drop: 1, MaxDelay: 5}
	snap := pb.Message{Type: pb.MsgSnap, From: 1, To: 2, Snapshot: &pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 9, Term: 2}}}
	n.Send(snap, msg(pb.MsgApp, 1, 2, 3), msg(pb.MsgHeartbeat, 1, 3, 4))
	if n.Dropped != 3 || n.Pending() != 0 {
		t.Fatalf("Dropped %d Pending %d, want 3 and 0", n.Dropped, n.Pending())
	}
	deliver, blocked := n.Round()
	if len(deliver) != 0 || len(blocked) != 1 || blocked[0].Type != pb.MsgSnap || blocked[0].Snapshot.Metadata.Index != 9 {
		t.Fatalf("Round after losing a snapshot: delivered %v, blocked %v; want only the snapshot blocked", describe(deliver), describe(blocked))
	}
	if d, b := n.Round(); len(d)+len(b) != 0 {
		t.Errorf("lost snapshot reported again: delivered %v blocked %v", describe(d), describe(b))
	}

	n.Heal()
	n.Cut(1, 2)
	n.Send(snap)
	if _, blocked := n.Round(); len(blocked) != 1 || blocked[0].Type != pb.MsgSnap {
		t.Errorf("snapshot on a cut link: blocked %v, want the snapshot", describe(blocked))
	}
}

// TestNetworkFilterAndRewrite checks that Filter removes exactly the queued
// messages it is asked to, and Rewrite alters or removes queued messages,
// both keeping the order and the delay of what remains.
func TestNetworkFilterAndRewrite(t *testing.T) {
	n := NewNetwork(2)
	for i := uint64(1); i <= 6; i++ {
		typ := pb.MsgApp
		if i%2 == 0 {
			typ = pb.MsgHeartbeat
		}
		n.Send(msg(typ, 1, i%3+2, i))
	}
	n.Filter(func(m pb.Message) bool { return m.Type == pb.MsgHeartbeat })
	if n.Pending() != 3 {
		t.Fatalf("Pending after filtering heartbeats = %d, want 3", n.Pending())
	}
	n.Rewrite(func(m pb.Message) (pb.Message, bool) {
		if m.Index == 3 {
			return m, false
		}
		m.Commit = 100 + m.Index
		return m, true
	})
	deliver, _ := n.Round()
	if got := tags(deliver); !slices.Equal(got, []uint64{1, 5}) {
		t.Fatalf("delivered %v, want [1 5]", got)
	}
	for _, m := range deliver {
		if m.Type != pb.MsgApp || m.Commit != 100+m.Index {
			t.Errorf("message %d: type %v commit %d, want a rewritten append with commit %d", m.Index, m.Type, m.Commit, 100+m.Index)
		}
	}

	// Held-back messages keep their delay through Filter and Rewrite.
	n.Faults.MaxDelay = 4
	for i := uint64(10); i < 40; i++ {
		n.Send(msg(pb.MsgApp, 1, 2, i))
	}
	due := map[uint64]int{}
	for _, e := range n.queue {
		due[e.m.Index] = e.due
	}
	n.Filter(func(m pb.Message) bool { return m.Index%3 == 0 })
	n.Rewrite(func(m pb.Message) (pb.Message, bool) { m.Term = 7; return m, true })
	delivered := 0
	for r := n.round; n.Pending() > 0; r++ {
		d, _ := n.Round()
		for _, m := range d {
			delivered++
			if m.Index%3 == 0 || m.Term != 7 || due[m.Index] != r {
				t.Errorf("message %d (term %d) delivered in round %d, due %d; filtered ones must not arrive", m.Index, m.Term, r, due[m.Index])
			}
		}
	}
	if delivered != 20 {
		t.Errorf("delivered %d held-back messages, want the 20 kept by Filter", delivered)
	}
}

// clusterTick ticks and stabilizes c until cond holds, failing after
// maxTicks.
func clusterTick(t *testing.T, c *Cluster, maxTicks int, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < maxTicks && !cond(); i++ {
		c.TickAll()
		if err := c.Stabilize(); err != nil {
			t.Fatal(err)
		}
	}
	if !cond() {
		t.Fatalf("%s: not reached within %d ticks", what, maxTicks)
	}
}

// propose proposes each datum on member id and stabilizes.
func propose(t *testing.T, c *Cluster, id uint64, data ...string) {
	t.Helper()
	for _, d := range data {
		if err := c.Propose(id, []byte(d)); err != nil {
			t.Fatalf("propose %q on %d: %v", d, id, err)
		}
	}
	if err := c.Stabilize(); err != nil {
		t.Fatal(err)
	}
}

// dataStrings returns member id's applied data.
func dataStrings(c *Cluster, id uint64) []string {
	var out []string
	for _, d := range c.Member(id).Data {
		out = append(out, string(d))
	}
	return out
}

// sameState fails the test unless every listed member applied the same
// entries as member ref.
func sameState(t *testing.T, c *Cluster, ref uint64, ids ...uint64) {
	t.Helper()
	r := c.Member(ref)
	for _, id := range ids {
		m := c.Member(id)
		if m.AppliedIndex != r.AppliedIndex || m.Hash != r.Hash || !slices.Equal(dataStrings(c, id), dataStrings(c, ref)) {
			t.Errorf("member %d: applied %d hash %x data %v; member %d: applied %d hash %x data %v",
				id, m.AppliedIndex, m.Hash, dataStrings(c, id), ref, r.AppliedIndex, r.Hash, dataStrings(c, ref))
		}
	}
}

// TestClusterLifecycle checks the Cluster harness end to end: voters and a
// learner start from the shared configuration, a leader is elected and
// replicates proposals (also forwarded from a follower) to everyone, a
// member crashed before persisting loses exactly what it had not persisted
// and restarts from its durable state, and a member that lags behind the
// leader's compaction point catches up through a snapshot.
func TestClusterLifecycle(t *testing.T) {
	c, err := New(Options{Seed: 4}, []uint64{1, 2, 3}, []uint64{4})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.IDs(), []uint64{1, 2, 3, 4}) {
		t.Fatalf("IDs = %v", c.IDs())
	}
	wantCS := pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	for _, id := range c.IDs() {
		if m := c.Member(id); !reflect.DeepEqual(m.ConfState, wantCS) || m.AppliedIndex != 1 || !c.Alive(id) {
			t.Fatalf("member %d starts with conf %+v applied %d alive %v", id, m.ConfState, m.AppliedIndex, c.Alive(id))
		}
	}
	if c.Member(9) != nil || c.Alive(9) {
		t.Error("unknown member reported")
	}

	if err := c.ElectLeader(1); err != nil {
		t.Fatal(err)
	}
	if err := c.ElectLeader(4); err == nil {
		t.Error("a learner was elected leader")
	}
	if c.Leader() != 1 {
		t.Fatalf("leader %d, want 1", c.Leader())
	}
	propose(t, c, 1, "a", "b")
	propose(t, c, 2, "c") // forwarded to the leader
	for _, id := range c.IDs() {
		if got := dataStrings(c, id); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Errorf("member %d applied %v, want [a b c]", id, got)
		}
	}
	sameState(t, c, 1, 2, 3, 4)

	// Member 3 crashes after sending but before persisting the Ready that
	// carries the next entry.
	entriesInReady := map[uint64]int{}
	c.Hooks.Ready = func(id uint64, rd raft.Ready) { entriesInReady[id] = len(rd.Entries) }
	armed := true
	c.Hooks.Crash = func(id uint64, s Stage) bool {
		if armed && id == 3 && s == StageSent && entriesInReady[id] > 0 {
			armed = false
			return true
		}
		return false
	}
	last3, _ := c.Member(3).Storage.LastIndex()
	propose(t, c, 1, "d")
	if c.Alive(3) || armed {
		t.Fatal("member 3 did not crash before persisting")
	}
	// What the crashed member's storage holds is, by definition, its
	// durable state.
	hs3, _, _ := c.Member(3).Storage.InitialState()
	if hs3.IsEmpty() {
		t.Fatal("member 3 has no durable hard state")
	}
	if got, _ := c.Member(3).Storage.LastIndex(); got != last3 {
		t.Errorf("crashed member persisted up to %d, want %d (the crash came first)", got, last3)
	}
	if err := c.Restart(1); err == nil {
		t.Error("Restart of a running member succeeded")
	}
	propose(t, c, 1, "e") // committed by 1 and 2 alone
	if err := c.Restart(3); err != nil {
		t.Fatal(err)
	}
	st := c.Member(3).Node.BasicStatus()
	if st.Term != hs3.Term || st.Vote != hs3.Vote || st.Commit != hs3.Commit {
		t.Errorf("restarted member 3: term %d vote %d commit %d, want the durable %+v", st.Term, st.Vote, st.Commit, hs3)
	}
	if got, _ := c.Member(3).Storage.LastIndex(); got != last3 {
		t.Errorf("restart changed member 3's log end to %d, want %d", got, last3)
	}
	clusterTick(t, c, 50, "member 3 catches up after restart", func() bool {
		return c.Member(3).AppliedIndex == c.Member(1).AppliedIndex
	})
	sameState(t, c, 1, 2, 3, 4)
	c.Hooks.Crash, c.Hooks.Ready = nil, nil

	// Member 3 misses many entries that the leader then compacts away; it
	// can only catch up by snapshot.
	leaderHash := map[uint64]uint64{}
	c.Hooks.Applied = func(id uint64, e pb.Entry, hash uint64) {
		if id == 1 {
			leaderHash[e.Index] = hash
		}
	}
	var snaps []pb.SnapshotMetadata
	var snapHashes []uint64
	c.Hooks.SnapshotApplied = func(id uint64, meta pb.SnapshotMetadata, hash uint64) {
		if id == 3 {
			snaps = append(snaps, meta)
			snapHashes = append(snapHashes, hash)
		}
	}
	c.Crash(3)
	behind, _ := c.Member(3).Storage.LastIndex()
	for i := 0; i < 10; i++ {
		propose(t, c, 1, fmt.Sprintf("x%d", i))
	}
	if err := c.Compact(1, 0); err != nil {
		t.Fatal(err)
	}
	first, _ := c.Member(1).Storage.FirstIndex()
	if first <= behind+1 {
		t.Fatalf("leader's log starts at %d; member 3 (at %d) could catch up without a snapshot", first, behind)
	}
	if err := c.Restart(3); err != nil {
		t.Fatal(err)
	}
	clusterTick(t, c, 50, "member 3 catches up by snapshot", func() bool {
		return c.Member(3).AppliedIndex == c.Member(1).AppliedIndex
	})
	if len(snaps) == 0 {
		t.Fatal("member 3 caught up without installing a snapshot")
	}
	got := snaps[len(snaps)-1]
	if got.Index != first-1 || !reflect.DeepEqual(got.ConfState, wantCS) {
		t.Errorf("member 3 installed snapshot %+v, want index %d with conf %+v", got, first-1, wantCS)
	}
	if h := snapHashes[len(snapHashes)-1]; h != leaderHash[got.Index] {
		t.Errorf("snapshot state hash %x, leader's hash at %d is %x", h, got.Index, leaderHash[got.Index])
	}
	sameState(t, c, 1, 2, 3, 4)
	if n := len(dataStrings(c, 3)); n != 15 {
		t.Errorf("member 3 has %d data entries after the snapshot, want 15", n)
	}
}

// TestStateSnapshotEncoding checks that the toy state machine's snapshot
// encoding round-trips (hash and data, including empty items) and that
// truncated or corrupt bytes are rejected instead of decoded wrongly.
func TestStateSnapshotEncoding(t *testing.T) {
	data := [][]byte{[]byte("alpha"), {}, []byte("gamma")}
	b := encodeState(0xfeedface, data)
	hash, got, err := decodeState(b)
	if err != nil || hash != 0xfeedface || len(got) != 3 || string(got[0]) != "alpha" || len(got[1]) != 0 || string(got[2]) != "gamma" {
		t.Fatalf("decodeState = (%x, %q, %v), want (feedface, %q, nil)", hash, got, err, data)
	}
	if _, got, err := decodeState(encodeState(1, nil)); err != nil || len(got) != 0 {
		t.Errorf("empty state: (%q, %v), want no data", got, err)
	}
	for _, bad := range [][]byte{
		nil,
		b[:7],        // shorter than the hash
		b[:8],        // no count
		b[:len(b)-1], // last item cut short
		append(make([]byte, 8), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), // overlong count varint
		append(make([]byte, 8), 5), // count larger than the bytes left
	} {
		if _, _, err := decodeState(bad); err == nil {
			t.Errorf("decodeState(%x) accepted corrupt bytes", bad)
		}
	}
}

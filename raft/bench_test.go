package raft_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// benchPayload is the data of every proposal in these benchmarks: 128 bytes,
// about the size of a small key-value write. All proposals share it, so the
// benchmarks allocate nothing for payloads themselves.
var benchPayload = make([]byte, 128)

// benchLogger discards the members' logs.
var benchLogger = slog.New(slog.DiscardHandler)

// newBenchStorage returns a MemoryStorage holding the initial snapshot
// (index 1, term 1) of a new cluster whose voters are 1..voters.
func newBenchStorage(tb testing.TB, voters int) *raft.MemoryStorage {
	tb.Helper()
	ids := make([]uint64, voters)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	st := raft.NewMemoryStorage()
	snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: ids}}}
	if err := st.ApplySnapshot(snap); err != nil {
		tb.Fatal(err)
	}
	return st
}

// benchConfig is the configuration of member id in every benchmark: the
// library's defaults for flow control, logs discarded.
func benchConfig(id uint64, st raft.Storage) *raft.Config {
	return &raft.Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: benchLogger}
}

// benchGroup is a cluster of RawNodes with in-memory storage, all driven
// from the calling goroutine: a message is delivered by calling the
// recipient's Step, with no network in between. Members are 1..n; member 1
// is elected leader by newBenchGroup and stays leader, since nothing ticks.
type benchGroup struct {
	tb     testing.TB
	nodes  []*raft.RawNode // nodes[i] is member i+1
	stores []*raft.MemoryStorage
	// queue holds the messages sent in the last round, delivered next round.
	queue []pb.Message
	// committed counts the non-empty entries committed on the leader.
	committed int
}

// newBenchGroup starts a group of voters members and elects member 1.
func newBenchGroup(tb testing.TB, voters int) *benchGroup {
	tb.Helper()
	g := &benchGroup{tb: tb}
	for id := uint64(1); id <= uint64(voters); id++ {
		st := newBenchStorage(tb, voters)
		rn, err := raft.NewRawNode(benchConfig(id, st))
		if err != nil {
			tb.Fatal(err)
		}
		g.nodes = append(g.nodes, rn)
		g.stores = append(g.stores, st)
	}
	if err := g.nodes[0].Campaign(); err != nil {
		tb.Fatal(err)
	}
	g.settle()
	if st := g.nodes[0].BasicStatus(); st.RaftState != raft.StateLeader {
		tb.Fatalf("member 1 is %s after its campaign, want leader", st.RaftState)
	}
	return g
}

// propose proposes benchPayload on the leader.
func (g *benchGroup) propose() {
	if err := g.nodes[0].Propose(benchPayload); err != nil {
		g.tb.Fatal(err)
	}
}

// round delivers the queued messages, then handles one Ready on every
// member that has one. It reports whether there was anything to do.
func (g *benchGroup) round() bool {
	busy := len(g.queue) > 0
	// Step never sends on our queue (messages come out only in a Ready), so
	// the queue can be emptied in place after the loop.
	for _, m := range g.queue {
		if err := g.nodes[m.To-1].Step(m); err != nil {
			g.tb.Fatalf("member %d: step %s from %d: %v", m.To, m.Type, m.From, err)
		}
	}
	g.queue = g.queue[:0]
	for i, rn := range g.nodes {
		if rn.HasReady() {
			g.handleReady(i)
			busy = true
		}
	}
	return busy
}

// handleReady handles one Ready of nodes[i] in the documented order: send
// Messages, persist, send MessagesAfterPersist, apply, Advance. Applying is
// counting the leader's committed non-empty entries.
func (g *benchGroup) handleReady(i int) {
	rn, st := g.nodes[i], g.stores[i]
	rd := rn.Ready()
	g.queue = append(g.queue, rd.Messages...)
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := st.ApplySnapshot(rd.Snapshot); err != nil {
			g.tb.Fatal(err)
		}
	}
	if err := st.Append(rd.Entries); err != nil {
		g.tb.Fatal(err)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := st.SetHardState(rd.HardState); err != nil {
			g.tb.Fatal(err)
		}
	}
	g.queue = append(g.queue, rd.MessagesAfterPersist...)
	if i == 0 {
		for _, e := range rd.CommittedEntries {
			if e.Type == pb.EntryNormal && len(e.Data) > 0 {
				g.committed++
			}
		}
	}
	rn.Advance(rd)
}

// runUntilCommitted runs rounds until the leader has committed n non-empty
// entries in all. Messages still queued then go out in the next round.
func (g *benchGroup) runUntilCommitted(n int) {
	for g.committed < n {
		if !g.round() {
			g.tb.Fatalf("group is idle with %d entries committed, want %d", g.committed, n)
		}
	}
}

// settle runs rounds until no member has anything left to do.
func (g *benchGroup) settle() {
	for g.round() {
	}
}

// BenchmarkRawNodeProposeCommit measures proposal-to-commit throughput
// through RawNode with in-memory storage: b.N proposals of 128 bytes, each
// counted once the leader hands it out as committed. Without batch, each
// proposal is committed before the next one is made; with batch=k, k are
// proposed before the group runs, as a server batching client writes does.
func BenchmarkRawNodeProposeCommit(b *testing.B) {
	for _, bc := range []struct{ voters, batch int }{{1, 1}, {3, 1}, {3, 64}} {
		name := fmt.Sprintf("voters=%d", bc.voters)
		if bc.batch > 1 {
			name += fmt.Sprintf("/batch=%d", bc.batch)
		}
		b.Run(name, func(b *testing.B) {
			g := newBenchGroup(b, bc.voters)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(bc.batch, b.N-done)
				for range n {
					g.propose()
				}
				done += n
				g.runUntilCommitted(done)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// TestBenchGroup checks that the benchmark harness really replicates: every
// proposal commits on the leader and reaches every member's log, and every
// member applies up to the leader's commit index.
func TestBenchGroup(t *testing.T) {
	const proposals = 100
	g := newBenchGroup(t, 3)
	for done := 0; done < proposals; done += 7 {
		for range min(7, proposals-done) {
			g.propose()
		}
		g.runUntilCommitted(min(done+7, proposals))
	}
	g.settle()
	if g.committed != proposals {
		t.Fatalf("leader committed %d entries, want %d", g.committed, proposals)
	}
	commit := g.nodes[0].BasicStatus().Commit
	for i, rn := range g.nodes {
		last, err := g.stores[i].LastIndex()
		if err != nil {
			t.Fatal(err)
		}
		if st := rn.BasicStatus(); st.Applied != commit || last != commit {
			t.Errorf("member %d: applied %d, last index %d; want both %d", i+1, st.Applied, last, commit)
		}
	}
}

// BenchmarkNodeProposeCommit measures the same throughput through Node, the
// goroutine-based API: a loop goroutine handles Readies while the benchmark
// goroutine proposes b.N entries of 128 bytes, one Propose call each; the
// clock stops once all are committed. Every goroutine is stopped afterwards.
func BenchmarkNodeProposeCommit(b *testing.B) {
	// batch=1 is one Propose per entry; larger batches go through
	// ProposeBatch, as the server's proposing goroutine does under load.
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("voters=1/batch=%d", batch), func(b *testing.B) {
			benchNodeProposeCommit(b, batch)
		})
	}
}

func benchNodeProposeCommit(b *testing.B, batch int) {
	st := newBenchStorage(b, 1)
	n, err := raft.RestartNode(benchConfig(1, st))
	if err != nil {
		b.Fatal(err)
	}
	loop := &benchNodeLoop{
		node: n, storage: st, want: b.N,
		leading: make(chan struct{}), done: make(chan struct{}), quit: make(chan struct{}),
	}
	var wg sync.WaitGroup
	wg.Go(loop.run)
	b.Cleanup(func() {
		n.Stop()
		close(loop.quit)
		wg.Wait()
	})
	ctx := context.Background()
	if err := n.Campaign(ctx); err != nil {
		b.Fatal(err)
	}
	<-loop.leading
	data := make([][]byte, 0, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for left := b.N; left > 0; left -= len(data) {
		if batch == 1 {
			if err := n.Propose(ctx, benchPayload); err != nil {
				b.Fatal(err)
			}
			data = data[:1]
			continue
		}
		data = data[:0]
		for range min(batch, left) {
			data = append(data, benchPayload)
		}
		if err := n.ProposeBatch(ctx, data); err != nil {
			b.Fatal(err)
		}
	}
	<-loop.done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// benchNodeLoop is the Ready loop of a single-member Node: it persists each
// Ready to storage, counts the committed non-empty entries and advances.
// A single member sends no messages, so none are handled.
type benchNodeLoop struct {
	node    raft.Node
	storage *raft.MemoryStorage
	// want is the number of non-empty entries to wait for.
	want int
	// leading is closed when the member becomes leader, done when want
	// entries are committed; closing quit stops run.
	leading, done, quit chan struct{}
}

func (l *benchNodeLoop) run() {
	committed, leader := 0, false
	for {
		select {
		case rd := <-l.node.Ready():
			if err := l.storage.Append(rd.Entries); err != nil {
				panic(err)
			}
			if !raft.IsEmptyHardState(rd.HardState) {
				if err := l.storage.SetHardState(rd.HardState); err != nil {
					panic(err)
				}
			}
			if rd.SoftState != nil && rd.RaftState == raft.StateLeader && !leader {
				leader = true
				close(l.leading)
			}
			for _, e := range rd.CommittedEntries {
				if e.Type == pb.EntryNormal && len(e.Data) > 0 {
					committed++
					if committed == l.want {
						close(l.done)
					}
				}
			}
			l.node.Advance()
		case <-l.quit:
			return
		}
	}
}

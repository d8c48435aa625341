package raft_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// nodeHarness runs raft.Nodes of one cluster on goroutines, connected by
// channels, handling Readys by the contract; tests drive ticks explicitly.
type nodeHarness struct {
	t       *testing.T
	nodes   map[uint64]raft.Node
	stores  map[uint64]*raft.MemoryStorage
	mu      sync.Mutex
	applied map[uint64][]string
	reads   map[uint64][]raft.ReadState
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startNodes(t *testing.T, n int, configure func(*raft.Config)) *nodeHarness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &nodeHarness{t: t, nodes: map[uint64]raft.Node{}, stores: map[uint64]*raft.MemoryStorage{},
		applied: map[uint64][]string{}, reads: map[uint64][]raft.ReadState{}, cancel: cancel}
	peers := make([]raft.Peer, n)
	for i := range peers {
		peers[i] = raft.Peer{ID: uint64(i + 1)}
	}
	for _, p := range peers {
		st := raft.NewMemoryStorage()
		cfg := &raft.Config{ID: p.ID, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: quietLogger()}
		if configure != nil {
			configure(cfg)
		}
		node, err := raft.StartNode(cfg, peers)
		must(t, err)
		h.nodes[p.ID], h.stores[p.ID] = node, st
	}
	for id := range h.nodes {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.loop(ctx, id)
		}()
	}
	t.Cleanup(h.stop)
	return h
}

func (h *nodeHarness) send(ctx context.Context, msgs []pb.Message) {
	for _, m := range msgs {
		if to := h.nodes[m.To]; to != nil {
			// Deliver without blocking this loop on the receiver.
			go func() { _ = to.Step(ctx, m) }()
		}
	}
}

func (h *nodeHarness) loop(ctx context.Context, id uint64) {
	node, st := h.nodes[id], h.stores[id]
	for {
		select {
		case <-ctx.Done():
			return
		case rd := <-node.Ready():
			h.send(ctx, rd.Messages)
			_ = st.Append(rd.Entries)
			if !raft.IsEmptyHardState(rd.HardState) {
				_ = st.SetHardState(rd.HardState)
			}
			h.send(ctx, rd.MessagesAfterPersist)
			for _, e := range rd.CommittedEntries {
				switch e.Type {
				case pb.EntryConfChange, pb.EntryConfChangeV2:
					cc, err := pb.ConfChangeFromEntry(e)
					if err == nil {
						node.ApplyConfChange(cc)
					}
				case pb.EntryNormal:
					if len(e.Data) > 0 {
						h.mu.Lock()
						h.applied[id] = append(h.applied[id], string(e.Data))
						h.mu.Unlock()
					}
				}
			}
			h.mu.Lock()
			h.reads[id] = append(h.reads[id], rd.ReadStates...)
			h.mu.Unlock()
			node.Advance()
		}
	}
}

func (h *nodeHarness) stop() {
	h.cancel()
	h.wg.Wait()
	for _, n := range h.nodes {
		n.Stop()
	}
}

// waitFor ticks every node until cond holds or the deadline passes.
func (h *nodeHarness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		for _, n := range h.nodes {
			n.Tick()
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *nodeHarness) leader() uint64 {
	for id, n := range h.nodes {
		if st := n.Status(); st.RaftState == raft.StateLeader {
			return id
		}
	}
	return 0
}

func (h *nodeHarness) appliedCount(id uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.applied[id])
}

// TestNodeClusterCommits checks the goroutine Node end to end: a
// bootstrapped 3-member cluster elects a leader, commits proposals made on
// any member, and answers a ReadIndex.
func TestNodeClusterCommits(t *testing.T) {
	h := startNodes(t, 3, nil)
	h.waitFor("a leader", func() bool { return h.leader() != 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		id := uint64(i%3 + 1)
		for {
			err := h.nodes[id].Propose(ctx, []byte(fmt.Sprintf("n%d", i)))
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("propose: %v", err)
			}
		}
	}
	h.waitFor("all members apply 5 entries", func() bool {
		return h.appliedCount(1) >= 5 && h.appliedCount(2) >= 5 && h.appliedCount(3) >= 5
	})
	lead := h.leader()
	must(t, h.nodes[lead].ReadIndex(ctx, []byte("node-read")))
	h.waitFor("read answered", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.reads[lead]) > 0
	})
}

// TestNodeProposeBatch checks that ProposeBatch appends its entries in
// order and together, on the leader and forwarded from a follower, and
// that the caller may reuse its slice as soon as it returns.
func TestNodeProposeBatch(t *testing.T) {
	h := startNodes(t, 3, nil)
	h.waitFor("a leader", func() bool { return h.leader() != 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lead := h.leader()
	follower := lead%3 + 1
	var want []string
	batch := make([][]byte, 0, 4)
	for round, id := range []uint64{lead, follower, lead} {
		batch = batch[:0]
		for i := range 4 {
			d := fmt.Sprintf("r%d-e%d", round, i)
			batch = append(batch, []byte(d))
			want = append(want, d)
		}
		must(t, h.nodes[id].ProposeBatch(ctx, batch))
		// Reuse the slice at once: the entries must not share it.
		for i := range batch {
			batch[i] = []byte("clobbered")
		}
		h.waitFor(fmt.Sprintf("batch %d applied everywhere", round), func() bool {
			return h.appliedCount(1) >= len(want) && h.appliedCount(2) >= len(want) && h.appliedCount(3) >= len(want)
		})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := uint64(1); id <= 3; id++ {
		if got := h.applied[id]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("member %d applied %q, want %q", id, got, want)
		}
	}
}

// TestNodeMembershipAndTransfer checks ProposeConfChange, ApplyConfChange
// and TransferLeadership through Node.
func TestNodeMembershipAndTransfer(t *testing.T) {
	h := startNodes(t, 3, nil)
	h.waitFor("a leader", func() bool { return h.leader() != 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lead := h.leader()
	target := lead%3 + 1
	h.nodes[lead].TransferLeadership(ctx, lead, target)
	h.waitFor("transfer", func() bool { return h.leader() == target })
	must(t, h.nodes[target].ProposeConfChange(ctx, pb.ConfChange{Type: pb.ConfChangeAddLearnerNode, NodeID: 9}))
	h.waitFor("learner added", func() bool {
		_, ok := h.nodes[target].Status().Config.Learners[9]
		return ok
	})
	h.nodes[target].ReportUnreachable(9)
	h.nodes[target].ReportSnapshot(9, raft.SnapshotFailure)
	if st := h.nodes[target].Status(); st.Progress[9].State.String() == "" {
		t.Fatal("no progress for the new learner")
	}
}

// TestNodeProposeWithoutLeaderWaits checks that a proposal made while no
// leader is known waits until its context expires.
func TestNodeProposeWithoutLeaderWaits(t *testing.T) {
	st := raft.NewMemoryStorage()
	n, err := raft.StartNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: quietLogger()},
		[]raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}})
	must(t, err)
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := n.Propose(ctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("propose without leader: %v, want deadline exceeded", err)
	}
}

// TestNodeStepForwardedProposalWithoutLeader checks that a proposal a
// peer forwards while this member has no leader returns at once (raft
// drops it) instead of holding the caller, which is the peer's inbound
// stream: a regression test of a deadlock the chaos harness found, where
// the new leader's heartbeats queued behind such a proposal.
func TestNodeStepForwardedProposalWithoutLeader(t *testing.T) {
	st := raft.NewMemoryStorage()
	n, err := raft.StartNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: quietLogger()},
		[]raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}})
	must(t, err)
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := pb.Message{Type: pb.MsgProp, From: 2, To: 1, Entries: []pb.Entry{{Data: []byte("x")}}}
	if err := n.Step(ctx, m); err != nil {
		t.Fatalf("forwarded proposal without a leader: %v, want nil (dropped at once)", err)
	}
	hb := pb.Message{Type: pb.MsgHeartbeat, From: 2, To: 1, Term: 2}
	if err := n.Step(ctx, hb); err != nil {
		t.Fatalf("heartbeat after the proposal: %v", err)
	}
	if lead := n.Status().Lead; lead != 2 {
		t.Fatalf("leader after a heartbeat from 2: %d", lead)
	}
}

// TestNodeStopIsFinal checks that calls after Stop return ErrStopped or
// return at once, and that Stop is idempotent.
func TestNodeStopIsFinal(t *testing.T) {
	before := runtime.NumGoroutine()
	st := raft.NewMemoryStorage()
	n, err := raft.StartNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: quietLogger()},
		[]raft.Peer{{ID: 1}})
	must(t, err)
	n.Stop()
	n.Stop()
	ctx := context.Background()
	if err := n.Propose(ctx, []byte("x")); !errors.Is(err, raft.ErrStopped) {
		t.Fatalf("propose after stop: %v", err)
	}
	if err := n.Campaign(ctx); !errors.Is(err, raft.ErrStopped) {
		t.Fatalf("campaign after stop: %v", err)
	}
	n.Tick()
	n.Advance()
	n.ReportUnreachable(2)
	n.ReportSnapshot(2, raft.SnapshotFinish)
	n.TransferLeadership(ctx, 1, 2)
	if cs := n.ApplyConfChange(pb.ConfChange{}); cs == nil {
		t.Fatal("ApplyConfChange after stop returned nil")
	}
	if s := n.Status(); s.ID != 0 {
		t.Fatalf("status after stop: %+v", s)
	}
	for i := 0; i < 100 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines leaked: %d before, %d after Stop", before, after)
	}
}

// TestNodeStepRefusesLocalAndUnknownMessages checks input validation.
func TestNodeStepRefusesLocalAndUnknownMessages(t *testing.T) {
	st := raft.NewMemoryStorage()
	n, err := raft.StartNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: quietLogger()},
		[]raft.Peer{{ID: 1}})
	must(t, err)
	defer n.Stop()
	if err := n.Step(context.Background(), pb.Message{Type: pb.MsgHup}); !errors.Is(err, raft.ErrStepLocalMsg) {
		t.Fatalf("stepping MsgHup from the network: %v", err)
	}
	if err := n.Step(context.Background(), pb.Message{Type: pb.MessageType(200)}); err == nil {
		t.Fatal("unknown message type accepted")
	}
}

// TestRestartNodeKeepsState checks that a node restarted from its storage
// resumes with its term and log, and that StartNode refuses a non-empty
// storage.
func TestRestartNodeKeepsState(t *testing.T) {
	st := raft.NewMemoryStorage()
	cfg := &raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: quietLogger()}
	n, err := raft.StartNode(cfg, []raft.Peer{{ID: 1}})
	must(t, err)
	ctx := context.Background()
	var applied uint64
	campaigned := false
	deadline := time.After(10 * time.Second)
	for applied < 2 {
		// A member campaigns only once the bootstrap conf change is applied.
		if applied >= 1 && !campaigned {
			must(t, n.Campaign(ctx))
			campaigned = true
		}
		var rd raft.Ready
		select {
		case rd = <-n.Ready():
		case <-deadline:
			t.Fatalf("no progress: applied %d", applied)
		}
		must(t, st.Append(rd.Entries))
		if !raft.IsEmptyHardState(rd.HardState) {
			must(t, st.SetHardState(rd.HardState))
		}
		for _, e := range rd.CommittedEntries {
			if e.Type == pb.EntryConfChange {
				cc, err := pb.ConfChangeFromEntry(e)
				must(t, err)
				n.ApplyConfChange(cc)
			}
			applied = e.Index
		}
		n.Advance()
	}
	n.Stop()
	if _, err := raft.StartNode(cfg, []raft.Peer{{ID: 1}}); err == nil {
		t.Fatal("StartNode on a non-empty storage succeeded")
	}
	cfg.Applied = applied
	n, err = raft.RestartNode(cfg)
	must(t, err)
	defer n.Stop()
	if s := n.Status(); s.Term == 0 || s.Commit < applied {
		t.Fatalf("restarted status %s, want the term and commit kept", s)
	}
}

package raftcmp

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync"

	etcdraft "go.etcd.io/raft/v3"
	etcdpb "go.etcd.io/raft/v3/raftpb"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// SingleNode is one voter driven through an implementation's goroutine Node
// interface: proposals cross a channel into the node's goroutine, and a
// second goroutine handles Readys, as a server would.
type SingleNode interface {
	// Propose proposes data and waits until the node accepted it.
	Propose(ctx context.Context, data []byte) error
	// WaitCommitted waits until n non-empty entries were committed.
	WaitCommitted(ctx context.Context, n int) error
	// Stop stops every goroutine of the node.
	Stop()
}

// NodeImpls lists the SingleNode constructors by implementation name.
var NodeImpls = []struct {
	Name string
	New  func() (SingleNode, error)
}{
	{"synod", func() (SingleNode, error) { return newSynodNode() }},
	{"etcd", func() (SingleNode, error) { return newEtcdNode() }},
}

// commitCounter counts committed entries and wakes waiters.
type commitCounter struct {
	mu        sync.Mutex
	cond      *sync.Cond
	committed int
	stopped   bool
}

func newCommitCounter() *commitCounter {
	c := &commitCounter{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *commitCounter) add(n int) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	c.committed += n
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *commitCounter) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *commitCounter) wait(ctx context.Context, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.committed < n && !c.stopped && ctx.Err() == nil {
		c.cond.Wait()
	}
	if c.committed < n {
		return fmt.Errorf("raftcmp: %d of %d entries committed", c.committed, n)
	}
	return nil
}

type synodNode struct {
	node    raft.Node
	counter *commitCounter
	done    chan struct{}
	wg      sync.WaitGroup
}

func newSynodNode() (*synodNode, error) {
	st := raft.NewMemoryStorage()
	n, err := raft.StartNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st,
		Logger: slog.New(slog.DiscardHandler)}, []raft.Peer{{ID: 1}})
	if err != nil {
		return nil, err
	}
	s := &synodNode{node: n, counter: newCommitCounter(), done: make(chan struct{})}
	leader := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		campaigned, isLeader := false, false
		for {
			select {
			case <-s.done:
				return
			case rd := <-n.Ready():
				_ = st.Append(rd.Entries)
				if !raft.IsEmptyHardState(rd.HardState) {
					_ = st.SetHardState(rd.HardState)
				}
				data := 0
				for _, e := range rd.CommittedEntries {
					if e.Type == pb.EntryConfChange {
						cc, _ := pb.ConfChangeFromEntry(e)
						n.ApplyConfChange(cc)
					} else if len(e.Data) > 0 {
						data++
					}
				}
				s.counter.add(data)
				if rd.SoftState != nil && rd.SoftState.RaftState == raft.StateLeader && !isLeader {
					isLeader = true
					close(leader)
				}
				n.Advance()
				// The bootstrap conf change must be applied before campaigning.
				if !campaigned && n.Status().Applied >= 1 {
					campaigned = true
					go func() { _ = n.Campaign(context.Background()) }()
				}
			}
		}
	}()
	<-leader
	return s, nil
}

func (s *synodNode) Propose(ctx context.Context, data []byte) error { return s.node.Propose(ctx, data) }

func (s *synodNode) WaitCommitted(ctx context.Context, n int) error { return s.counter.wait(ctx, n) }

func (s *synodNode) Stop() {
	close(s.done)
	s.wg.Wait()
	s.counter.stop()
	s.node.Stop()
}

type etcdNode struct {
	node    etcdraft.Node
	counter *commitCounter
	done    chan struct{}
	wg      sync.WaitGroup
}

func newEtcdNode() (*etcdNode, error) {
	st := etcdraft.NewMemoryStorage()
	n := etcdraft.StartNode(&etcdraft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256,
		Logger: &etcdraft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}}, []etcdraft.Peer{{ID: 1}})
	s := &etcdNode{node: n, counter: newCommitCounter(), done: make(chan struct{})}
	leader := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		campaigned, isLeader := false, false
		for {
			select {
			case <-s.done:
				return
			case rd := <-n.Ready():
				_ = st.Append(rd.Entries)
				if !etcdraft.IsEmptyHardState(rd.HardState) {
					_ = st.SetHardState(rd.HardState)
				}
				data := 0
				for _, e := range rd.CommittedEntries {
					if e.Type == etcdpb.EntryConfChange {
						var cc etcdpb.ConfChange
						_ = cc.Unmarshal(e.Data)
						n.ApplyConfChange(cc)
					} else if len(e.Data) > 0 {
						data++
					}
				}
				s.counter.add(data)
				if rd.SoftState != nil && rd.SoftState.RaftState == etcdraft.StateLeader && !isLeader {
					isLeader = true
					close(leader)
				}
				n.Advance()
				if !campaigned && n.Status().Applied >= 1 {
					campaigned = true
					go func() { _ = n.Campaign(context.Background()) }()
				}
			}
		}
	}()
	<-leader
	return s, nil
}

func (s *etcdNode) Propose(ctx context.Context, data []byte) error { return s.node.Propose(ctx, data) }

func (s *etcdNode) WaitCommitted(ctx context.Context, n int) error { return s.counter.wait(ctx, n) }

func (s *etcdNode) Stop() {
	close(s.done)
	s.wg.Wait()
	s.counter.stop()
	s.node.Stop()
}

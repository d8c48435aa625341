package raftcmp

import (
	"fmt"
	"io"
	"log"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Etcd is a Cluster of etcd's raft, used in its classic mode (storage
// writes made by the application while handling each Ready, not the
// asynchronous MsgStorageAppend messages).
type Etcd struct {
	nodes  []*raft.RawNode // nodes[i] is member i+1
	stores []*raft.MemoryStorage
	// queue holds the messages sent in the last round, delivered next round.
	queue []pb.Message
	// committed counts the non-empty entries committed on the leader.
	committed int
	counts    Counts
}

// NewEtcd starts an etcd cluster of voters members and elects member 1.
func NewEtcd(voters int) (*Etcd, error) {
	c := &Etcd{}
	logger := &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
	ids := voterIDs(voters)
	for _, id := range ids {
		st := raft.NewMemoryStorage()
		snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: ids}}}
		if err := st.ApplySnapshot(snap); err != nil {
			return nil, err
		}
		rn, err := raft.NewRawNode(&raft.Config{
			ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Logger: logger,
			MaxSizePerMsg: maxSizePerMsg, MaxInflightMsgs: maxInflightMsgs,
		})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, rn)
		c.stores = append(c.stores, st)
	}
	if err := c.nodes[0].Campaign(); err != nil {
		return nil, err
	}
	if err := c.Settle(); err != nil {
		return nil, err
	}
	if st := c.nodes[0].BasicStatus(); st.RaftState != raft.StateLeader {
		return nil, fmt.Errorf("raftcmp: etcd member 1 is %s after its campaign, want leader", st.RaftState)
	}
	return c, nil
}

// Propose implements Cluster.
func (c *Etcd) Propose(data []byte) error { return c.nodes[0].Propose(data) }

// RunUntilCommitted implements Cluster.
func (c *Etcd) RunUntilCommitted(n int) error {
	for c.committed < n {
		busy, err := c.round()
		if err != nil {
			return err
		}
		if !busy {
			return errIdle(c.committed, n)
		}
	}
	return nil
}

// Settle implements Cluster.
func (c *Etcd) Settle() error {
	for {
		busy, err := c.round()
		if err != nil || !busy {
			return err
		}
	}
}

// Applied implements Cluster.
func (c *Etcd) Applied() []uint64 {
	var applied []uint64
	for _, rn := range c.nodes {
		applied = append(applied, rn.BasicStatus().Applied)
	}
	return applied
}

// Counts implements Cluster.
func (c *Etcd) Counts() Counts { return c.counts }

// round delivers the queued messages, then handles one Ready on every
// member that has one. It reports whether there was anything to do.
func (c *Etcd) round() (bool, error) {
	busy := len(c.queue) > 0
	// As with synod, Step never sends on our queue.
	for _, m := range c.queue {
		if err := c.nodes[m.To-1].Step(m); err != nil {
			return false, fmt.Errorf("raftcmp: etcd member %d: step %s from %d: %w", m.To, m.Type, m.From, err)
		}
	}
	c.counts.Messages += len(c.queue)
	c.queue = c.queue[:0]
	for i, rn := range c.nodes {
		if rn.HasReady() {
			if err := c.handleReady(i); err != nil {
				return false, err
			}
			busy = true
		}
	}
	return busy, nil
}

// handleReady handles one Ready of nodes[i] in etcd's classic order:
// persist, send Messages, apply, Advance. Applying is counting the
// leader's committed non-empty entries.
func (c *Etcd) handleReady(i int) error {
	rn, st := c.nodes[i], c.stores[i]
	rd := rn.Ready()
	c.counts.Readies++
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := st.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := st.Append(rd.Entries); err != nil {
		return err
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := st.SetHardState(rd.HardState); err != nil {
			return err
		}
	}
	c.queue = append(c.queue, rd.Messages...)
	if i == 0 {
		for _, e := range rd.CommittedEntries {
			if e.Type == pb.EntryNormal && len(e.Data) > 0 {
				c.committed++
			}
		}
	}
	rn.Advance(rd)
	return nil
}

package server

import (
	"bytes"
	"fmt"

	"github.com/synod-db/synod/raft/raftpb"
)

// memberEnv is the Server as its applier sees it (applyEnv): the raft
// node, the transport and the snapshots the applier's work affects.
type memberEnv Server

var _ applyEnv = (*memberEnv)(nil)

func (e *memberEnv) applyConfChange(cc raftpb.ConfChange) { e.node.ApplyConfChange(cc) }

func (e *memberEnv) removedSelf() {
	e.lg.Warn("this member was removed from the cluster; stopping")
	e.removedOnce.Do(func() { close(e.removed) })
}

// syncPeers makes the transport's peers the member list.
func (e *memberEnv) syncPeers() {
	s := (*Server)(e)
	for _, m := range s.members.list() {
		if m.ID != s.id {
			if err := s.tr.AddPeer(m.ID, m.PeerURLs); err != nil {
				s.lg.Error("cannot reach member", "member", fmt.Sprintf("%x", m.ID), "err", err)
			}
		}
	}
}

// peerChanged tells the transport about an accepted change.
func (e *memberEnv) peerChanged(cc raftpb.ConfChange) {
	s := (*Server)(e)
	switch cc.Type {
	case raftpb.ConfChangeRemoveNode:
		s.tr.RemovePeer(cc.NodeID)
	default:
		if m, ok := s.members.get(cc.NodeID); ok {
			if err := s.tr.AddPeer(m.ID, m.PeerURLs); err != nil {
				s.lg.Error("cannot reach new member", "member", fmt.Sprintf("%x", m.ID), "err", err)
			}
		}
	}
}

// startSnapshot syncs the key space, which makes everything applied so
// far durable, then records the snapshot and lets the WAL drop what
// precedes it, on a goroutine of its own: the applier goes on meanwhile.
func (e *memberEnv) startSnapshot(meta raftpb.SnapshotMetadata) bool {
	s := (*Server)(e)
	if !s.snapshotting.CompareAndSwap(false, true) {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.snapshotting.Store(false)
		if err := s.kv.Sync(); err != nil {
			s.lg.Error("sync key space before snapshot", "index", meta.Index, "err", err)
			return
		}
		if err := s.logs.CreateSnapshot(meta, bytes.NewReader(nil)); err != nil {
			s.lg.Error("save snapshot", "index", meta.Index, "err", err)
			return
		}
		s.lg.Info("saved snapshot and compacted the raft log", "index", meta.Index)
	}()
	return true
}

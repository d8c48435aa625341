package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/kvapply"
)

// applyLoop applies committed entries in log order. It alone writes the
// key space and the member list.
func (s *Server) applyLoop() {
	for {
		select {
		case j := <-s.applyc:
			if err := s.applyJob(j); err != nil {
				s.fatal("apply committed entries", err)
				return
			}
		case <-s.stopping:
			return
		}
	}
}

func (s *Server) applyJob(j applyJob) error {
	if j.snapshot != nil {
		if err := s.applySnapshot(*j.snapshot); err != nil {
			return err
		}
	}
	last := s.applied.applied.Load()
	for i := range j.entries {
		e := &j.entries[i]
		if e.Index <= last && j.snapshot != nil {
			continue // covered by the snapshot just installed
		}
		if e.Term > s.appliedTerm {
			// The first entry of a new term: proposals made under older
			// terms and still waiting were not in the new leader's log.
			if s.appliedTerm != 0 {
				s.w.failOlderThan(e.Term, ErrLeaderChanged)
			}
			s.appliedTerm = e.Term
		}
		var err error
		switch e.Type {
		case raftpb.EntryNormal:
			err = s.applyNormal(e)
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			err = s.applyConfChange(e)
		}
		if err != nil {
			return err
		}
		last = e.Index
	}
	if len(j.entries) > 0 || j.snapshot != nil {
		s.applied.trigger(last)
		s.maybeSnapshot(last)
	}
	return nil
}

// applySnapshot replaces the key space with a snapshot the raft loop has
// persisted.
func (s *Server) applySnapshot(meta raftpb.SnapshotMetadata) error {
	_, rc, err := s.snaps.LoadAt(meta.Term, meta.Index)
	if err != nil {
		return fmt.Errorf("load snapshot %d: %w", meta.Index, err)
	}
	defer rc.Close()
	if err := s.kv.Restore(rc); err != nil {
		return fmt.Errorf("restore key space from snapshot %d: %w", meta.Index, err)
	}
	s.watchRestored()
	if err := s.reloadMembers(); err != nil {
		return err
	}
	if err := s.reloadLeases(); err != nil {
		return err
	}
	alarms, err := loadAlarms(s.kv)
	if err != nil {
		return err
	}
	s.alarms.replace(alarms)
	s.syncPeers()
	s.confState = meta.ConfState
	s.snapIndex = meta.Index
	s.appliedTerm = meta.Term
	s.applied.trigger(meta.Index)
	s.lg.Info("applied snapshot from leader", "index", meta.Index, "term", meta.Term)
	return nil
}

// syncPeers makes the transport's peers the member list.
func (s *Server) syncPeers() {
	for _, m := range s.members.list() {
		if m.ID != s.id {
			if err := s.tr.AddPeer(m.ID, m.PeerURLs); err != nil {
				s.lg.Error("cannot reach member", "member", fmt.Sprintf("%x", m.ID), "err", err)
			}
		}
	}
}

// applyNormal applies one client request.
func (s *Server) applyNormal(e *raftpb.Entry) error {
	if len(e.Data) == 0 {
		// A new leader's empty entry.
		return s.kv.SetConsistentIndex(e.Index)
	}
	var req pb.InternalRaftRequest
	if err := proto.Unmarshal(e.Data, &req); err != nil {
		// Only this member's own proposals reach the log, so this is a bug
		// or corruption; skip it rather than stop every member.
		s.lg.Error("skipping an undecodable raft entry", "index", e.Index, "err", err)
		return s.kv.SetConsistentIndex(e.Index)
	}
	if e.Index <= s.kv.ConsistentIndex() {
		// The key space already holds this entry: applied before a
		// restart, or inside a snapshot's key space that was taken after
		// it. Its response cannot be rebuilt; a proposer waiting here
		// learns that the request committed with an unknown result.
		s.w.trigger(req.ID, applyResult{err: ErrResultUnknown})
		return nil
	}
	resp, err := s.applyRequest(e.Index, e.Term, &req)
	if errors.Is(err, mvcc.ErrClosed) || isStorageFailure(err) {
		// Not a property of the request: another member applying the
		// same entry would succeed, so going on would diverge.
		return fmt.Errorf("apply entry %d: %w", e.Index, err)
	}
	s.w.trigger(req.ID, applyResult{resp: resp, err: err})
	return nil
}

// afterWrite tells the watchers and the lessor about the changes of one
// applied write (revision rev). Every path that changes the key space
// calls it, lease revocations included.
func (s *Server) afterWrite(rev int64, events []mvcc.Event) {
	s.leaseTrack(events)
	s.watchNotify(rev, events)
}

// kvResponse is the response of a KV write.
type kvResponse interface {
	*pb.PutResponse | *pb.DeleteRangeResponse | *pb.TxnResponse
}

// applyKV runs one KV write as entry index in its own revision, hands its
// events on and sets the response's revision. A nil response with a nil
// error means the entry was applied before a restart.
func applyKV[R kvResponse](s *Server, index uint64, fn func(tx *mvcc.WriteTxn) (R, error)) (any, error) {
	var resp R
	done := false
	rev, events, err := s.kv.Write(index, func(tx *mvcc.WriteTxn) error {
		var err error
		resp, err = fn(tx)
		done = err == nil
		return err
	})
	if err != nil || !done {
		return nil, err
	}
	s.afterWrite(rev, events)
	setRevision(resp, rev)
	return resp, nil
}

// setRevision sets the header revision of a KV write's response.
func setRevision(resp any, rev int64) {
	h := &pb.ResponseHeader{Revision: rev}
	switch r := resp.(type) {
	case *pb.PutResponse:
		r.Header = h
	case *pb.DeleteRangeResponse:
		r.Header = h
	case *pb.TxnResponse:
		r.Header = h
	}
}

// applyRequest applies a decoded request as entry index.
func (s *Server) applyRequest(index, term uint64, req *pb.InternalRaftRequest) (any, error) {
	switch {
	case req.Put != nil:
		return applyKV(s, index, func(tx *mvcc.WriteTxn) (*pb.PutResponse, error) {
			return kvapply.Put(tx, req.Put, s.leaseChecker())
		})
	case req.DeleteRange != nil:
		return applyKV(s, index, func(tx *mvcc.WriteTxn) (*pb.DeleteRangeResponse, error) {
			return kvapply.DeleteRange(tx, req.DeleteRange)
		})
	case req.Txn != nil:
		return applyKV(s, index, func(tx *mvcc.WriteTxn) (*pb.TxnResponse, error) {
			return kvapply.Txn(tx, req.Txn, s.leaseChecker())
		})
	case req.Compaction != nil:
		err := s.kv.Compact(index, req.Compaction.Revision)
		if err != nil {
			if serr := s.kv.SetConsistentIndex(index); serr != nil {
				return nil, serr
			}
			return nil, err
		}
		return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: s.kv.Rev()}}, nil
	case req.ClusterMemberAttrSet != nil:
		a := req.ClusterMemberAttrSet
		ok := s.members.update(a.Member_ID, func(m *Member) {
			if a.MemberAttributes != nil {
				m.Name = a.MemberAttributes.Name
				m.ClientURLs = a.MemberAttributes.ClientUrls
			}
		})
		if !ok {
			return nil, s.kv.SetConsistentIndex(index)
		}
		return nil, s.kv.SetMeta(index, metaMembers, s.members.marshal())
	case req.Alarm != nil:
		return s.applyAlarm(index, req.Alarm)
	case req.LeaseGrant != nil, req.LeaseRevoke != nil, req.LeaseCheckpoint != nil:
		return s.applyLease(index, term, req)
	}
	if err := s.kv.SetConsistentIndex(index); err != nil {
		return nil, err
	}
	return nil, status.Errorf(codes.Unimplemented, "server: unsupported request in raft entry %d", index)
}

// isStorageFailure reports whether an apply error came from the storage
// engine rather than from the request (etcd's codes for those).
func isStorageFailure(err error) bool {
	if err == nil || errors.Is(err, mvcc.ErrCompacted) || errors.Is(err, mvcc.ErrFutureRev) {
		return false
	}
	st, ok := status.FromError(err)
	if !ok {
		return true // kvapply answers with status errors; the rest is the engine's
	}
	switch st.Code() {
	case codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// confChangeResult answers a membership change proposal.
type confChangeResult struct {
	members []Member
}

// applyConfChange applies a membership change. Whether it is accepted
// depends only on the raft configuration before it (never on state that
// may be newer, like the stored member list), so replaying the log after
// a restart makes exactly the same decisions.
func (s *Server) applyConfChange(e *raftpb.Entry) error {
	cci, err := raftpb.ConfChangeFromEntry(*e)
	if err != nil {
		s.lg.Error("skipping an undecodable conf change", "index", e.Index, "err", err)
		return s.kv.SetConsistentIndex(e.Index)
	}
	cc, ok := cci.AsV1()
	if !ok {
		s.lg.Error("skipping a joint conf change (not proposed by synod)", "index", e.Index)
		cc = raftpb.ConfChange{}
	}
	rejectErr := s.checkConfChange(cc)
	if rejectErr != nil {
		cc.NodeID = 0 // raft ignores it, but must see it to clear the pending change
	}
	s.node.ApplyConfChange(cc)
	if rejectErr == nil {
		// Track the configuration from the log alone: raft's own view may
		// be ahead of it (a new cluster's members are in raft's
		// configuration before their entries are applied).
		s.confState = nextConfState(s.confState, cc)
	}
	fresh := e.Index > s.kv.ConsistentIndex()
	if rejectErr == nil && fresh {
		s.applyMemberChange(cc)
		if err := s.kv.SetMeta(e.Index, metaMembers, s.members.marshal()); err != nil {
			return err
		}
	} else if err := s.kv.SetConsistentIndex(e.Index); err != nil {
		return err
	}
	if rejectErr == nil {
		s.updatePeer(cc)
	}
	s.w.trigger(cc.ID, applyResult{resp: confChangeResult{members: s.members.list()}, err: rejectErr})
	if rejectErr == nil && cc.Type == raftpb.ConfChangeRemoveNode && cc.NodeID == s.id {
		s.lg.Warn("this member was removed from the cluster; stopping")
		s.removedOnce.Do(func() { close(s.removed) })
	}
	return nil
}

// checkConfChange validates a change against the configuration.
func (s *Server) checkConfChange(cc raftpb.ConfChange) error {
	if cc.NodeID == 0 {
		return ErrMemberNotFound
	}
	voter := containsID(s.confState.Voters, cc.NodeID)
	learner := containsID(s.confState.Learners, cc.NodeID)
	switch cc.Type {
	case raftpb.ConfChangeAddNode:
		if voter {
			return ErrMemberExists
		}
	case raftpb.ConfChangeAddLearnerNode:
		if voter || learner {
			return ErrMemberExists
		}
	case raftpb.ConfChangeRemoveNode, raftpb.ConfChangeUpdateNode:
		if !voter && !learner {
			return ErrMemberNotFound
		}
	}
	return nil
}

// applyMemberChange updates the member list for an accepted change.
func (s *Server) applyMemberChange(cc raftpb.ConfChange) {
	switch cc.Type {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
		var m Member
		if err := json.Unmarshal(cc.Context, &m); err != nil || m.ID != cc.NodeID {
			s.lg.Error("conf change without a valid member", "node", fmt.Sprintf("%x", cc.NodeID), "err", err)
			m = Member{ID: cc.NodeID}
		}
		m.IsLearner = cc.Type == raftpb.ConfChangeAddLearnerNode
		if old, ok := s.members.get(cc.NodeID); ok {
			// Promotion or URL update: keep the attributes it published.
			m.Name, m.ClientURLs = old.Name, old.ClientURLs
			if cc.Type == raftpb.ConfChangeUpdateNode {
				m.IsLearner = old.IsLearner
			}
		}
		s.members.add(m)
	case raftpb.ConfChangeRemoveNode:
		s.members.remove(cc.NodeID)
	}
}

// updatePeer tells the transport about an accepted change.
func (s *Server) updatePeer(cc raftpb.ConfChange) {
	if cc.NodeID == s.id {
		return
	}
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

// nextConfState returns cs after the accepted single change cc.
func nextConfState(cs raftpb.ConfState, cc raftpb.ConfChange) raftpb.ConfState {
	without := func(ids []uint64) []uint64 {
		return slices.DeleteFunc(slices.Clone(ids), func(x uint64) bool { return x == cc.NodeID })
	}
	out := raftpb.ConfState{Voters: without(cs.Voters), Learners: without(cs.Learners)}
	switch cc.Type {
	case raftpb.ConfChangeAddNode:
		out.Voters = append(out.Voters, cc.NodeID)
	case raftpb.ConfChangeAddLearnerNode:
		out.Learners = append(out.Learners, cc.NodeID)
	case raftpb.ConfChangeUpdateNode:
		return cs
	}
	slices.Sort(out.Voters)
	slices.Sort(out.Learners)
	return out
}

func containsID(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// maybeSnapshot compacts the raft log once SnapshotCount entries were
// applied since the last snapshot. The key space in Pebble is itself the
// durable state machine, so the snapshot recorded locally is metadata
// only (its cost does not grow with the key space): a background
// goroutine syncs the key space, which makes everything applied so far
// durable, then records the snapshot and lets the WAL drop what precedes
// it. A follower that needs a snapshot gets the key space as it is when
// the snapshot is sent (see peerHandler.OpenSnapshot).
func (s *Server) maybeSnapshot(applied uint64) {
	if applied-s.snapIndex < s.cfg.SnapshotCount || s.snapshotting.Load() {
		return
	}
	meta := raftpb.SnapshotMetadata{Index: applied, Term: s.appliedTerm, ConfState: s.confState}
	s.snapIndex = meta.Index
	s.snapshotting.Store(true)
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
}

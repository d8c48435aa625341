package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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
			if j.applied != nil {
				close(j.applied)
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
	// Consecutive KV writes are applied in one group (one Pebble commit);
	// anything else, and a new term, commits the group first.
	var group []kvWrite
	for i := range j.entries {
		e := &j.entries[i]
		if e.Index <= last && j.snapshot != nil {
			continue // covered by the snapshot just installed
		}
		s.logBytes += e.PayloadSize()
		if e.Term > s.appliedTerm {
			// The first entry of a new term: proposals made under older
			// terms and still waiting were not in the new leader's log
			// (those of the group did commit: they are answered first).
			if err := s.applyKVWrites(group); err != nil {
				return err
			}
			group = group[:0]
			if s.appliedTerm != 0 {
				s.w.failOlderThan(e.Term, ErrLeaderChanged)
			}
			s.appliedTerm = e.Term
		}
		var req *pb.InternalRaftRequest
		if e.Type == raftpb.EntryNormal {
			req = s.decodeEntry(e)
			if req != nil && isKVWrite(req) && e.Index > s.kv.ConsistentIndex() {
				group = append(group, kvWrite{index: e.Index, req: req})
				last = e.Index
				continue
			}
		}
		if err := s.applyKVWrites(group); err != nil {
			return err
		}
		group = group[:0]
		var err error
		switch e.Type {
		case raftpb.EntryNormal:
			err = s.applyNormal(e, req)
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			err = s.applyConfChange(e)
		}
		if err != nil {
			return err
		}
		last = e.Index
	}
	if err := s.applyKVWrites(group); err != nil {
		return err
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

// decodeEntry decodes a normal entry's request; nil for a new leader's
// empty entry or one that does not decode (logged: only this member's
// own proposals reach the log, so that is a bug or corruption, and
// skipping it is better than stopping every member).
func (s *Server) decodeEntry(e *raftpb.Entry) *pb.InternalRaftRequest {
	if len(e.Data) == 0 {
		return nil
	}
	req := &pb.InternalRaftRequest{}
	if err := proto.Unmarshal(e.Data, req); err != nil {
		s.lg.Error("skipping an undecodable raft entry", "index", e.Index, "err", err)
		return nil
	}
	return req
}

// applyNormal applies one normal entry whose request decodeEntry
// returned (nil: nothing to apply but the index).
func (s *Server) applyNormal(e *raftpb.Entry, req *pb.InternalRaftRequest) error {
	if req == nil {
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
	if isKVWrite(req) {
		return s.applyKVWrites([]kvWrite{{index: e.Index, req: req}})
	}
	resp, err := s.applyRequest(e.Index, e.Term, req)
	if err := applyFailure(e.Index, err); err != nil {
		return err
	}
	s.w.trigger(req.ID, applyResult{resp: resp, err: err})
	return nil
}

// applyFailure returns the error that must stop the member when applying
// entry index failed with err: one that is not a property of the request
// (another member applying the same entry would succeed, so going on
// would diverge); nil for a request's own failure.
func applyFailure(index uint64, err error) error {
	if errors.Is(err, mvcc.ErrClosed) || isStorageFailure(err) {
		return fmt.Errorf("apply entry %d: %w", index, err)
	}
	return nil
}

// kvWrite is a decoded KV write (put, delete or txn) waiting to be
// applied in a group.
type kvWrite struct {
	index uint64
	req   *pb.InternalRaftRequest
}

// isKVWrite reports whether req only writes the key space, so that it can
// share a Pebble commit with its neighbours.
func isKVWrite(req *pb.InternalRaftRequest) bool {
	return req.Put != nil || req.DeleteRange != nil || req.Txn != nil
}

// maxGroupBytes bounds a group's Pebble batch: a batch larger than half
// a memtable would make Pebble switch memtables for it.
const maxGroupBytes = 1 << 20

// kvApplied is a KV write applied in a group, answered once the group
// is committed.
type kvApplied struct {
	id     uint64
	resp   any
	rev    int64
	events []mvcc.Event
	err    error
}

// applyKVWrites applies writes in as few groups as their size allows.
// Their results, watch events and lease attachments are handed on only
// once their group is committed, so nobody sees a change that a crash
// could still take back from this member's key space.
func (s *Server) applyKVWrites(writes []kvWrite) error {
	for len(writes) > 0 {
		n, err := s.applyKVGroup(writes)
		if err != nil {
			return err
		}
		writes = writes[n:]
	}
	return nil
}

// applyKVGroup applies a prefix of writes in one group and returns its
// length.
func (s *Server) applyKVGroup(writes []kvWrite) (int, error) {
	g, err := s.kv.Group()
	if err != nil {
		return 0, fmt.Errorf("apply entry %d: %w", writes[0].index, err)
	}
	defer g.Close()
	done := make([]kvApplied, 0, min(len(writes), 64))
	n := 0
	for n < len(writes) && (n == 0 || g.Size() < maxGroupBytes) {
		w := writes[n]
		resp, rev, events, err := applyKVWrite(g, w.index, w.req, s.leaseChecker())
		if errors.Is(err, mvcc.ErrGroupUndo) {
			// A failed write left changes behind: apply the writes before
			// it as their own group, and start the next one with it.
			g.Close()
			return s.applyKVGroup(writes[:n])
		}
		if err := applyFailure(w.index, err); err != nil {
			return 0, err
		}
		done = append(done, kvApplied{id: w.req.ID, resp: resp, rev: rev, events: events, err: err})
		n++
	}
	if err := g.Commit(); err != nil {
		return 0, fmt.Errorf("apply entries %d-%d: %w", writes[0].index, writes[n-1].index, err)
	}
	for i := range done {
		d := &done[i]
		if d.err == nil && d.resp != nil {
			s.afterWrite(d.rev, d.events)
		}
		s.w.trigger(d.id, applyResult{resp: d.resp, err: d.err})
	}
	return n, nil
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

// applyKVWrite runs one KV write request as entry index in its own
// revision of g and sets the response's revision. It returns the
// response and the revision and events to hand on once g is committed.
func applyKVWrite(g *mvcc.WriteGroup, index uint64, req *pb.InternalRaftRequest, leases kvapply.LeaseChecker) (any, int64, []mvcc.Event, error) {
	switch {
	case req.Put != nil:
		return writeKV(g, index, func(tx *mvcc.WriteTxn) (*pb.PutResponse, error) {
			return kvapply.Put(tx, req.Put, leases)
		})
	case req.DeleteRange != nil:
		return writeKV(g, index, func(tx *mvcc.WriteTxn) (*pb.DeleteRangeResponse, error) {
			return kvapply.DeleteRange(tx, req.DeleteRange)
		})
	default:
		return writeKV(g, index, func(tx *mvcc.WriteTxn) (*pb.TxnResponse, error) {
			return kvapply.Txn(tx, req.Txn, leases)
		})
	}
}

// writeKV runs fn as entry index in g: see applyKVWrite.
func writeKV[R kvResponse](g *mvcc.WriteGroup, index uint64, fn func(tx *mvcc.WriteTxn) (R, error)) (any, int64, []mvcc.Event, error) {
	var resp R
	done := false
	rev, events, err := g.Write(index, func(tx *mvcc.WriteTxn) error {
		var err error
		resp, err = fn(tx)
		done = err == nil
		return err
	})
	if err != nil || !done {
		// Not done without an error: the key space held the entry already.
		return nil, 0, nil, err
	}
	setRevision(resp, rev)
	return resp, rev, events, nil
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
	case req.Compaction != nil:
		err := s.kv.Compact(index, req.Compaction.Revision)
		if err != nil {
			if serr := s.kv.SetConsistentIndex(index); serr != nil {
				return nil, serr
			}
			if errors.Is(err, mvcc.ErrCompacted) || errors.Is(err, mvcc.ErrFutureRev) {
				err = kvapply.Refuse(err)
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
	return nil, kvapply.Refuse(fmt.Errorf("%w (raft entry %d)", ErrUnsupportedRequest, index))
}

// ErrUnsupportedRequest answers a committed request this member does not
// know how to apply: a newer member proposed it. Every member of this
// version refuses it the same way.
var ErrUnsupportedRequest = errors.New("server: unsupported request")

// isStorageFailure reports whether an apply error came from the storage
// engine rather than from the request: whatever is not a refusal
// (kvapply.RequestError).
func isStorageFailure(err error) bool {
	return err != nil && !kvapply.IsRequestError(err)
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

// maybeSnapshot compacts the raft log once SnapshotCount entries, or
// SnapshotLogBytes of them, were applied since the last snapshot. The key space in Pebble is itself the
// durable state machine, so the snapshot recorded locally is metadata
// only (its cost does not grow with the key space): a background
// goroutine syncs the key space, which makes everything applied so far
// durable, then records the snapshot and lets the WAL drop what precedes
// it. A follower that needs a snapshot gets the key space as it is when
// the snapshot is sent (see peerHandler.OpenSnapshot).
func (s *Server) maybeSnapshot(applied uint64) {
	byCount := applied-s.snapIndex >= s.cfg.SnapshotCount
	byBytes := s.cfg.SnapshotLogBytes > 0 && s.logBytes >= s.cfg.SnapshotLogBytes
	if !byCount && !byBytes || s.snapshotting.Load() {
		return
	}
	s.logBytes = 0
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

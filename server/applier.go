package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/kvapply"
	"github.com/synod-db/synod/server/watch"
	"github.com/synod-db/synod/snap"
)

// applier is the member's state machine. It applies committed entries,
// in log order, to the key space, the member list, the alarms and the
// lease table, and it alone writes them: everyone else only reads them
// (each is safe for concurrent readers). Its input is the committed
// entries and snapshots the raft loop hands over (applyJob); its output
// is the results it gives the proposers waiting in the wait registry, the
// notifications of watchers (the watch hub) and of the lessor, and the
// effects on the rest of the member it asks for through applyEnv.
//
// Invariants:
//   - an entry at or below the key space's consistent index is already in
//     it (applied before a restart, or part of a snapshot) and changes
//     nothing; so replaying the log after a crash is safe;
//   - whether an entry is applied or refused depends only on the state
//     the entries before it built (never on time, on the member or on the
//     stored member list for conf changes), so every member decides alike;
//   - a write's result, watch events and lease attachments are handed on
//     only once its Pebble commit is done.
//
// All fields below are owned by the apply goroutine once the member runs.
type applier struct {
	lg  *slog.Logger
	id  uint64 // this member
	cfg Config

	kv      *mvcc.Store
	snaps   *snap.Snapshotter // read: the snapshots the raft loop persisted
	members *membership
	alarms  *alarmSet
	leases  *leaseState
	watch   *watch.Hub
	w       *waitRegistry  // proposers waiting for results
	applied *appliedWaiter // readers waiting for an index
	env     applyEnv

	confState   raftpb.ConfState // as the applied log says (raft's may be ahead)
	appliedTerm uint64           // term of the last applied entry
	snapIndex   uint64           // index of the last snapshot taken or installed
	logBytes    uint64           // entry bytes applied since the last snapshot
}

// applyEnv is what the applier asks of the rest of the member.
type applyEnv interface {
	// applyConfChange hands an applied (or refused: NodeID 0) membership
	// change to raft.
	applyConfChange(cc raftpb.ConfChange)
	// peerChanged tells the transport about an accepted change of
	// another member (never this one).
	peerChanged(cc raftpb.ConfChange)
	// syncPeers makes the transport's peers the member list (after a
	// snapshot replaced it).
	syncPeers()
	// removedSelf says that this member was removed from the cluster.
	removedSelf()
	// startSnapshot records a snapshot at meta in the background: sync
	// the key space, then let the raft log drop what precedes it. It
	// reports false if one is still being taken.
	startSnapshot(meta raftpb.SnapshotMetadata) bool
}

// applyLoop is the apply goroutine: it runs the applier on each job the
// raft loop hands over, in log order, and stops the member if applying
// fails for any reason other than the request (see isStorageFailure).
func (s *Server) applyLoop() {
	for {
		select {
		case j := <-s.applyc:
			if err := s.ap.applyJob(j); err != nil {
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

// applyJob installs j's snapshot, if any, then applies j's entries.
func (a *applier) applyJob(j applyJob) error {
	if j.snapshot != nil {
		if err := a.applySnapshot(*j.snapshot); err != nil {
			return err
		}
	}
	last := a.applied.applied.Load()
	// Consecutive KV writes are applied in one group (one Pebble commit);
	// anything else, and a new term, commits the group first.
	var group []kvWrite
	for i := range j.entries {
		e := &j.entries[i]
		if e.Index <= last && j.snapshot != nil {
			continue // covered by the snapshot just installed
		}
		a.logBytes += e.PayloadSize()
		if e.Term > a.appliedTerm {
			// The first entry of a new term: proposals made under older
			// terms and still waiting were not in the new leader's log
			// (those of the group did commit: they are answered first).
			if err := a.applyKVWrites(group); err != nil {
				return err
			}
			group = group[:0]
			if a.appliedTerm != 0 {
				a.w.failOlderThan(e.Term, ErrLeaderChanged)
			}
			a.appliedTerm = e.Term
		}
		var req *pb.InternalRaftRequest
		var exp *expiry
		if e.Type == raftpb.EntryNormal {
			var err error
			if req, exp, err = a.decodeEntry(e); err != nil {
				return err
			}
			if req != nil && isKVWrite(req) && e.Index > a.kv.ConsistentIndex() {
				group = append(group, kvWrite{index: e.Index, req: req})
				last = e.Index
				continue
			}
		}
		if err := a.applyKVWrites(group); err != nil {
			return err
		}
		group = group[:0]
		var err error
		start := time.Now()
		switch e.Type {
		case raftpb.EntryNormal:
			err = a.applyNormal(e, req, exp)
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			err = a.applyConfChange(e)
		}
		if err != nil {
			return err
		}
		a.warnIfSlow(start, e.Index, e.Index)
		last = e.Index
	}
	if err := a.applyKVWrites(group); err != nil {
		return err
	}
	if len(j.entries) > 0 || j.snapshot != nil {
		a.applied.trigger(last)
		a.maybeSnapshot(last)
	}
	return nil
}

// warnIfSlow logs, in etcd's words, entries first to last whose apply
// began at start and took longer than the configured warning duration:
// a slow disk or an expensive request (a large range delete) shows
// there before it shows as a leader that cannot keep up.
func (a *applier) warnIfSlow(start time.Time, first, last uint64) {
	if took := time.Since(start); took > a.cfg.WarnApplyDuration {
		a.lg.Warn("apply request took too long", "took", took.String(), "expected-duration", a.cfg.WarnApplyDuration.String(),
			"first-index", first, "last-index", last)
	}
}

// applySnapshot replaces the key space with a snapshot the raft loop has
// persisted.
func (a *applier) applySnapshot(meta raftpb.SnapshotMetadata) error {
	_, rc, err := a.snaps.LoadAt(meta.Term, meta.Index)
	if err != nil {
		return fmt.Errorf("load snapshot %d: %w", meta.Index, err)
	}
	defer rc.Close()
	if err := a.kv.Restore(rc); err != nil {
		return fmt.Errorf("restore key space from snapshot %d: %w", meta.Index, err)
	}
	// Watchers catch up from the new key space's history now, rather
	// than at the next applied write.
	a.watch.Resync(a.kv.Rev())
	if err := loadMembers(a.kv, a.members); err != nil {
		return err
	}
	if err := a.leases.load(a.kv, a.lg); err != nil {
		return err
	}
	alarms, err := loadAlarms(a.kv)
	if err != nil {
		return err
	}
	a.alarms.replace(alarms)
	a.env.syncPeers()
	a.confState = meta.ConfState
	a.snapIndex = meta.Index
	a.appliedTerm = meta.Term
	a.applied.trigger(meta.Index)
	a.lg.Info("applied snapshot from leader", "index", meta.Index, "term", meta.Term)
	return nil
}

// decodeEntry decodes a normal entry (see entry.go): its request, nil
// for a new leader's empty entry, and the lease expiry it carries. An
// entry that does not decode is logged and skipped: only members'
// own proposals reach the log, so it is a bug or corruption, and
// skipping it is better than stopping every member. An entry of a newer
// format is an error: this member must be upgraded, and skipping it
// would make it diverge.
func (a *applier) decodeEntry(e *raftpb.Entry) (*pb.InternalRaftRequest, *expiry, error) {
	if len(e.Data) == 0 {
		return nil, nil, nil
	}
	req, exp, err := decodeEntry(e.Data)
	if errors.Is(err, errEntryVersion) {
		return nil, nil, fmt.Errorf("raft entry %d: %w", e.Index, err)
	}
	if err != nil {
		a.lg.Error("skipping an undecodable raft entry", "index", e.Index, "err", err)
		return nil, nil, nil
	}
	return req, exp, nil
}

// applyNormal applies one normal entry whose request and expiry
// decodeEntry returned (a nil request: nothing to apply but the index).
func (a *applier) applyNormal(e *raftpb.Entry, req *pb.InternalRaftRequest, exp *expiry) error {
	if req == nil {
		return a.kv.SetConsistentIndex(e.Index)
	}
	if e.Index <= a.kv.ConsistentIndex() {
		// The key space already holds this entry: applied before a
		// restart, or inside a snapshot's key space that was taken after
		// it. Its response cannot be rebuilt; a proposer waiting here
		// learns that the request committed with an unknown result.
		a.w.trigger(req.ID, applyResult{err: ErrResultUnknown})
		return nil
	}
	if isKVWrite(req) {
		return a.applyKVWrites([]kvWrite{{index: e.Index, req: req}})
	}
	resp, err := a.applyRequest(e.Index, e.Term, req, exp)
	if err := applyFailure(e.Index, err); err != nil {
		return err
	}
	a.w.trigger(req.ID, applyResult{resp: resp, err: err})
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
func (a *applier) applyKVWrites(writes []kvWrite) error {
	for len(writes) > 0 {
		n, err := a.applyKVGroup(writes)
		if err != nil {
			return err
		}
		writes = writes[n:]
	}
	return nil
}

// applyKVGroup applies a prefix of writes in one group and returns its
// length.
func (a *applier) applyKVGroup(writes []kvWrite) (int, error) {
	start := time.Now()
	g, err := a.kv.Group()
	if err != nil {
		return 0, fmt.Errorf("apply entry %d: %w", writes[0].index, err)
	}
	defer g.Close()
	done := make([]kvApplied, 0, min(len(writes), 64))
	n := 0
	for n < len(writes) && (n == 0 || g.Size() < maxGroupBytes) {
		w := writes[n]
		if a.alarms.active(pb.AlarmType_CORRUPT) {
			// Raised by an entry before this one: every member refuses
			// the write alike (etcd's corrupt applier).
			done = append(done, kvApplied{id: w.req.ID, err: ErrCorrupt})
			n++
			continue
		}
		resp, rev, events, err := applyKVWrite(g, w.index, w.req, a.leases.checker)
		if errors.Is(err, mvcc.ErrGroupUndo) {
			// A failed write left changes behind: apply the writes before
			// it as their own group, and start the next one with it.
			g.Close()
			return a.applyKVGroup(writes[:n])
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
	a.warnIfSlow(start, writes[0].index, writes[n-1].index)
	for i := range done {
		d := &done[i]
		if d.err == nil && d.resp != nil {
			a.afterWrite(d.rev, d.events)
		}
		a.w.trigger(d.id, applyResult{resp: d.resp, err: d.err})
	}
	return n, nil
}

// afterWrite tells the watchers and the lessor about the changes of one
// applied write (revision rev). Every path that changes the key space
// calls it, lease revocations included.
func (a *applier) afterWrite(rev int64, events []mvcc.Event) {
	a.leases.track(events)
	a.watch.Notify(rev, events)
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
func (a *applier) applyRequest(index, term uint64, req *pb.InternalRaftRequest, exp *expiry) (any, error) {
	switch {
	case req.Compaction != nil:
		err := a.kv.Compact(index, req.Compaction.Revision)
		if err != nil {
			if serr := a.kv.SetConsistentIndex(index); serr != nil {
				return nil, serr
			}
			if errors.Is(err, mvcc.ErrCompacted) || errors.Is(err, mvcc.ErrFutureRev) {
				err = kvapply.Refuse(err)
			}
			return nil, err
		}
		return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: a.kv.Rev()}}, nil
	case req.ClusterMemberAttrSet != nil:
		attr := req.ClusterMemberAttrSet
		ok := a.members.update(attr.Member_ID, func(m *Member) {
			if attr.MemberAttributes != nil {
				m.Name = attr.MemberAttributes.Name
				m.ClientURLs = attr.MemberAttributes.ClientUrls
			}
		})
		if !ok {
			return nil, a.kv.SetConsistentIndex(index)
		}
		return nil, a.kv.SetMeta(index, metaMembers, a.members.marshal())
	case req.Alarm != nil:
		return a.applyAlarm(index, req.Alarm)
	case req.LeaseGrant != nil, req.LeaseRevoke != nil, req.LeaseCheckpoint != nil:
		return a.applyLease(index, term, req, exp)
	}
	if err := a.kv.SetConsistentIndex(index); err != nil {
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
func (a *applier) applyConfChange(e *raftpb.Entry) error {
	cci, err := raftpb.ConfChangeFromEntry(*e)
	if err != nil {
		a.lg.Error("skipping an undecodable conf change", "index", e.Index, "err", err)
		return a.kv.SetConsistentIndex(e.Index)
	}
	cc, ok := cci.AsV1()
	if !ok {
		a.lg.Error("skipping a joint conf change (not proposed by synod)", "index", e.Index)
		cc = raftpb.ConfChange{}
	}
	rejectErr := a.checkConfChange(cc)
	if rejectErr != nil {
		cc.NodeID = 0 // raft ignores it, but must see it to clear the pending change
	}
	a.env.applyConfChange(cc)
	if rejectErr == nil {
		// Track the configuration from the log alone: raft's own view may
		// be ahead of it (a new cluster's members are in raft's
		// configuration before their entries are applied).
		a.confState = nextConfState(a.confState, cc)
	}
	fresh := e.Index > a.kv.ConsistentIndex()
	if rejectErr == nil && fresh {
		a.applyMemberChange(cc)
		if err := a.kv.SetMeta(e.Index, metaMembers, a.members.marshal()); err != nil {
			return err
		}
	} else if err := a.kv.SetConsistentIndex(e.Index); err != nil {
		return err
	}
	if rejectErr == nil && cc.NodeID != a.id {
		a.env.peerChanged(cc)
	}
	a.w.trigger(cc.ID, applyResult{resp: confChangeResult{members: a.members.list()}, err: rejectErr})
	if rejectErr == nil && cc.Type == raftpb.ConfChangeRemoveNode && cc.NodeID == a.id {
		a.env.removedSelf()
	}
	return nil
}

// checkConfChange validates a change against the configuration.
func (a *applier) checkConfChange(cc raftpb.ConfChange) error {
	if cc.NodeID == 0 {
		return ErrMemberNotFound
	}
	voter := containsID(a.confState.Voters, cc.NodeID)
	learner := containsID(a.confState.Learners, cc.NodeID)
	switch cc.Type {
	case raftpb.ConfChangeAddNode:
		if voter {
			return ErrMemberExists
		}
	case raftpb.ConfChangeAddLearnerNode:
		if voter || learner {
			return ErrMemberExists
		}
		if len(a.confState.Learners) >= a.cfg.MaxLearners {
			return ErrTooManyLearners
		}
	case raftpb.ConfChangeRemoveNode, raftpb.ConfChangeUpdateNode:
		if !voter && !learner {
			return ErrMemberNotFound
		}
	}
	return nil
}

// applyMemberChange updates the member list for an accepted change.
func (a *applier) applyMemberChange(cc raftpb.ConfChange) {
	switch cc.Type {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
		var m Member
		if err := json.Unmarshal(cc.Context, &m); err != nil || m.ID != cc.NodeID {
			a.lg.Error("conf change without a valid member", "node", fmt.Sprintf("%x", cc.NodeID), "err", err)
			m = Member{ID: cc.NodeID}
		}
		m.IsLearner = cc.Type == raftpb.ConfChangeAddLearnerNode
		if old, ok := a.members.get(cc.NodeID); ok {
			// Promotion or URL update: keep the attributes it published.
			m.Name, m.ClientURLs = old.Name, old.ClientURLs
			if cc.Type == raftpb.ConfChangeUpdateNode {
				m.IsLearner = old.IsLearner
			}
		}
		a.members.add(m)
	case raftpb.ConfChangeRemoveNode:
		a.members.remove(cc.NodeID)
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
func (a *applier) maybeSnapshot(applied uint64) {
	byCount := applied-a.snapIndex >= a.cfg.SnapshotCount
	byBytes := a.cfg.SnapshotLogBytes > 0 && a.logBytes >= a.cfg.SnapshotLogBytes
	if !byCount && !byBytes {
		return
	}
	meta := raftpb.SnapshotMetadata{Index: applied, Term: a.appliedTerm, ConfState: a.confState}
	if !a.env.startSnapshot(meta) {
		return
	}
	a.logBytes = 0
	a.snapIndex = meta.Index
}

package server

import (
	"errors"
	"fmt"
	"log/slog"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server/kvapply"
)

// The apply side of leases: grants, revocations and checkpoints as the
// applier applies them, and the lessor's table of which keys each lease
// holds, kept in step with the applied writes. The leader side (expiry,
// checkpoints, keep-alives) is in lease.go.

// load fills the lessor from the stored lease records and attaches
// every live leased key. Only the apply goroutine (or open, before it
// runs) writes the key space, so the two reads see the same state.
func (ls *leaseState) load(kv *mvcc.Store, lg *slog.Logger) error {
	recs, err := kv.Leases()
	if err != nil {
		return fmt.Errorf("load leases: %w", err)
	}
	table := make([]lease.Record, len(recs))
	for i, r := range recs {
		table[i] = lease.Record{ID: r.ID, TTL: r.TTL, RemainingTTL: r.RemainingTTL, GrantIndex: r.GrantIndex}
	}
	ls.les.Reset(table)
	if len(recs) == 0 {
		// No lease, so no key to attach: skip reading every live key,
		// which costs a restart time proportional to the data.
		return nil
	}
	var keys, orphans int
	err = kv.ForEachLeasedKey(func(key []byte, id int64) error {
		keys++
		if !ls.les.Attach(id, key) {
			orphans++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load leased keys: %w", err)
	}
	if orphans > 0 {
		// Only data written outside synod's apply path can get here;
		// such keys are left alone (no lease will delete them).
		lg.Warn("keys attached to leases that do not exist", "keys", orphans)
	}
	lg.Info("loaded leases", "leases", len(recs), "leased keys", keys)
	return nil
}

// track attaches and detaches keys to leases as an applied write
// changed them. Every event carries the key's previous version when there
// was one (a put's replaced version, a delete's deleted one), which says
// which lease the key leaves.
func (ls *leaseState) track(events []mvcc.Event) {
	for i := range events {
		ev := &events[i]
		var prev, next int64
		if ev.PrevKV != nil {
			prev = ev.PrevKV.Lease
		}
		if ev.Type == mvcc.EventPut {
			next = ev.KV.Lease
		}
		if prev == next {
			continue
		}
		if prev != 0 {
			ls.les.Detach(prev, ev.KV.Key)
		}
		if next != 0 {
			ls.les.Attach(next, ev.KV.Key)
		}
	}
}

// applyLease applies a lease request as entry index. A refused request's
// error is a kvapply.RequestError (the apply loop takes any other error
// for a storage failure).
func (a *applier) applyLease(index, entryTerm uint64, req *pb.InternalRaftRequest, exp *expiry) (any, error) {
	ls := a.leases
	switch {
	case req.LeaseGrant != nil:
		return a.applyLeaseGrant(ls, index, req.LeaseGrant)
	case req.LeaseRevoke != nil:
		if exp != nil && !ls.expiryCurrent(*exp, entryTerm, req.LeaseRevoke.ID) {
			// A deposed leader's expiry, or one of an earlier grant of
			// the same ID (see expiry).
			if err := a.kv.SetConsistentIndex(index); err != nil {
				return nil, err
			}
			return nil, kvapply.Refuse(ErrStaleExpiry)
		}
		return a.applyLeaseRevoke(ls, index, req.LeaseRevoke.ID)
	default:
		return a.applyLeaseCheckpoint(ls, index, req.LeaseCheckpoint.GetCheckpoints())
	}
}

// refuseLease marks the lessor's refusals of a request as the request's
// fault; any other error is left as it is.
func refuseLease(err error) error {
	for _, refusal := range []error{lease.ErrLeaseNotFound, lease.ErrLeaseExists, lease.ErrTTLTooLarge, lease.ErrNoID} {
		if errors.Is(err, refusal) {
			return kvapply.Refuse(err)
		}
	}
	return err
}

func (a *applier) applyLeaseGrant(ls *leaseState, index uint64, r *pb.LeaseGrantRequest) (any, error) {
	ttl := max(r.TTL, 1)
	applied := false
	rev, _, err := a.kv.Write(index, func(tx *mvcc.WriteTxn) error {
		applied = true
		if err := ls.les.CheckGrant(r.ID, ttl); err != nil {
			return refuseLease(err)
		}
		return tx.PutLease(mvcc.LeaseRecord{ID: r.ID, TTL: ttl, GrantIndex: index})
	})
	if err != nil || !applied { // !applied: applied before a restart
		return nil, err
	}
	if _, err := ls.les.Grant(r.ID, ttl, index); err != nil {
		return nil, fmt.Errorf("lessor disagrees with the stored leases on grant %016x: %w", r.ID, err)
	}
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: rev}, ID: r.ID, TTL: ttl}, nil
}

// applyLeaseRevoke deletes the lease and all its keys in one write: one
// revision with one delete event per key, which watchers get together.
func (a *applier) applyLeaseRevoke(ls *leaseState, index uint64, id int64) (any, error) {
	applied := false
	rev, events, err := a.kv.Write(index, func(tx *mvcc.WriteTxn) error {
		applied = true
		keys, err := ls.les.Keys(id)
		if err != nil {
			return refuseLease(err)
		}
		for _, k := range keys {
			kv, err := tx.Get(k)
			if err != nil {
				return err
			}
			if kv == nil || kv.Lease != id {
				continue // cannot happen while the table follows the writes
			}
			if _, _, err := tx.DeleteRange(k, nil, false); err != nil {
				return err
			}
		}
		return tx.DeleteLease(id)
	})
	if err != nil || !applied {
		return nil, err
	}
	if err := ls.les.Revoke(id); err != nil {
		return nil, fmt.Errorf("lessor disagrees with the stored leases on revoke %016x: %w", id, err)
	}
	if len(events) > 0 {
		a.afterWrite(rev, events)
	}
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: rev}}, nil
}

func (a *applier) applyLeaseCheckpoint(ls *leaseState, index uint64, cps []*pb.LeaseCheckpoint) (any, error) {
	applied := false
	rev, _, err := a.kv.Write(index, func(tx *mvcc.WriteTxn) error {
		applied = true
		for _, cp := range cps {
			rec, ok := ls.les.Record(cp.GetID())
			if !ok {
				continue // revoked since the leader measured it
			}
			rec.RemainingTTL = min(max(cp.GetRemaining_TTL(), 0), rec.TTL)
			if err := tx.PutLease(mvcc.LeaseRecord{ID: rec.ID, TTL: rec.TTL, RemainingTTL: rec.RemainingTTL, GrantIndex: rec.GrantIndex}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || !applied {
		return nil, err
	}
	for _, cp := range cps {
		if rec, ok := ls.les.Record(cp.GetID()); ok {
			ls.les.Checkpoint(rec.ID, min(max(cp.GetRemaining_TTL(), 0), rec.TTL))
		}
	}
	return &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: rev}}, nil
}

package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/server/kvapply"
)

// Range reads keys: linearizable (after a ReadIndex round) unless the
// request asks for a serializable read, which is served locally at once.
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if !r.Serializable {
		if err := s.LinearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := kvapply.Range(s.kv, r)
	if err != nil {
		return nil, err
	}
	s.fillHeader(&resp.Header, resp.Header.GetRevision())
	return resp, nil
}

// RangeStream answers a validated RangeStream request in pages, calling
// send for each (kvapply.RangeStream): one linearizable read (unless
// serializable) at the start, then every page read at the revision
// pinned there. The page carrying the header gets this member's.
func (s *Server) RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	if !r.Serializable {
		if err := s.LinearizableRead(ctx); err != nil {
			return err
		}
	}
	return kvapply.RangeStream(s.kv, r, s.cfg.MaxRequestBytes, func(resp *pb.RangeResponse) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if resp.Header != nil {
			s.fillHeader(&resp.Header, resp.Header.Revision)
		}
		return send(resp)
	})
}

// Put writes a key through raft.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	out, err := proposeFor[*pb.PutResponse](ctx, s.proposeWrite, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, err
	}
	s.fillHeader(&out.Header, out.Header.GetRevision())
	return out, nil
}

// DeleteRange deletes keys through raft.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	out, err := proposeFor[*pb.DeleteRangeResponse](ctx, s.proposeWrite, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	s.fillHeader(&out.Header, out.Header.GetRevision())
	return out, nil
}

// Txn runs a transaction: through raft if it writes, else as a read at
// one revision (linearizable unless every range in it is serializable).
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if kvapply.IsReadOnlyTxn(r) {
		if !isSerializableTxn(r) {
			if err := s.LinearizableRead(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := kvapply.ReadTxn(s.kv, r)
		if err != nil {
			return nil, err
		}
		s.fillHeader(&resp.Header, resp.Header.GetRevision())
		return resp, nil
	}
	out, err := proposeFor[*pb.TxnResponse](ctx, s.proposeWrite, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	s.fillHeader(&out.Header, out.Header.GetRevision())
	return out, nil
}

// Compact compacts the key space's history up to a revision; with
// physical it returns only once the compaction is applied on this member
// (synod compacts in the apply step, so that is always the case).
func (s *Server) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	out, err := proposeFor[*pb.CompactionResponse](ctx, s.propose, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	s.fillHeader(&out.Header, out.Header.GetRevision())
	return out, nil
}

// fillHeader sets a response header's cluster, member, term and revision
// (the current revision if rev is 0).
func (s *Server) fillHeader(h **pb.ResponseHeader, rev int64) {
	if rev == 0 {
		rev = s.kv.Rev()
	}
	*h = &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.id, Revision: rev, RaftTerm: s.term.Load()}
}

// Header returns a response header for a request answered now.
func (s *Server) Header() *pb.ResponseHeader {
	var h *pb.ResponseHeader
	s.fillHeader(&h, 0)
	return h
}

// proposeWrite proposes a key-space write. A write that would store
// data (its quotaCost is not zero) is refused while the NOSPACE alarm is
// raised, or when it would take the key space past the quota, which
// raises the alarm; deletes go through, so that space can be freed, as
// in etcd.
func (s *Server) proposeWrite(ctx context.Context, r *pb.InternalRaftRequest) (any, error) {
	if s.alarms.active(pb.AlarmType_CORRUPT) {
		return nil, ErrCorrupt
	}
	if cost := quotaCost(r); cost > 0 {
		if s.alarms.active(pb.AlarmType_NOSPACE) {
			return nil, ErrNoSpace
		}
		if q := s.cfg.QuotaBackendBytes; q > 0 && s.kv.LogicalSize()+cost > q {
			s.raiseNoSpace()
			return nil, ErrNoSpace
		}
	}
	return s.propose(ctx, r)
}

// Estimated bytes a request adds to the key space beyond its keys and
// values (etcd's figures, so that a quota holds about as much).
const (
	putOverhead   = 256
	leaseOverhead = 64
)

// quotaCost estimates the bytes r adds to the key space: a put's key and
// value, the larger branch of a transaction's puts, a lease; zero for
// what only removes data.
func quotaCost(r *pb.InternalRaftRequest) int64 {
	switch {
	case r.Put != nil:
		return putCost(r.Put)
	case r.Txn != nil:
		return txnCost(r.Txn)
	case r.LeaseGrant != nil:
		return leaseOverhead
	}
	return 0
}

func putCost(p *pb.PutRequest) int64 { return int64(len(p.Key) + len(p.Value) + putOverhead) }

func txnCost(t *pb.TxnRequest) int64 {
	branch := func(ops []*pb.RequestOp) int64 {
		var n int64
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil:
				n += putCost(op.GetRequestPut())
			case op.GetRequestTxn() != nil:
				n += txnCost(op.GetRequestTxn())
			}
		}
		return n
	}
	return max(branch(t.Success), branch(t.Failure))
}

// raiseNoSpace proposes the NOSPACE alarm for this member (once at a time).
func (s *Server) raiseNoSpace() {
	if !s.raisingAlarm.CompareAndSwap(false, true) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.raisingAlarm.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		defer cancel()
		req := &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: s.id, Alarm: pb.AlarmType_NOSPACE}
		if _, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: req}); err != nil {
			s.lg.Warn("raise NOSPACE alarm", "err", err)
		}
	}()
}

// proposeFor proposes r with do (propose or proposeWrite) and returns the
// result of applying it as an R. A result of another type (none at all
// when this member skipped the entry because a snapshot already held it)
// is ErrResultUnknown, never a panic.
func proposeFor[R any](ctx context.Context, do func(context.Context, *pb.InternalRaftRequest) (any, error), r *pb.InternalRaftRequest) (R, error) {
	var zero R
	resp, err := do(ctx, r)
	if err != nil {
		return zero, err
	}
	out, ok := resp.(R)
	if !ok {
		return zero, fmt.Errorf("%w (the apply step answered with %T)", ErrResultUnknown, resp)
	}
	return out, nil
}

// propose replicates a request and waits for the result of applying it.
func (s *Server) propose(ctx context.Context, r *pb.InternalRaftRequest) (any, error) {
	return s.proposeEntry(ctx, r, nil)
}

// proposeEntry proposes r with the lease expiry exp (nil for none), and
// waits for the result of applying it.
func (s *Server) proposeEntry(ctx context.Context, r *pb.InternalRaftRequest, exp *expiry) (any, error) {
	id := s.nextRequestID()
	r.ID = id
	r.Header = &pb.RequestHeader{ID: id}
	data, err := encodeEntry(r, exp)
	if err != nil {
		return nil, err
	}
	if len(data) > s.cfg.MaxRequestBytes {
		return nil, ErrRequestTooLarge
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	// Raft drops proposals while an election runs: wait for a leader
	// first, which also makes the term the proposing goroutine records
	// for this request at least the one this member knew when the
	// request was queued (see waitRegistry.proposed).
	if err := s.waitLeader(ctx, cctx); err != nil {
		return nil, err
	}
	ch := s.w.register(id)
	s.proposals.add(id, data)
	select {
	case res := <-ch:
		return res.resp, res.err
	case <-cctx.Done():
		s.w.cancel(id)
		return nil, s.timeoutError(ctx, cctx)
	case <-s.stopping:
		s.w.cancel(id)
		return nil, ErrStopped
	}
}

// waitLeader returns once this member has published a leader (and so
// its term) and, unless it leads, has a stream to it: a proposal
// forwarded into a link that is still connecting would be dropped, and
// its client would wait for the request timeout. It fails when ctx ends
// or the member stops.
func (s *Server) waitLeader(parent, ctx context.Context) error {
	var poll *time.Ticker
	for {
		lc := s.leaderChanged()
		lead := s.lead.Load()
		if lead == s.id || (lead != 0 && !s.tr.ActiveSince(lead).IsZero()) {
			return nil
		}
		var polled <-chan time.Time
		if lead != 0 {
			// The link to the leader is down: the transport has no
			// notification for its return, so look again shortly.
			if poll == nil {
				poll = time.NewTicker(5 * time.Millisecond)
				defer poll.Stop()
			}
			polled = poll.C
		}
		select {
		case <-lc:
		case <-polled:
		case <-ctx.Done():
			return s.timeoutError(parent, ctx)
		case <-s.stopping:
			return ErrStopped
		}
	}
}

// ErrTooManyRequests is returned when the leader's uncommitted log is full.
var ErrTooManyRequests = errors.New("server: too many requests")

// timeoutError turns an expired wait into the error a client should see:
// the caller's own cancellation, or a timeout that says whether the
// cluster had a leader.
func (s *Server) timeoutError(parent, ctx context.Context) error {
	if err := parent.Err(); err != nil {
		return err
	}
	if s.lead.Load() == 0 {
		return ErrTimeoutLeader
	}
	return ErrTimeout
}

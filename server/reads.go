package server

import (
	"bytes"
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Linearizable reads. A read must see every write acknowledged before it
// began, wherever it is served: the member learns the leader's commit
// index with a ReadIndex round (a heartbeat a quorum answers, or the
// leader's lease with --experimental-lease-reads) and waits until it has
// applied that far. Reads that arrive while a round is in flight wait for
// the next one together, so one heartbeat serves any number of them: the
// read loop runs one round per batch.

// LinearizableRead returns once this member has applied every write
// acknowledged before the call. Concurrent callers share one ReadIndex
// round: they join the batch that the read loop sends next.
func (s *Server) LinearizableRead(ctx context.Context) error {
	s.readMu.Lock()
	b := s.readBatch
	s.readMu.Unlock()
	select {
	case s.readWake <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopping:
		return ErrStopped
	}
}

// readBatch is the set of reads waiting for the same ReadIndex round.
type readBatch struct {
	done chan struct{}
	err  error
}

func newReadBatch() *readBatch { return &readBatch{done: make(chan struct{})} }

// notify releases the batch with err (nil: the read may proceed).
func (b *readBatch) notify(err error) {
	select {
	case <-b.done:
	default:
		b.err = err
		close(b.done)
	}
}

// readLoop runs one ReadIndex round per batch of waiting reads.
func (s *Server) readLoop() {
	for {
		select {
		case <-s.readWake:
		case <-s.stopping:
			return
		}
		s.readMu.Lock()
		b := s.readBatch
		s.readBatch = newReadBatch()
		s.readMu.Unlock()
		index, err := s.readIndex()
		if err != nil {
			b.notify(err)
			continue
		}
		select {
		case <-s.applied.wait(index):
			b.notify(nil)
		case <-s.stopping:
			b.notify(ErrStopped)
			return
		}
	}
}

// readIndex runs one ReadIndex round and returns the index to wait for.
func (s *Server) readIndex() (uint64, error) {
	id := u64(s.nextRequestID())
	lc := s.leaderChanged()
	if s.lead.Load() == 0 {
		// Give an election in progress the time to finish.
		select {
		case <-lc:
			lc = s.leaderChanged()
		case <-time.After(s.cfg.ElectionTimeout):
			return 0, ErrNoLeader
		case <-s.stopping:
			return 0, ErrStopped
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.node.ReadIndex(ctx, id); err != nil {
		return 0, ErrStopped
	}
	retry := time.NewTicker(500 * time.Millisecond)
	defer retry.Stop()
	for {
		select {
		case rs := <-s.readStatec:
			if bytes.Equal(rs.RequestCtx, id) {
				return rs.Index, nil
			}
		case <-lc:
			return 0, ErrLeaderChanged
		case <-retry.C:
			if err := s.node.ReadIndex(ctx, id); err != nil {
				return 0, ErrStopped
			}
		case <-ctx.Done():
			return 0, ErrTimeout
		case <-s.stopping:
			return 0, ErrStopped
		}
	}
}

// isSerializableTxn reports whether every range of a read-only txn (at
// any depth) asks for a serializable read, so no ReadIndex is needed.
func isSerializableTxn(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch {
			case op.GetRequestRange() != nil:
				if !op.GetRequestRange().Serializable {
					return false
				}
			case op.GetRequestTxn() != nil:
				if !isSerializableTxn(op.GetRequestTxn()) {
					return false
				}
			}
		}
	}
	return true
}

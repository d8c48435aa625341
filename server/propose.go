package server

import (
	"context"
	"errors"
	"sync"

	"github.com/synod-db/synod/raft"
)

// maxProposalBatchBytes bounds the data of one batch handed to raft, so
// that a burst of large requests is split over several messages (and
// never trips raft's limit on the uncommitted log all at once).
const maxProposalBatchBytes = 4 << 20

// proposalQueue collects the proposals of concurrent requests for the
// proposing goroutine (proposeLoop), which hands each batch to raft as
// one message. A request then costs a mutex and, for the first of a
// batch, a wake-up, instead of two channel round trips with the raft
// goroutine, which also steps one message per batch instead of one per
// request. Results, errors included, reach the requests through the
// wait registry.
type proposalQueue struct {
	mu   sync.Mutex
	data [][]byte
	ids  []uint64
	// wake holds a token while the queue may be non-empty.
	wake chan struct{}
}

func newProposalQueue() *proposalQueue {
	return &proposalQueue{wake: make(chan struct{}, 1)}
}

// add queues the proposal of request id.
func (q *proposalQueue) add(id uint64, data []byte) {
	q.mu.Lock()
	q.data = append(q.data, data)
	q.ids = append(q.ids, id)
	first := len(q.data) == 1
	q.mu.Unlock()
	if first {
		q.signal()
	}
}

func (q *proposalQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take moves the oldest proposals, at most maxProposalBatchBytes of them
// (and at least one), into data and ids (emptied first) and returns them.
// If some are left it keeps the wake token set for them.
func (q *proposalQueue) take(data [][]byte, ids []uint64) ([][]byte, []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, size := 0, 0
	for n < len(q.data) && (n == 0 || size+len(q.data[n]) <= maxProposalBatchBytes) {
		size += len(q.data[n])
		n++
	}
	data = append(data[:0], q.data[:n]...)
	ids = append(ids[:0], q.ids[:n]...)
	rest := copy(q.data, q.data[n:])
	clear(q.data[rest:])
	q.data = q.data[:rest]
	q.ids = q.ids[:copy(q.ids, q.ids[n:])]
	if rest > 0 {
		q.signal()
	}
	return data, ids
}

// proposeLoop hands queued proposals to raft, a batch at a time, until
// the member stops. A request whose batch raft refuses learns why from
// the wait registry; a request whose batch raft took is marked proposed
// under the term this member knows then.
func (s *Server) proposeLoop() {
	stop, cancel := s.untilStopped(context.Background())
	defer cancel()
	var data [][]byte
	var ids []uint64
	for {
		select {
		case <-s.proposals.wake:
		case <-s.stopping:
			return
		}
		data, ids = s.proposals.take(data, ids)
		if len(data) == 0 {
			continue
		}
		err := s.proposeBatch(stop, data)
		if err != nil {
			for _, id := range ids {
				s.w.trigger(id, applyResult{err: err})
			}
			continue
		}
		term := s.term.Load()
		for _, id := range ids {
			s.w.proposed(id, term)
		}
	}
}

// proposeBatch hands one batch to raft. Raft holds proposals back while
// it knows no leader (each request waited for one before queueing, so
// that is a leader lost meanwhile): the wait is bounded by the request
// timeout, by which time the requests themselves have given up.
func (s *Server) proposeBatch(stop context.Context, data [][]byte) error {
	ctx, cancel := context.WithTimeout(stop, s.cfg.RequestTimeout)
	defer cancel()
	err := s.node.ProposeBatch(ctx, data)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrProposalDropped):
		return ErrTooManyRequests
	case errors.Is(err, raft.ErrStopped), stop.Err() != nil:
		return ErrStopped
	case ctx.Err() != nil:
		return s.timeoutError(context.Background(), ctx)
	default:
		return err
	}
}

// untilStopped returns a context derived from parent that is also
// cancelled when the member stops, for calls (raft, peers) that take a
// context rather than watching s.stopping. Its goroutine ends with the
// context, so the caller must call cancel.
func (s *Server) untilStopped(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

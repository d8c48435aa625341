package server

import (
	"sync"
	"sync/atomic"
)

// applyResult is what the apply goroutine hands back to a waiting request.
type applyResult struct {
	resp any
	err  error
}

// waiter is one registered request: it records the term this member knew
// once raft took the proposal, so a leader change can fail the requests
// of older terms that can no longer commit.
type waiter struct {
	ch   chan applyResult
	term uint64 // unproposed until raft took the proposal
}

// unproposed is the term of a waiter whose proposal raft has not taken
// yet (it may wait for a leader): no leader change can fail it, since it
// is in no log, and it will be proposed under a later term.
const unproposed = ^uint64(0)

// waitRegistry matches proposals with their results by request ID. The
// proposing handler registers, the apply goroutine triggers. Sharded to
// keep handler goroutines from contending on one lock.
type waitRegistry struct {
	shards [16]waitShard
}

type waitShard struct {
	mu sync.Mutex
	m  map[uint64]waiter
}

func newWaitRegistry() *waitRegistry {
	w := &waitRegistry{}
	for i := range w.shards {
		w.shards[i].m = make(map[uint64]waiter)
	}
	return w
}

func (w *waitRegistry) shard(id uint64) *waitShard { return &w.shards[id%uint64(len(w.shards))] }

// register returns the channel on which id's result arrives (once). It
// is called before proposing, so that no result can come first; proposed
// then records the term.
func (w *waitRegistry) register(id uint64) <-chan applyResult {
	s := w.shard(id)
	ch := make(chan applyResult, 1)
	s.mu.Lock()
	s.m[id] = waiter{ch: ch, term: unproposed}
	s.mu.Unlock()
	return ch
}

// proposed records that raft took id's proposal while this member knew
// term. Reading the term after raft returned can only overestimate the
// term the entry was appended in, which at worst leaves a lost proposal
// to its timeout; underestimating would fail a request that commits.
func (w *waitRegistry) proposed(id, term uint64) {
	s := w.shard(id)
	s.mu.Lock()
	if wt, ok := s.m[id]; ok {
		wt.term = term
		s.m[id] = wt
	}
	s.mu.Unlock()
}

// trigger delivers id's result if someone still waits for it.
func (w *waitRegistry) trigger(id uint64, r applyResult) {
	s := w.shard(id)
	s.mu.Lock()
	wt, ok := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	if ok {
		wt.ch <- r
	}
}

// cancel forgets id (its caller gave up).
func (w *waitRegistry) cancel(id uint64) {
	s := w.shard(id)
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// failOlderThan fails every request registered before term began: once
// an entry of term is applied, entries proposed under earlier terms that
// are not applied yet can never commit (they were not in the new leader's
// log), so their callers learn it at once instead of waiting for a timeout.
func (w *waitRegistry) failOlderThan(term uint64, err error) {
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		for id, wt := range s.m {
			if wt.term < term {
				delete(s.m, id)
				wt.ch <- applyResult{err: err}
			}
		}
		s.mu.Unlock()
	}
}

// failAll fails every waiting request (the member is stopping).
func (w *waitRegistry) failAll(err error) {
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		for id, wt := range s.m {
			delete(s.m, id)
			wt.ch <- applyResult{err: err}
		}
		s.mu.Unlock()
	}
}

// appliedWaiter lets goroutines wait until the applied index reaches a
// value: reads wait for their ReadIndex, MoveLeader for the transferee.
type appliedWaiter struct {
	applied atomic.Uint64
	mu      sync.Mutex
	waiters map[uint64][]chan struct{}
	min     uint64 // smallest index with waiters, 0 if none
}

func newAppliedWaiter(applied uint64) *appliedWaiter {
	a := &appliedWaiter{waiters: make(map[uint64][]chan struct{})}
	a.applied.Store(applied)
	return a
}

// wait returns a channel closed once the applied index is >= index.
func (a *appliedWaiter) wait(index uint64) <-chan struct{} {
	ch := make(chan struct{})
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied.Load() >= index {
		close(ch)
		return ch
	}
	a.waiters[index] = append(a.waiters[index], ch)
	if a.min == 0 || index < a.min {
		a.min = index
	}
	return ch
}

// trigger records the new applied index and releases the waiters it
// satisfies.
func (a *appliedWaiter) trigger(applied uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applied.Store(applied)
	if a.min == 0 || a.min > applied {
		return
	}
	a.min = 0
	for idx, chs := range a.waiters {
		if idx <= applied {
			for _, ch := range chs {
				close(ch)
			}
			delete(a.waiters, idx)
		} else if a.min == 0 || idx < a.min {
			a.min = idx
		}
	}
}

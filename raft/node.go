package raft

import (
	"context"
	"errors"
	"sync"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// ErrStopped is returned by Node methods after Stop.
var ErrStopped = errors.New("raft: node stopped")

// Node is a member running on its own goroutine. Every method hands its
// request to that goroutine over a channel; the goroutine alone owns the
// state machine, so no locks are needed.
//
// The application loops: on each tick call Tick; deliver received messages
// with Step; receive from Ready(), handle the Ready as its documentation
// says, then call Advance.
type Node interface {
	// Tick advances logical time by one tick.
	Tick()
	// Campaign makes this member start an election.
	Campaign(ctx context.Context) error
	// Propose proposes data to be appended; it returns once the proposal
	// was appended (or forwarded) or dropped, not when it commits.
	Propose(ctx context.Context, data []byte) error
	// ProposeBatch proposes each element of data as one entry, in order,
	// in a single message: the entries are appended (or forwarded, or
	// dropped) together, and the raft goroutine handles the batch once
	// instead of once per entry. data may be reused once it returns.
	ProposeBatch(ctx context.Context, data [][]byte) error
	// ProposeConfChange proposes a membership change.
	ProposeConfChange(ctx context.Context, cc pb.ConfChangeI) error
	// Step delivers a message received from the network. It never waits
	// for a leader: a proposal forwarded by a peer while this member has
	// none is dropped, so the stream it came on keeps flowing.
	Step(ctx context.Context, msg pb.Message) error
	// Ready returns the channel on which work is published.
	Ready() <-chan Ready
	// Advance acknowledges the last Ready received: its writes are done
	// and its committed entries count as applied. Applying them may go on
	// after Advance, except for configuration changes: raft campaigns and
	// counts votes by the configuration given to ApplyConfChange, so a
	// Ready that commits one must be advanced only after ApplyConfChange
	// was called for it.
	Advance()
	// ApplyConfChange applies a committed conf change and returns the new
	// configuration.
	ApplyConfChange(cc pb.ConfChangeI) *pb.ConfState
	// TransferLeadership asks the leader lead to hand over to transferee.
	TransferLeadership(ctx context.Context, lead, transferee uint64)
	// ReadIndex requests a linearizable read point, answered in a Ready's
	// ReadStates with the same rctx.
	ReadIndex(ctx context.Context, rctx []byte) error
	// Status returns the current status.
	Status() Status
	// ReportUnreachable reports that sending to id failed.
	ReportUnreachable(id uint64)
	// ReportSnapshot reports the outcome of sending a snapshot to id.
	ReportSnapshot(id uint64, status SnapshotStatus)
	// Stop stops the goroutine and waits for it to exit.
	Stop()
}

// resultChans recycles the channels on which proposals wait for their
// Step result; a channel of an interface type costs two allocations.
var resultChans = sync.Pool{New: func() any { return make(chan error, 1) }}

type msgWithResult struct {
	m      pb.Message
	result chan error
}

type confChangeResult struct {
	cs  pb.ConfState
	err error
}

type node struct {
	propc      chan msgWithResult
	recvc      chan pb.Message
	confc      chan pb.ConfChangeV2
	confstatec chan confChangeResult
	readyc     chan Ready
	advancec   chan struct{}
	tickc      chan struct{}
	done       chan struct{}
	stop       chan struct{}
	status     chan chan Status

	rn *RawNode
}

// StartNode starts a member of a new cluster whose initial voters are
// peers (this member included), bootstrapping its empty storage.
func StartNode(c *Config, peers []Peer) (Node, error) {
	rn, err := NewRawNode(c)
	if err != nil {
		return nil, err
	}
	if err := rn.Bootstrap(peers); err != nil {
		return nil, err
	}
	n := newNode(rn)
	go n.run()
	return n, nil
}

// RestartNode restarts a member from its storage.
func RestartNode(c *Config) (Node, error) {
	rn, err := NewRawNode(c)
	if err != nil {
		return nil, err
	}
	n := newNode(rn)
	go n.run()
	return n, nil
}

// newNode wraps rn with the channels of its goroutine.
func newNode(rn *RawNode) *node {
	return &node{
		propc:      make(chan msgWithResult),
		recvc:      make(chan pb.Message),
		confc:      make(chan pb.ConfChangeV2),
		confstatec: make(chan confChangeResult),
		readyc:     make(chan Ready),
		advancec:   make(chan struct{}),
		// Buffered so that a slow Ready handler does not lose ticks to a
		// short stall; a full buffer drops the tick (time then runs slow,
		// which is safe).
		tickc:  make(chan struct{}, 128),
		done:   make(chan struct{}),
		stop:   make(chan struct{}),
		status: make(chan chan Status),
		rn:     rn,
	}
}

// run is the node's goroutine, the only one touching the state machine.
func (n *node) run() {
	var propc chan msgWithResult
	var readyc chan Ready
	var advancec chan struct{}
	var rd Ready
	r := n.rn.raft
	lead := None
	for {
		if advancec == nil && n.rn.HasReady() {
			// Publish a Ready only once the last one was advanced: one Ready
			// in flight keeps the application's writes in order.
			rd = n.rn.readyWithoutAccept()
			readyc = n.readyc
		}
		if lead != r.lead {
			lead = r.lead
			if r.hasLeader() {
				propc = n.propc
			} else {
				// No leader: proposals wait (until their context expires)
				// rather than being dropped at once.
				propc = nil
			}
		}
		select {
		case pm := <-propc:
			m := pm.m
			m.From = r.id
			err := r.Step(m)
			if pm.result != nil {
				pm.result <- err
			}
		case m := <-n.recvc:
			if m.Type.IsResponse() && r.trk.Progress[m.From] == nil {
				// A response from a member no longer configured.
				continue
			}
			_ = r.Step(m)
		case cc := <-n.confc:
			cs, err := r.applyConfChange(cc)
			n.confstatec <- confChangeResult{cs: cs, err: err}
		case <-n.tickc:
			n.rn.Tick()
		case readyc <- rd:
			n.rn.acceptReady(rd)
			advancec = n.advancec
			readyc = nil
		case <-advancec:
			n.rn.Advance(rd)
			rd = Ready{}
			advancec = nil
		case c := <-n.status:
			c <- getStatus(r)
		case <-n.stop:
			close(n.done)
			return
		}
	}
}

func (n *node) Stop() {
	select {
	case n.stop <- struct{}{}:
	case <-n.done:
		return
	}
	<-n.done
}

func (n *node) Tick() {
	select {
	case n.tickc <- struct{}{}:
	case <-n.done:
	default:
		n.rn.raft.logger.Warn("raft: tick dropped: the node is not keeping up; is Ready being handled?")
	}
}

func (n *node) Campaign(ctx context.Context) error {
	return n.step(ctx, pb.Message{Type: pb.MsgHup}, false)
}

func (n *node) Propose(ctx context.Context, data []byte) error {
	return n.step(ctx, pb.Message{Type: pb.MsgProp, Entries: []pb.Entry{{Data: data}}}, true)
}

func (n *node) ProposeBatch(ctx context.Context, data [][]byte) error {
	ents := make([]pb.Entry, len(data))
	for i, d := range data {
		ents[i].Data = d
	}
	return n.step(ctx, pb.Message{Type: pb.MsgProp, Entries: ents}, true)
}

func (n *node) ProposeConfChange(ctx context.Context, cc pb.ConfChangeI) error {
	return n.step(ctx, pb.Message{Type: pb.MsgProp, Entries: []pb.Entry{pb.ToEntry(cc)}}, true)
}

func (n *node) Step(ctx context.Context, m pb.Message) error {
	if m.Type.IsLocal() {
		return ErrStepLocalMsg
	}
	if !m.Type.Valid() {
		return errors.New("raft: unknown message type; the sender may be newer or the bytes corrupt")
	}
	// A proposal forwarded by a peer never waits for a leader, unlike a
	// local one: the stream it arrived on carries the heartbeats that
	// would tell this member who leads. Without a leader raft drops it;
	// the proposing member times out and its client retries.
	return n.recv(ctx, m)
}

// recv hands a message to the goroutine's state machine as it is.
func (n *node) recv(ctx context.Context, m pb.Message) error {
	select {
	case n.recvc <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
}

// step hands m to the goroutine. Local proposals go through propc (held
// back while there is no leader) and, with wait, return the Step error.
func (n *node) step(ctx context.Context, m pb.Message, wait bool) error {
	if m.Type != pb.MsgProp {
		return n.recv(ctx, m)
	}
	pm := msgWithResult{m: m}
	if wait {
		pm.result = resultChans.Get().(chan error)
	}
	select {
	case n.propc <- pm:
		if !wait {
			return nil
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
	select {
	case err := <-pm.result:
		// Emptied and no longer referenced by the node: reuse it. A channel
		// abandoned below may still receive a late result, so it is not.
		resultChans.Put(pm.result)
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
}

func (n *node) Ready() <-chan Ready { return n.readyc }

func (n *node) Advance() {
	select {
	case n.advancec <- struct{}{}:
	case <-n.done:
	}
}

func (n *node) ApplyConfChange(cc pb.ConfChangeI) *pb.ConfState {
	select {
	case n.confc <- cc.AsV2():
	case <-n.done:
		return &pb.ConfState{}
	}
	select {
	case res := <-n.confstatec:
		if res.err != nil {
			n.rn.raft.logger.Error("raft: conf change not applied", "err", res.err)
		}
		return &res.cs
	case <-n.done:
		return &pb.ConfState{}
	}
}

func (n *node) Status() Status {
	c := make(chan Status)
	select {
	case n.status <- c:
		return <-c
	case <-n.done:
		return Status{}
	}
}

func (n *node) ReportUnreachable(id uint64) {
	select {
	case n.recvc <- pb.Message{Type: pb.MsgUnreachable, From: id}:
	case <-n.done:
	}
}

func (n *node) ReportSnapshot(id uint64, status SnapshotStatus) {
	select {
	case n.recvc <- pb.Message{Type: pb.MsgSnapStatus, From: id, Reject: status == SnapshotFailure}:
	case <-n.done:
	}
}

func (n *node) TransferLeadership(ctx context.Context, lead, transferee uint64) {
	select {
	// Deliver to the leader as if the transferee asked.
	case n.recvc <- pb.Message{Type: pb.MsgTransferLeader, From: transferee, To: lead}:
	case <-ctx.Done():
	case <-n.done:
	}
}

func (n *node) ReadIndex(ctx context.Context, rctx []byte) error {
	return n.step(ctx, pb.Message{Type: pb.MsgReadIndex, Entries: []pb.Entry{{Data: rctx}}}, false)
}

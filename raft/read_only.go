package raft

import pb "github.com/synod-db/synod/raft/raftpb"

// ReadState answers a ReadIndex request: once the application has applied
// Index, a read of its state is linearizable. RequestCtx is the context the
// request was made with, so the application can match answers to requests.
type ReadState struct {
	Index      uint64
	RequestCtx []byte
}

// ReadOnlyOption selects how a leader confirms it may serve a read.
type ReadOnlyOption uint8

const (
	// ReadOnlySafe confirms leadership with a heartbeat round answered by a
	// quorum before answering (ReadIndex, Raft thesis §6.4).
	ReadOnlySafe ReadOnlyOption = iota
	// ReadOnlyLeaseBased relies on check-quorum's lease: while it holds, no
	// other leader can exist, so the leader answers at once. It assumes
	// bounded clock drift between members.
	ReadOnlyLeaseBased
)

// readIndexStatus is one pending read awaiting a heartbeat quorum.
type readIndexStatus struct {
	req   pb.Message
	index uint64
	acks  map[uint64]bool
}

// readOnly queues ReadIndex requests on the leader. Requests are confirmed
// in order: a quorum acknowledging the heartbeat sent for a later request
// confirms every earlier one too, so concurrent reads share one round.
type readOnly struct {
	option  ReadOnlyOption
	pending map[string]*readIndexStatus
	queue   []string
}

func newReadOnly(option ReadOnlyOption) *readOnly {
	return &readOnly{option: option, pending: map[string]*readIndexStatus{}}
}

// addRequest queues a read at the leader's current commit index. A context
// already queued is ignored (the caller retried).
func (ro *readOnly) addRequest(index uint64, m pb.Message) {
	ctx := string(m.Entries[0].Data)
	if _, ok := ro.pending[ctx]; ok {
		return
	}
	ro.pending[ctx] = &readIndexStatus{index: index, req: m, acks: map[uint64]bool{}}
	ro.queue = append(ro.queue, ctx)
}

// recvAck records that id acknowledged the heartbeat carrying ctx and
// returns the acknowledgements so far (nil if ctx is unknown).
func (ro *readOnly) recvAck(id uint64, ctx []byte) map[uint64]bool {
	rs, ok := ro.pending[string(ctx)]
	if !ok {
		return nil
	}
	rs.acks[id] = true
	return rs.acks
}

// advance dequeues every request up to and including ctx and returns them.
func (ro *readOnly) advance(ctx []byte) []*readIndexStatus {
	i := -1
	for j, c := range ro.queue {
		if c == string(ctx) {
			i = j
			break
		}
	}
	if i < 0 {
		return nil
	}
	done := make([]*readIndexStatus, 0, i+1)
	for _, c := range ro.queue[:i+1] {
		done = append(done, ro.pending[c])
		delete(ro.pending, c)
	}
	ro.queue = append(ro.queue[:0], ro.queue[i+1:]...)
	return done
}

// lastPendingRequestCtx returns the context of the newest pending request,
// which heartbeats carry.
func (ro *readOnly) lastPendingRequestCtx() []byte {
	if len(ro.queue) == 0 {
		return nil
	}
	return []byte(ro.queue[len(ro.queue)-1])
}

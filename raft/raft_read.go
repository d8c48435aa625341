package raft

// Reads without the log: ReadIndex confirmed by a heartbeat round, and
// lease reads confirmed by heartbeat acknowledgement times.

import (
	"github.com/synod-db/synod/raft/quorum"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// handleReadIndex serves a read on the leader: at once for a single voter
// or with a valid lease, otherwise after a heartbeat round that a quorum
// answers (reads queued meanwhile share that round).
func (r *raft) handleReadIndex(m pb.Message) {
	if r.trk.IsSingleton() {
		if resp := r.responseToReadIndexReq(m, r.raftLog.committed); resp.To != None {
			r.send(resp)
		}
		return
	}
	if r.readOnly.option == ReadOnlyLeaseBased && r.leaseValid() {
		if resp := r.responseToReadIndexReq(m, r.raftLog.committed); resp.To != None {
			r.send(resp)
		}
		return
	}
	r.readOnly.addRequest(r.raftLog.committed, m)
	r.readOnly.recvAck(r.id, m.Entries[0].Data)
	r.bcastHeartbeat()
}

// responseToReadIndexReq answers read m at index. A read requested locally
// becomes a ReadState; one forwarded by a follower gets a message back,
// which is returned (To == None otherwise).
func (r *raft) responseToReadIndexReq(m pb.Message, index uint64) pb.Message {
	if m.From == None || m.From == r.id {
		r.readStates = append(r.readStates, ReadState{Index: index, RequestCtx: m.Entries[0].Data})
		return pb.Message{}
	}
	return pb.Message{Type: pb.MsgReadIndexResp, To: m.From, Index: index, Entries: m.Entries}
}

// leaseValid reports whether no other leader can exist now: a quorum
// answered heartbeats sent less than an election timeout ago (one tick of
// margin covers a follower ticking right after receiving one). Without a
// valid lease, lease-based reads fall back to a heartbeat round.
func (r *raft) leaseValid() bool {
	if r.leaseRevoked || !r.checkQuorum {
		return false
	}
	stamps := leaseStamps{acks: r.leaseAcks, self: r.id, now: r.leaseClock}
	q := uint64(r.trk.Voters.CommittedIndex(stamps))
	return q > 0 && r.leaseClock+1 < q+uint64(r.electionTimeout)
}

// leaseStamps presents heartbeat acknowledgement times to quorum
// arithmetic, with the leader itself always current.
type leaseStamps struct {
	acks map[uint64]uint64
	self uint64
	now  uint64
}

// AckedIndex implements quorum.AckedIndexer.
func (s leaseStamps) AckedIndex(id uint64) (quorum.Index, bool) {
	if id == s.self {
		return quorum.Index(s.now), true
	}
	v, ok := s.acks[id]
	return quorum.Index(v), ok
}

// committedEntryInCurrentTerm reports whether the leader has committed an
// entry of its own term, which makes its commit index trustworthy.
func (r *raft) committedEntryInCurrentTerm() bool {
	t, err := r.raftLog.term(r.raftLog.committed)
	return err == nil && t == r.Term
}

// releasePendingReadIndexMessages serves reads that waited for the new
// leader's first commit.
func (r *raft) releasePendingReadIndexMessages() {
	if len(r.pendingReadIndexMessages) == 0 || !r.committedEntryInCurrentTerm() {
		return
	}
	msgs := r.pendingReadIndexMessages
	r.pendingReadIndexMessages = nil
	for _, m := range msgs {
		r.handleReadIndex(m)
	}
}

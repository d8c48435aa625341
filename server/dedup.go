package server

import (
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/synod-db/synod/raft/raftpb"
)

// recentProposalsCap is how many forwarded request IDs a member
// remembers: far more than can be in flight between two members, at
// 16 bytes each in the ring plus the map's share.
const recentProposalsCap = 1 << 14

// recentProposals remembers the request IDs of proposals peers forwarded
// lately, so that a proposal delivered twice is appended once. synod's
// transport delivers each message at most once, but a network or proxy
// that duplicates a MsgProp would otherwise have one client request
// applied twice (raft itself cannot tell: entries are opaque to it).
// Every request ID is unique in the cluster (see nextRequestID), so a
// repeat is always a duplicate.
type recentProposals struct {
	mu   sync.Mutex
	seen map[uint64]struct{}
	ring []uint64 // the remembered IDs, oldest overwritten first
	next int
}

// firstTime records id and reports whether it was not seen before.
func (r *recentProposals) firstTime(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[id]; ok {
		return false
	}
	if r.seen == nil {
		r.seen = make(map[uint64]struct{}, recentProposalsCap)
		r.ring = make([]uint64, 0, recentProposalsCap)
	}
	if len(r.ring) < recentProposalsCap {
		r.ring = append(r.ring, id)
	} else {
		delete(r.seen, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % recentProposalsCap
	}
	r.seen[id] = struct{}{}
	return true
}

// dropRepeats removes from a forwarded proposal the entries whose
// request was forwarded before, and reports whether any entry is left.
func (r *recentProposals) dropRepeats(m *raftpb.Message) bool {
	kept := m.Entries[:0]
	for _, e := range m.Entries {
		if id := requestID(e); id == 0 || r.firstTime(id) {
			kept = append(kept, e)
		}
	}
	m.Entries = kept
	return len(kept) > 0
}

// requestID returns the ID of the client request in a normal entry (field
// 1 of InternalRaftRequest), or 0 if there is none.
func requestID(e raftpb.Entry) uint64 {
	if e.Type != raftpb.EntryNormal {
		return 0
	}
	b := entryRequestBytes(e.Data)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0
			}
			return v
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0
		}
		b = b[m:]
	}
	return 0
}

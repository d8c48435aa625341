package server

import (
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// A lease expiry decision travels with the LeaseRevoke a leader proposes
// because a lease expired (in the entry's envelope, see entry.go): the
// term in which that leader counted the lease's deadline, and the raft
// index of the grant that expired.
//
// Only that term's leader may expire leases. A leader that was paused
// (or cut off) and deposed can still decide, when it resumes and before
// it notices, that leases expired by its stale clock, and its proposal
// would be forwarded to the new leader and applied, revoking leases the
// clients kept alive with the new leader. So an expiry is applied only
// from an entry of the term it names: the proposing leader's own log, in
// its own term. And since a lease ID can be revoked and granted again
// while an expiry is on its way, the expiry names the grant it is about
// and is refused if the lease now stems from another.

// Field numbers of InternalRaftRequest that etcd's schema leaves unused,
// where entries written before the envelope carry an expiry, as unknown
// fields. They are only read now.
const (
	legacyExpiryTermField  protowire.Number = 536870000
	legacyExpiryGrantField protowire.Number = 536870001
)

// expiry identifies a lease expiry decision.
type expiry struct {
	term       uint64 // the leader's term when it decided
	grantIndex uint64 // the raft index of the grant that expired
}

// legacyExpiryOf returns the expiry a request decoded from an entry
// written before the envelope carries, and false for a revocation a
// client asked for.
func legacyExpiryOf(req *pb.InternalRaftRequest) (expiry, bool) {
	e, hasTerm, hasGrant, err := readExpiry(req.ProtoReflect().GetUnknown(), legacyExpiryTermField, legacyExpiryGrantField)
	return e, err == nil && hasTerm && hasGrant
}

// readExpiry reads an expiry's term and grant from the varint fields
// termField and grantField of b (protobuf wire format), skipping every
// other field; has* say which of the two it found.
func readExpiry(b []byte, termField, grantField protowire.Number) (e expiry, hasTerm, hasGrant bool, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return expiry{}, false, false, errors.New("bad field tag")
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == termField || num == grantField) {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return expiry{}, false, false, errors.New("bad expiry field")
			}
			if num == termField {
				e.term, hasTerm = v, true
			} else {
				e.grantIndex, hasGrant = v, true
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return expiry{}, false, false, errors.New("bad field")
		}
		b = b[m:]
	}
	return e, hasTerm, hasGrant, nil
}

// expiryCurrent reports whether expiry e of lease id, in an entry of
// entryTerm, still holds: decided by that term's leader, about the grant
// the lease table has now. An unknown lease passes, so that the
// revocation answers "lease not found" as any other would.
func (ls *leaseState) expiryCurrent(e expiry, entryTerm uint64, id int64) bool {
	if e.term != entryTerm {
		return false
	}
	rec, ok := ls.les.Record(id)
	return !ok || rec.GrantIndex == e.grantIndex
}

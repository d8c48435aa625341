package server

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// expiryTermField is a field number of InternalRaftRequest that etcd's
// schema leaves unused. synod sets it, as an unknown field that proto
// keeps through Marshal and Unmarshal, on the LeaseRevoke a leader
// proposes because a lease expired: its value is the term in which that
// leader counted the lease's deadline.
//
// Only that term's leader may expire leases. A leader that was paused
// (or cut off) and deposed can still decide, when it resumes and before
// it notices, that leases expired by its stale clock, and its proposal
// would be forwarded to the new leader and applied, revoking leases the
// clients kept alive with the new leader, or a lease granted again under
// the same ID. An expiry is therefore applied only from an entry of the
// term it names: the proposing leader's own log, in its own term.
const expiryTermField protowire.Number = 536870000

// markExpiry tags req as the expiry of a lease decided in term.
func markExpiry(req *pb.InternalRaftRequest, term uint64) {
	b := protowire.AppendTag(nil, expiryTermField, protowire.VarintType)
	b = protowire.AppendVarint(b, term)
	req.ProtoReflect().SetUnknown(b)
}

// expiryTerm returns the term an expiry revocation was decided in, and
// false for a revocation a client asked for.
func expiryTerm(req *pb.InternalRaftRequest) (uint64, bool) {
	b := req.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		if num == expiryTermField && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			return v, m >= 0
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, false
		}
		b = b[m:]
	}
	return 0, false
}

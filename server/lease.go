package server

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server/kvapply"
)

// leaseChecker tells kvapply which leases exist. Until the lessor exists
// (issue 5) none does, so a Put with a lease fails with "lease not found".
func (s *Server) leaseChecker() kvapply.LeaseChecker {
	return kvapply.LeaseCheckerFunc(func(int64) bool { return false })
}

// leaseTrack attaches and detaches keys to leases as writes change them.
func (s *Server) leaseTrack(events []mvcc.Event) {}

// applyLease applies a lease request.
func (s *Server) applyLease(index uint64, req *pb.InternalRaftRequest) (any, error) {
	if err := s.kv.SetConsistentIndex(index); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "server: leases are not implemented yet")
}

package v3rpc

import (
	"context"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/synod-db/synod/server"
)

// maintenanceServer is the Maintenance service.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s maintenanceMember
}

func (m *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return m.s.Alarm(ctx, r)
}

func (m *maintenanceServer) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	st := m.s.Status()
	return &pb.StatusResponse{
		Header:           m.s.Header(),
		Version:          server.Version,
		DbSize:           st.DBSize,
		DbSizeInUse:      st.DBSizeInUse,
		Leader:           st.Leader,
		RaftIndex:        st.RaftIndex,
		RaftTerm:         st.RaftTerm,
		RaftAppliedIndex: st.AppliedIndex,
		Errors:           st.Errors,
		IsLearner:        st.IsLearner,
		StorageVersion:   server.ClusterVersion,
	}, nil
}

func (m *maintenanceServer) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := m.s.Defragment(ctx); err != nil {
		return nil, err
	}
	// etcd answers an empty message, without a header; curl users and
	// etcd's tests expect exactly {}.
	return &pb.DefragmentResponse{}, nil
}

func (m *maintenanceServer) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	h, err := m.s.Hash()
	if err != nil {
		return nil, err
	}
	return &pb.HashResponse{Header: m.s.Header(), Hash: h}, nil
}

func (m *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	h, compacted, rev, err := m.s.HashKV(r.Revision)
	if err != nil {
		return nil, err
	}
	if compacted == 0 {
		// etcd's compacted revision before any compaction is -1; tools
		// compare members by it.
		compacted = -1
	}
	return &pb.HashKVResponse{Header: m.s.Header(), Hash: h, CompactRevision: compacted, HashRevision: rev}, nil
}

func (m *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if r.TargetID == 0 {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	if err := m.s.MoveLeader(ctx, r.TargetID); err != nil {
		if err == server.ErrMemberNotFound {
			return nil, rpctypes.ErrGRPCBadLeaderTransferee
		}
		return nil, err
	}
	return &pb.MoveLeaderResponse{Header: m.s.Header()}, nil
}

// snapshotChunk is the size of one Snapshot response message.
const snapshotChunk = 32 << 10

// Snapshot streams a consistent copy of the key space, then the SHA-256
// of it, in chunks; clients check the digest.
func (m *maintenanceServer) Snapshot(r *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(m.s.Snapshot(pw)) }()
	defer pr.Close()
	buf := make([]byte, snapshotChunk)
	for {
		n, err := io.ReadFull(pr, buf)
		if n > 0 {
			// As etcd: no header, and the storage version (the release
			// whose restore reads the file), as Status reports it.
			resp := &pb.SnapshotResponse{Blob: buf[:n], Version: server.ClusterVersion}
			if serr := stream.Send(resp); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

package v3rpc

import (
	"context"
	"errors"
	"net/url"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/server"
)

// clusterServer is the Cluster service (membership).
type clusterServer struct {
	pb.UnimplementedClusterServer
	s clusterMember
}

func toPBMembers(ms []server.Member) []*pb.Member {
	out := make([]*pb.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, toPBMember(m))
	}
	return out
}

func toPBMember(m server.Member) *pb.Member {
	return &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
}

func (c *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	m, members, err := c.s.MemberAdd(ctx, r.PeerURLs, r.IsLearner)
	if err != nil {
		return nil, err
	}
	return &pb.MemberAddResponse{Header: c.s.Header(), Member: toPBMember(m), Members: toPBMembers(members)}, nil
}

func (c *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	members, err := c.s.MemberRemove(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return &pb.MemberRemoveResponse{Header: c.s.Header(), Members: toPBMembers(members)}, nil
}

func (c *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	members, err := c.s.MemberUpdate(ctx, r.ID, r.PeerURLs)
	if err != nil {
		return nil, err
	}
	return &pb.MemberUpdateResponse{Header: c.s.Header(), Members: toPBMembers(members)}, nil
}

func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := c.s.LinearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	return &pb.MemberListResponse{Header: c.s.Header(), Members: toPBMembers(c.s.Members())}, nil
}

func (c *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	members, err := c.s.MemberPromote(ctx, r.ID)
	if errors.Is(err, server.ErrNotLeader) {
		// Only the leader knows whether the learner caught up: ask it.
		return c.forwardPromote(ctx, r)
	}
	if err != nil {
		return nil, err
	}
	return &pb.MemberPromoteResponse{Header: c.s.Header(), Members: toPBMembers(members)}, nil
}

// forwardPromote sends a promotion to the leader's client API, as etcd
// forwards it to the leader, so that a client may ask any member.
func (c *clusterServer) forwardPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	lead := c.s.Leader()
	if lead == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	var target string
	for _, m := range c.s.Members() {
		if m.ID == lead && len(m.ClientURLs) > 0 {
			if u, err := url.Parse(m.ClientURLs[0]); err == nil {
				target = u.Host
			}
		}
	}
	if target == "" {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := pb.NewClusterClient(conn).MemberPromote(ctx, r)
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return nil, st.Err()
		}
		return nil, err
	}
	return resp, nil
}

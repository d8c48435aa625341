package v3rpc

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/synod-db/synod/server/kvapply"
)

// kvServer is the KV service: it validates requests (so that nothing
// malformed reaches raft) and hands them to the server.
type kvServer struct {
	pb.UnimplementedKVServer
	s      kvMember
	limits kvapply.Limits
}

func newKVServer(s kvMember) *kvServer {
	return &kvServer{s: s, limits: kvapply.Limits{MaxTxnOps: s.Config().MaxTxnOps}}
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := kvapply.ValidateRange(r); err != nil {
		return nil, err
	}
	return k.s.Range(ctx, r)
}

// RangeStream answers a Range in pages, for results too large for one
// message (etcd 3.7's KV.RangeStream).
func (k *kvServer) RangeStream(r *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	if err := kvapply.ValidateRangeStream(r); err != nil {
		return err
	}
	return k.s.RangeStream(stream.Context(), r, func(resp *pb.RangeResponse) error {
		return stream.Send(&pb.RangeStreamResponse{RangeResponse: resp})
	})
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := kvapply.ValidatePut(r); err != nil {
		return nil, err
	}
	if len(r.Key)+len(r.Value) > k.s.Config().MaxRequestBytes {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	return k.s.Put(ctx, r)
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := kvapply.ValidateDeleteRange(r); err != nil {
		return nil, err
	}
	return k.s.DeleteRange(ctx, r)
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := kvapply.ValidateTxn(r, k.limits); err != nil {
		return nil, err
	}
	return k.s.Txn(ctx, r)
}

func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return k.s.Compact(ctx, r)
}

package v3rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/server/kvapply"
)

func TestToGRPCError(t *testing.T) {
	custom := status.Error(codes.Aborted, "custom")
	tests := []struct {
		in   error
		want error // nil: check only the code
		code codes.Code
	}{
		{nil, nil, codes.OK},
		{custom, custom, codes.Aborted},
		{fmt.Errorf("forwarded: %w", custom), nil, codes.Aborted},
		{server.ErrStopped, rpctypes.ErrGRPCStopped, codes.Unavailable},
		{fmt.Errorf("%w: %w", server.ErrTimeout, context.DeadlineExceeded), rpctypes.ErrGRPCTimeout, codes.Unavailable},
		{server.ErrNotLeader, rpctypes.ErrGRPCNotLeader, codes.FailedPrecondition},
		{server.ErrNoSpace, rpctypes.ErrGRPCNoSpace, codes.ResourceExhausted},
		{server.ErrResultUnknown, errGRPCResultUnknown, codes.Unavailable},
		{server.ErrIDRemoved, rpctypes.ErrGRPCMemberNotFound, codes.NotFound},
		{kvapply.Refuse(fmt.Errorf("%w (raft entry 9)", server.ErrUnsupportedRequest)), nil, codes.Unimplemented},
		{context.Canceled, rpctypes.ErrGRPCCanceled, codes.Canceled},
		{context.DeadlineExceeded, rpctypes.ErrGRPCDeadlineExceeded, codes.DeadlineExceeded},
		{mvcc.ErrClosed, nil, codes.Unavailable},
		{fmt.Errorf("kvapply: no key-value store: %w", mvcc.ErrClosed), nil, codes.Unavailable},
		{kvapply.Refuse(mvcc.ErrCompacted), rpctypes.ErrGRPCCompacted, codes.OutOfRange},
		{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted, codes.OutOfRange},
		{kvapply.Refuse(mvcc.ErrFutureRev), rpctypes.ErrGRPCFutureRev, codes.OutOfRange},
		{kvapply.Refuse(mvcc.ErrKeyNotFound), rpctypes.ErrGRPCKeyNotFound, codes.InvalidArgument},
		{kvapply.Refuse(mvcc.ErrEmptyKey), rpctypes.ErrGRPCEmptyKey, codes.InvalidArgument},
		{kvapply.Refuse(kvapply.ErrDuplicateKey), rpctypes.ErrGRPCDuplicateKey, codes.InvalidArgument},
		{kvapply.Refuse(kvapply.ErrTooManyOps), rpctypes.ErrGRPCTooManyOps, codes.InvalidArgument},
		{kvapply.Refuse(kvapply.ErrLeaseNotFound), rpctypes.ErrGRPCLeaseNotFound, codes.NotFound},
		{kvapply.Refuse(lease.ErrLeaseExists), rpctypes.ErrGRPCLeaseExist, codes.FailedPrecondition},
		{lease.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound, codes.NotFound},
		{lease.ErrTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge, codes.OutOfRange},
		{lease.ErrNoID, nil, codes.InvalidArgument},
		{kvapply.Refuse(errors.New("etcdserver: txn compare is nil")), nil, codes.InvalidArgument},
		{mvcc.ErrCorrupt, nil, codes.Internal},
		{errors.New("disk on fire"), nil, codes.Internal},
	}
	for _, tt := range tests {
		got := toGRPCError(tt.in)
		if tt.want != nil && got != tt.want {
			t.Errorf("%v: %v, want %v", tt.in, got, tt.want)
		}
		if status.Code(got) != tt.code {
			t.Errorf("%v: code %v, want %v", tt.in, status.Code(got), tt.code)
		}
	}
	if msg := status.Convert(toGRPCError(errors.New("disk on fire"))).Message(); msg != "etcdserver: disk on fire" {
		t.Errorf("internal error's message %q", msg)
	}
}

// TestEveryRefusalHasACode checks that no refusal of a validation
// function reaches clients as Internal, which clientv3 would retry.
func TestEveryRefusalHasACode(t *testing.T) {
	reqs := []func() error{
		func() error { return kvapply.ValidateRange(&pb.RangeRequest{}) },
		func() error { return kvapply.ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: 9}) },
		func() error {
			return kvapply.ValidatePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true})
		},
		func() error {
			return kvapply.ValidatePut(&pb.PutRequest{Key: []byte("a"), Lease: 1, IgnoreLease: true})
		},
		func() error { return kvapply.ValidateDeleteRange(nil) },
		func() error { return kvapply.ValidateCompaction(&pb.CompactionRequest{Revision: -1}) },
		func() error {
			return kvapply.ValidateTxn(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a"), Target: 9}}}, kvapply.Limits{})
		},
		func() error {
			put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a")}}}
			return kvapply.ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{put, put}}, kvapply.Limits{})
		},
	}
	for i, req := range reqs {
		err := req()
		if err == nil {
			t.Fatalf("request %d was not refused", i)
		}
		if c := status.Code(toGRPCError(err)); c == codes.Internal || c == codes.Unknown {
			t.Errorf("request %d: %v reaches the client as %v", i, err, c)
		}
	}
}

// TestErrorsInterceptors checks that handlers' domain errors leave
// through the interceptors as etcd's statuses.
func TestErrorsInterceptors(t *testing.T) {
	_, err := errorsUnary(context.Background(), nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
		return nil, server.ErrNoLeader
	})
	if err != rpctypes.ErrGRPCNoLeader {
		t.Errorf("unary: %v", err)
	}
	err = errorsStream(nil, nil, &grpc.StreamServerInfo{}, func(any, grpc.ServerStream) error {
		return kvapply.Refuse(mvcc.ErrCompacted)
	})
	if err != rpctypes.ErrGRPCCompacted {
		t.Errorf("stream: %v", err)
	}
}

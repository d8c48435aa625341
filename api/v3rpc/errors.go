package v3rpc

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/server/kvapply"
)

// errorTable maps the domain errors of the packages below to etcd's gRPC
// errors, so that clients (clientv3's retry logic, etcdctl's messages)
// react as with etcd. It is the only place where a synod error becomes a
// gRPC status: handlers return domain errors and the interceptors
// (errorsUnary, errorsStream) convert them on the way out. The first
// entry an error matches (errors.Is) wins.
var errorTable = []struct {
	err  error
	grpc error
}{
	// A member's state and the request's fate.
	{server.ErrStopped, rpctypes.ErrGRPCStopped},
	{server.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{server.ErrTimeoutLeader, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
	{server.ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged},
	{server.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{server.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{server.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{server.ErrTooManyRequests, rpctypes.ErrGRPCRequestTooManyRequests},
	{server.ErrNoSpace, rpctypes.ErrGRPCNoSpace},
	{server.ErrCorrupt, rpctypes.ErrGRPCCorrupt},
	{server.ErrUnhealthy, rpctypes.ErrGRPCUnhealthy},
	{server.ErrResultUnknown, errGRPCResultUnknown},
	{server.ErrStaleExpiry, status.Error(codes.FailedPrecondition, server.ErrStaleExpiry.Error())},
	{server.ErrUnsupportedRequest, status.Error(codes.Unimplemented, server.ErrUnsupportedRequest.Error())},
	{mvcc.ErrClosed, status.Error(codes.Unavailable, "etcdserver: "+mvcc.ErrClosed.Error())},
	{context.Canceled, rpctypes.ErrGRPCCanceled},
	{context.DeadlineExceeded, rpctypes.ErrGRPCDeadlineExceeded},

	// Membership.
	{server.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{server.ErrMemberExists, rpctypes.ErrGRPCMemberExist},
	{server.ErrIDRemoved, rpctypes.ErrGRPCMemberNotFound},
	{server.ErrPeerURLExists, rpctypes.ErrGRPCPeerURLExist},
	{server.ErrMemberNotLearner, rpctypes.ErrGRPCMemberNotLearner},
	{server.ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady},
	{server.ErrTooManyLearners, rpctypes.ErrGRPCTooManyLearners},
	{server.ErrNotEnoughStarted, rpctypes.ErrGRPCMemberNotEnoughStarted},
	{server.ErrInvalidPeerURL, rpctypes.ErrGRPCMemberBadURLs},
	{server.ErrClusterIDMismatch, rpctypes.ErrGRPCClusterIDMismatch},

	// KV requests.
	{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{mvcc.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{kvapply.ErrInvalidSortOption, rpctypes.ErrGRPCInvalidSortOption},
	{kvapply.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{kvapply.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{kvapply.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{kvapply.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{kvapply.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{kvapply.ErrStreamSort, status.Error(codes.Unimplemented, kvapply.ErrStreamSort.Error())},
	{kvapply.ErrStreamFilter, status.Error(codes.Unimplemented, kvapply.ErrStreamFilter.Error())},

	// Lock and election, in etcd's words (which it sends as Unknown).
	{errMissingLeaderKey, status.Error(codes.Unknown, errMissingLeaderKey.Error())},
	{concurrency.ErrElectionNoLeader, status.Error(codes.Unknown, concurrency.ErrElectionNoLeader.Error())},
	{concurrency.ErrElectionNotLeader, status.Error(codes.Unknown, concurrency.ErrElectionNotLeader.Error())},

	// Leases.
	{lease.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{lease.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{lease.ErrTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{lease.ErrNoID, status.Error(codes.InvalidArgument, "etcdserver: lease ID 0 is reserved")},
}

// errGRPCResultUnknown is Unavailable, like etcd's timeouts, so that
// clients treat it as an outcome they must check, not as a failure; and
// clientv3 does not retry a write on it, which could apply it twice.
var errGRPCResultUnknown = status.Error(codes.Unavailable, "etcdserver: request committed but its result is unknown (this member caught up from a snapshot taken after it); read the keys to see its effect")

// toGRPCError converts an error of the request path to a gRPC status
// error: errorTable's, else InvalidArgument with its message for any
// other refused request (kvapply.RequestError: a malformed request), else
// Internal. Errors that already carry a status (a leader's answer to a
// forwarded call, the checks of this package) pass through.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	// The lock and election services call the member through clientv3,
	// which turns etcd's errors into rpctypes.EtcdError: send them on as
	// they came.
	var etcdErr rpctypes.EtcdError
	if errors.As(err, &etcdErr) {
		return status.Error(etcdErr.Code(), etcdErr.Error())
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.grpc
		}
	}
	if kvapply.IsRequestError(err) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Error(codes.Internal, "etcdserver: "+err.Error())
}

// errorsUnary converts a unary handler's error with toGRPCError. It runs
// innermost, so that every interceptor outside it (metrics) sees the code
// the client gets.
func errorsUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	return resp, toGRPCError(err)
}

// errorsStream converts a stream handler's error with toGRPCError.
func errorsStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return toGRPCError(h(srv, ss))
}

package v3rpc

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/server/kvapply"
)

// serverErrors maps the server's errors to etcd's gRPC errors, so that
// clients (clientv3's retry logic, etcdctl's messages) react as with etcd.
var serverErrors = []struct {
	err  error
	grpc error
}{
	{server.ErrStopped, rpctypes.ErrGRPCStopped},
	{server.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{server.ErrTimeoutLeader, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
	{server.ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged},
	{server.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{server.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{server.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{server.ErrTooManyRequests, rpctypes.ErrGRPCRequestTooManyRequests},
	{server.ErrNoSpace, rpctypes.ErrGRPCNoSpace},
	{server.ErrUnhealthy, rpctypes.ErrGRPCUnhealthy},
	{server.ErrResultUnknown, errGRPCResultUnknown},
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
}

// errGRPCResultUnknown is Unavailable, like etcd's timeouts, so that
// clients treat it as an outcome they must check, not as a failure; and
// clientv3 does not retry a write on it, which could apply it twice.
var errGRPCResultUnknown = status.Error(codes.Unavailable, "etcdserver: request committed but its result is unknown (this member caught up from a snapshot taken after it); read the keys to see its effect")

// toGRPCError converts any error of the request path to a gRPC status
// error. Errors that already carry a status pass through.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range serverErrors {
		if errors.Is(err, e.err) {
			return e.grpc
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCDeadlineExceeded
	}
	if gerr := kvapply.ToGRPCError(err); gerr != nil {
		if st, ok := status.FromError(gerr); ok && st.Code() != codes.Unknown {
			return gerr
		}
	}
	return status.Error(codes.Internal, err.Error())
}

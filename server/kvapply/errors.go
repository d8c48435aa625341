package kvapply

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/mvcc"
)

// Errors for malformed requests that etcd itself would crash on or
// silently misread (nil messages, unknown enum values, a compare without
// its operand). They are InvalidArgument, like etcd's own validation
// errors, so clients treat them as permanent.
var (
	errNilRequest      = status.Error(codes.InvalidArgument, "etcdserver: request is nil")
	errNilCompare      = status.Error(codes.InvalidArgument, "etcdserver: txn compare is nil")
	errCompareTarget   = status.Error(codes.InvalidArgument, "etcdserver: invalid compare target")
	errCompareResult   = status.Error(codes.InvalidArgument, "etcdserver: invalid compare result")
	errCompareOperand  = status.Error(codes.InvalidArgument, "etcdserver: compare operand missing or not matching the compare target")
	errNilRangeOp      = status.Error(codes.InvalidArgument, "etcdserver: txn range operation has no request")
	errNilPutOp        = status.Error(codes.InvalidArgument, "etcdserver: txn put operation has no request")
	errNilDeleteOp     = status.Error(codes.InvalidArgument, "etcdserver: txn delete operation has no request")
	errNilTxnOp        = status.Error(codes.InvalidArgument, "etcdserver: txn nested transaction has no request")
	errWriteInReadOnly = status.Error(codes.InvalidArgument, "etcdserver: write operation in a read-only txn")
	errNilStore        = status.Error(codes.Unavailable, "etcdserver: no key-value store")
)

// ToGRPCError converts an error from the store (or from this package) to
// the gRPC status error etcd would return, so the API layer can return it
// as is: mvcc.ErrCompacted becomes rpctypes.ErrGRPCCompacted,
// mvcc.ErrFutureRev rpctypes.ErrGRPCFutureRev, mvcc.ErrKeyNotFound
// rpctypes.ErrGRPCKeyNotFound, mvcc.ErrEmptyKey rpctypes.ErrGRPCEmptyKey,
// a closed store Unavailable (the member is shutting down: retry
// elsewhere), context errors etcd's Canceled/DeadlineExceeded errors, and
// anything else Internal with the original message. Status errors pass
// through unchanged; nil stays nil.
//
// Internal and Unavailable errors from a write are not properties of the
// request: another member applying the same entry would not fail. The
// apply loop should stop on them rather than carry on with a store that
// missed a committed entry.
func ToGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, mvcc.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, mvcc.ErrKeyNotFound):
		return rpctypes.ErrGRPCKeyNotFound
	case errors.Is(err, mvcc.ErrEmptyKey):
		return rpctypes.ErrGRPCEmptyKey
	case errors.Is(err, mvcc.ErrClosed):
		return status.Error(codes.Unavailable, "etcdserver: "+err.Error())
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCDeadlineExceeded
	}
	return status.Error(codes.Internal, "etcdserver: "+err.Error())
}

package kvapply

import (
	"errors"
	"fmt"

	"github.com/synod-db/synod/mvcc"
)

// RequestError is the error of a request that etcd's semantics refuse.
// It is the request's own fault: every member applying the same entry
// fails it the same way and goes on. Every refusal this package returns
// is one (test with errors.As); any other error comes from the store and
// means it missed a write, which must stop the member rather than let it
// diverge. The API layer maps Err (with errors.Is) to etcd's gRPC error;
// a RequestError it has no mapping for is an invalid argument.
type RequestError struct {
	// Err is the refusal: one of this package's Err* values, one of
	// mvcc's request errors (ErrCompacted, ErrFutureRev, ErrKeyNotFound,
	// ErrEmptyKey), or a message about a malformed request.
	Err error
}

func (e *RequestError) Error() string { return e.Err.Error() }

// Unwrap returns Err, so that errors.Is finds the refusal through it.
func (e *RequestError) Unwrap() error { return e.Err }

// Refuse marks err as a request's own fault. The server uses it for the
// requests it applies itself (compactions, leases), so that one type
// tells a refusal from a storage failure across the apply step.
func Refuse(err error) error { return &RequestError{Err: err} }

// IsRequestError reports whether err is a request's own fault (a
// RequestError somewhere in its chain).
func IsRequestError(err error) bool {
	var re *RequestError
	return errors.As(err, &re)
}

// Refusals of etcd's KV semantics, in etcd's words. The values returned
// are RequestErrors wrapping them.
var (
	ErrInvalidSortOption = errors.New("etcdserver: invalid sort option")
	ErrValueProvided     = errors.New("etcdserver: value is provided")
	ErrLeaseProvided     = errors.New("etcdserver: lease is provided")
	ErrTooManyOps        = errors.New("etcdserver: too many operations in txn request")
	ErrDuplicateKey      = errors.New("etcdserver: duplicate key given in txn request")
	ErrLeaseNotFound     = errors.New("etcdserver: requested lease not found")
)

// The RequestErrors returned, built once: refusing a request allocates
// nothing.
var (
	errEmptyKey          = Refuse(mvcc.ErrEmptyKey)
	errKeyNotFound       = Refuse(mvcc.ErrKeyNotFound)
	errFutureRev         = Refuse(mvcc.ErrFutureRev)
	errCompacted         = Refuse(mvcc.ErrCompacted)
	errInvalidSortOption = Refuse(ErrInvalidSortOption)
	errValueProvided     = Refuse(ErrValueProvided)
	errLeaseProvided     = Refuse(ErrLeaseProvided)
	errTooManyOps        = Refuse(ErrTooManyOps)
	errDuplicateKey      = Refuse(ErrDuplicateKey)
	errLeaseNotFound     = Refuse(ErrLeaseNotFound)
)

// Refusals of malformed requests that etcd itself would crash on or
// silently misread (nil messages, unknown enum values, a compare without
// its operand). Having no mapping of their own, they reach clients as
// invalid arguments, like etcd's validation errors, which clients treat
// as permanent.
var (
	errNilRequest      = Refuse(errors.New("etcdserver: request is nil"))
	errNilCompare      = Refuse(errors.New("etcdserver: txn compare is nil"))
	errCompareTarget   = Refuse(errors.New("etcdserver: invalid compare target"))
	errCompareResult   = Refuse(errors.New("etcdserver: invalid compare result"))
	errNilRangeOp      = Refuse(errors.New("etcdserver: txn range operation has no request"))
	errNilPutOp        = Refuse(errors.New("etcdserver: txn put operation has no request"))
	errNilDeleteOp     = Refuse(errors.New("etcdserver: txn delete operation has no request"))
	errNilTxnOp        = Refuse(errors.New("etcdserver: txn nested transaction has no request"))
	errWriteInReadOnly = Refuse(errors.New("etcdserver: write operation in a read-only txn"))
)

// errNilStore answers a call without a store: the member is not open (or
// no longer), as with a closed store.
var errNilStore = fmt.Errorf("kvapply: no key-value store: %w", mvcc.ErrClosed)

// storeError classifies an error of the store: its request errors become
// RequestErrors; anything else (a failing engine, a closed store) stays
// as it is, a storage failure.
func storeError(err error) error {
	switch {
	case errors.Is(err, mvcc.ErrCompacted):
		return errCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return errFutureRev
	case errors.Is(err, mvcc.ErrKeyNotFound):
		return errKeyNotFound
	case errors.Is(err, mvcc.ErrEmptyKey):
		return errEmptyKey
	}
	return err
}

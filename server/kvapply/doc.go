// Package kvapply executes etcd v3 KV requests (Range, Put, DeleteRange,
// Txn) against synod's multi-version store, with etcd's semantics, so that
// go.etcd.io/etcd/client/v3 and etcdctl see exactly the answers they expect.
//
// The package has three kinds of entry points, matching the three places
// the server handles a KV request:
//
//   - Validation (ValidateRange, ValidatePut, ValidateDeleteRange,
//     ValidateTxn, ValidateCompaction) runs in the API layer before a
//     request is proposed to Raft. It never touches the store, so a
//     malformed request costs no consensus round; it refuses what etcd
//     refuses, with a RequestError.
//   - Writes (Put, DeleteRange, Txn) run on the apply goroutine, inside
//     mvcc.Store.Write for the committed entry: every change of the request
//     becomes part of the one revision of that WriteTxn. A failing request
//     returns an error and Store.Write discards all its changes.
//   - Reads (Range, ReadTxn) run directly against the store, for
//     serializable reads or after a ReadIndex round: they never go through
//     the log. IsReadOnlyTxn tells which transactions may take this path.
//
// Errors are domain errors, never gRPC statuses: a refused request is a
// RequestError wrapping the reason (this package's Err* values or
// mvcc's), which the API layer maps to etcd's gRPC error; any other error
// is the store's failure (see RequestError).
//
// Responses carry a Header holding only Revision, the revision the request
// was served at (for writes, the revision after the request). The server
// fills in ClusterId, MemberId and RaftTerm. Reads must report the revision
// they actually read at, which only this package knows without a race;
// writes get it for the same price so every response looks the same.
//
// Execution functions re-check the cheap parts of validation (nil
// messages, empty keys, enum values, flag combinations), so they never
// panic and never execute a malformed request, even if the caller skipped
// validation; the costlier Txn checks (operation counts, duplicate keys)
// are left to ValidateTxn.
package kvapply

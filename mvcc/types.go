package mvcc

import "errors"

// Errors returned by the store. The messages match etcd's so that the API
// layer can hand them to clients unchanged.
var (
	// ErrCompacted is returned when a read or compaction asks for a
	// revision that has already been compacted away.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev is returned when a read or compaction asks for a
	// revision greater than the store's current revision.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrKeyNotFound is returned by Put with IgnoreValue or IgnoreLease
	// when the key does not exist.
	ErrKeyNotFound = errors.New("etcdserver: key not found")
	// ErrClosed is returned by operations on a closed store.
	ErrClosed = errors.New("mvcc: store is closed")
	// ErrCorrupt is returned when stored or restored bytes cannot be decoded.
	ErrCorrupt = errors.New("mvcc: corrupt data")
	// ErrEmptyKey is returned when a write names an empty key.
	ErrEmptyKey = errors.New("mvcc: key is empty")
)

// KeyValue is one version of a key.
type KeyValue struct {
	// Key is the user key.
	Key []byte
	// Value is the value stored at this version (nil when keys-only).
	Value []byte
	// CreateRevision is the revision of the put that created the key
	// (the first put after the key was missing or deleted).
	CreateRevision int64
	// ModRevision is the revision of the last change to the key.
	ModRevision int64
	// Version counts puts since creation: 1 on create, +1 per put.
	Version int64
	// Lease is the lease ID attached to the key, 0 for none.
	Lease int64
}

// EventType tells whether an Event is a put or a delete.
type EventType int

const (
	// EventPut is a put of a key.
	EventPut EventType = iota
	// EventDelete is a deletion of a key.
	EventDelete
)

// String returns "PUT" or "DELETE".
func (t EventType) String() string {
	if t == EventDelete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change made by a write: a put or a delete of one key.
type Event struct {
	// Type is EventPut or EventDelete.
	Type EventType
	// KV is the new version for a put; for a delete only Key and
	// ModRevision (the deleting revision) are set.
	KV KeyValue
	// PrevKV is the version replaced by the change, when one existed.
	PrevKV *KeyValue
}

// SortOrder is the order of Range results.
type SortOrder int

const (
	// SortNone keeps the natural key order (ascending by the target).
	SortNone SortOrder = iota
	// SortAscend sorts ascending by the target.
	SortAscend
	// SortDescend sorts descending by the target.
	SortDescend
)

// SortTarget is the field Range results are sorted by.
type SortTarget int

const (
	// SortByKey sorts by key bytes.
	SortByKey SortTarget = iota
	// SortByVersion sorts by version.
	SortByVersion
	// SortByCreate sorts by create revision.
	SortByCreate
	// SortByMod sorts by mod revision.
	SortByMod
	// SortByValue sorts by value bytes.
	SortByValue
)

// RangeOptions selects and shapes the results of a Range.
type RangeOptions struct {
	// Limit caps the number of returned KVs; 0 means no limit.
	Limit int64
	// Rev is the revision to read at; 0 means the current revision.
	Rev int64
	// SortOrder is the order of results (default: ascending by key).
	SortOrder SortOrder
	// SortTarget is the field to sort by.
	SortTarget SortTarget
	// KeysOnly omits values from the results.
	KeysOnly bool
	// CountOnly returns only the count, no KVs.
	CountOnly bool
	// NoTotal stops a Limit-ed read in the natural key order once it
	// knows there is more (the Limit+1st key), instead of counting every
	// key of the range: Count then counts only the keys visited. A reader
	// that pages through a large range (RangeStream) needs the total once,
	// not on every page, where it would make the whole read quadratic.
	NoTotal bool
	// MinCreateRev, if non-zero, drops KVs created before it.
	MinCreateRev int64
	// MaxCreateRev, if non-zero, drops KVs created after it.
	MaxCreateRev int64
	// MinModRev, if non-zero, drops KVs last modified before it.
	MinModRev int64
	// MaxModRev, if non-zero, drops KVs last modified after it.
	MaxModRev int64
}

// RangeResult is the answer to a Range.
type RangeResult struct {
	// KVs are the selected key-values (empty when CountOnly).
	KVs []KeyValue
	// Count is the number of live keys in the range at Rev, independent of
	// Limit and (as in etcd) of the create/mod revision filters.
	Count int64
	// More reports that Limit cut off further results.
	More bool
	// Rev is, as in etcd, the store's
	// current revision (the header revision), not the requested one.
	Rev int64
}

// PutOptions are the etcd Put flags.
type PutOptions struct {
	// PrevKV asks for the previous version of the key.
	PrevKV bool
	// IgnoreValue keeps the key's current value (the key must exist).
	IgnoreValue bool
	// IgnoreLease keeps the key's current lease (the key must exist).
	IgnoreLease bool
}

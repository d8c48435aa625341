package kvapply

import (
	"bytes"
	"slices"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// DefaultMaxTxnOps is etcd's default --max-txn-ops: the most compares, and
// the most operations per branch, that a Txn may carry.
const DefaultMaxTxnOps = 128

// Limits are the configurable bounds ValidateTxn enforces. They exist so
// that one request cannot make every member do unbounded work in the apply
// loop, which would stall all other writes.
type Limits struct {
	// MaxTxnOps bounds len(Compare), len(Success) and len(Failure) of a
	// Txn, each on its own (etcd's --max-txn-ops). A nested Txn gets what
	// its parent leaves: MaxTxnOps minus the largest of the parent's three
	// counts. 0 means DefaultMaxTxnOps.
	MaxTxnOps int
}

func (l Limits) maxTxnOps() int {
	if l.MaxTxnOps <= 0 {
		return DefaultMaxTxnOps
	}
	return l.MaxTxnOps
}

// ValidateRange checks a Range request before it is served, so that a
// malformed read fails without touching the store: an empty key is
// mvcc.ErrEmptyKey (use key "\x00" with range_end "\x00" for every
// key), an unknown sort order or target ErrInvalidSortOption.
func ValidateRange(req *pb.RangeRequest) error {
	if req == nil {
		return errNilRequest
	}
	if len(req.Key) == 0 {
		return errEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(req.SortOrder)]; !ok {
		return errInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(req.SortTarget)]; !ok {
		return errInvalidSortOption
	}
	return nil
}

// ValidatePut checks a Put request before it is proposed, so that a
// request that can never succeed does not cost a consensus round: an empty
// key is mvcc.ErrEmptyKey, a value given with ignore_value
// ErrValueProvided, a lease given with ignore_lease
// ErrLeaseProvided. Whether the key or the lease exists is
// only known when the entry is applied (Put checks it).
func ValidatePut(req *pb.PutRequest) error {
	if req == nil {
		return errNilRequest
	}
	if len(req.Key) == 0 {
		return errEmptyKey
	}
	if req.IgnoreValue && len(req.Value) != 0 {
		return errValueProvided
	}
	if req.IgnoreLease && req.Lease != 0 {
		return errLeaseProvided
	}
	return nil
}

// ValidateDeleteRange checks a DeleteRange request before it is proposed:
// an empty key is mvcc.ErrEmptyKey (use "\x00" with range_end
// "\x00" to delete every key).
func ValidateDeleteRange(req *pb.DeleteRangeRequest) error {
	if req == nil {
		return errNilRequest
	}
	if len(req.Key) == 0 {
		return errEmptyKey
	}
	return nil
}

// ValidateCompaction checks a Compaction request before it is proposed. A
// negative revision is always below the compaction point, so it fails with
// mvcc.ErrCompacted as in etcd. Whether a revision is compacted or
// in the future depends on the store at apply time: Store.Compact reports
// those, and the server refuses the request with them.
func ValidateCompaction(req *pb.CompactionRequest) error {
	if req == nil {
		return errNilRequest
	}
	if req.Revision < 0 {
		return errCompacted
	}
	return nil
}

// ValidateTxn checks a Txn request before it is proposed (or served as a
// read-only txn), as etcd does:
//
//   - more than lim.MaxTxnOps compares, success or failure operations:
//     ErrTooManyOps (nested transactions share the budget,
//     see Limits);
//   - a compare or operation on an empty key: mvcc.ErrEmptyKey;
//     any other invalid operation fails as the matching Validate function;
//   - an operation with no request set: mvcc.ErrKeyNotFound (what
//     etcd answers);
//   - a compare with an unknown target or result, or whose operand does
//     not match its target: a RequestError with no mapping of its own
//     (an invalid argument);
//   - within one branch (nested transactions included, both of their
//     branches), a key put twice, or put and also deleted by a
//     DeleteRange: ErrDuplicateKey. The two branches of one
//     nested transaction may touch the same keys, since only one of them
//     runs. etcd forbids these so that one revision holds at most one
//     change per key, which watchers and clients rely on.
//
// Caveat: etcd misses some overlaps that this check reports (a put inside
// a DeleteRange whose range_end is "\x00", and a nested put that comes
// before a sibling's overlapping delete); synod rejects them all.
func ValidateTxn(req *pb.TxnRequest, lim Limits) error {
	if req == nil {
		return errNilRequest
	}
	if err := validateTxn(req, lim.maxTxnOps()); err != nil {
		return err
	}
	if err := checkBranchWrites(req.Success); err != nil {
		return err
	}
	return checkBranchWrites(req.Failure)
}

// validateTxn checks counts and the shape of every compare and operation,
// with budget the number of operations allowed at this level.
func validateTxn(req *pb.TxnRequest, budget int) error {
	n := max(len(req.Compare), len(req.Success), len(req.Failure))
	if n > budget {
		return errTooManyOps
	}
	for _, c := range req.Compare {
		if err := validateCompare(c); err != nil {
			return err
		}
	}
	for _, ops := range [2][]*pb.RequestOp{req.Success, req.Failure} {
		for _, op := range ops {
			if err := validateOp(op, budget-n); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateOp(op *pb.RequestOp, budget int) error {
	if op == nil {
		return errKeyNotFound
	}
	switch r := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		if r.RequestRange == nil {
			return errNilRangeOp
		}
		return ValidateRange(r.RequestRange)
	case *pb.RequestOp_RequestPut:
		if r.RequestPut == nil {
			return errNilPutOp
		}
		return ValidatePut(r.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		if r.RequestDeleteRange == nil {
			return errNilDeleteOp
		}
		return ValidateDeleteRange(r.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		if r.RequestTxn == nil {
			return errNilTxnOp
		}
		return validateTxn(r.RequestTxn, budget)
	}
	// No request set: etcd answers "key not found" for it.
	return errKeyNotFound
}

// validateCompare checks one compare: a key and a known target and
// result. The operand is not checked: as in etcd, a missing operand, or
// one of another target's type, compares as zero (compareKV). JSON
// clients of the gateway rely on it: they often leave a zero out.
func validateCompare(c *pb.Compare) error {
	if c == nil {
		return errNilCompare
	}
	if len(c.Key) == 0 {
		return errEmptyKey
	}
	switch c.Result {
	case pb.Compare_EQUAL, pb.Compare_NOT_EQUAL, pb.Compare_GREATER, pb.Compare_LESS:
	default:
		return errCompareResult
	}
	switch c.Target {
	case pb.Compare_VERSION, pb.Compare_CREATE, pb.Compare_MOD, pb.Compare_VALUE, pb.Compare_LEASE:
		return nil
	}
	return errCompareTarget
}

// A written key and a deleted span, tagged with the unit (the index of the
// operation at the level being checked) they come from: writes of the same
// unit were checked one level down, or are the two exclusive branches of
// one nested txn, so only writes of different units may conflict.
type putKey struct {
	key  []byte
	unit int
}

type delSpan struct {
	start, end []byte // [start, end); end unused when toEnd
	toEnd      bool   // no upper bound (range_end "\x00")
	unit       int
}

func (d *delSpan) contains(k []byte) bool {
	if bytes.Compare(k, d.start) < 0 {
		return false
	}
	return d.toEnd || bytes.Compare(k, d.end) < 0
}

// checkBranchWrites reports ErrDuplicateKey if the operations
// of one branch put a key twice or put a key that they also delete.
func checkBranchWrites(ops []*pb.RequestOp) error {
	// Fast path for the common shapes (one put, or deletes only): no
	// allocation.
	puts, dels := 0, 0
	for _, op := range ops {
		switch op.GetRequest().(type) {
		case *pb.RequestOp_RequestPut:
			puts++
		case *pb.RequestOp_RequestDeleteRange:
			dels++
		case *pb.RequestOp_RequestTxn:
			puts, dels = 2, 1 // force the full check
		}
	}
	if puts == 0 || (puts == 1 && dels == 0) {
		return nil
	}
	_, _, err := branchWrites(ops)
	return err
}

// branchWrites returns every put and delete in ops (nested transactions
// included) after checking that no two operations of ops conflict.
func branchWrites(ops []*pb.RequestOp) ([]putKey, []delSpan, error) {
	var puts []putKey
	var dels []delSpan
	for i, op := range ops {
		switch r := op.GetRequest().(type) {
		case *pb.RequestOp_RequestPut:
			if r.RequestPut != nil {
				puts = append(puts, putKey{r.RequestPut.Key, i})
			}
		case *pb.RequestOp_RequestDeleteRange:
			if d := r.RequestDeleteRange; d != nil {
				if span, ok := deleteSpan(d.Key, d.RangeEnd); ok {
					span.unit = i
					dels = append(dels, span)
				}
			}
		case *pb.RequestOp_RequestTxn:
			if r.RequestTxn == nil {
				continue
			}
			for _, branch := range [2][]*pb.RequestOp{r.RequestTxn.Success, r.RequestTxn.Failure} {
				p, d, err := branchWrites(branch)
				if err != nil {
					return nil, nil, err
				}
				for _, k := range p {
					puts = append(puts, putKey{k.key, i})
				}
				for _, s := range d {
					s.unit = i
					dels = append(dels, s)
				}
			}
		}
	}
	if err := checkConflicts(puts, dels); err != nil {
		return nil, nil, err
	}
	return puts, dels, nil
}

// deleteSpan turns a DeleteRange's key and range_end into the span it
// deletes; ok is false when it deletes nothing (range_end <= key).
func deleteSpan(key, end []byte) (delSpan, bool) {
	switch {
	case len(end) == 0:
		// One key: [key, key+"\x00").
		return delSpan{start: key, end: append(key[:len(key):len(key)], 0)}, true
	case len(end) == 1 && end[0] == 0:
		return delSpan{start: key, toEnd: true}, true
	case bytes.Compare(key, end) < 0:
		return delSpan{start: key, end: end}, true
	}
	return delSpan{}, false
}

// quadraticLimit is the size (puts x deletes) below which checkConflicts
// compares every pair instead of sorting.
const quadraticLimit = 64

// checkConflicts reports a put of a key by two units, or a put of one unit
// inside a deleted span of another.
func checkConflicts(puts []putKey, dels []delSpan) error {
	if len(puts) > 1 {
		slices.SortFunc(puts, func(a, b putKey) int {
			if c := bytes.Compare(a.key, b.key); c != 0 {
				return c
			}
			return a.unit - b.unit
		})
		for i := 1; i < len(puts); i++ {
			if puts[i].unit != puts[i-1].unit && bytes.Equal(puts[i].key, puts[i-1].key) {
				return errDuplicateKey
			}
		}
	}
	if len(puts) == 0 || len(dels) == 0 {
		return nil
	}
	if len(puts)*len(dels) <= quadraticLimit {
		return conflictsQuadratic(puts, dels)
	}
	return conflictsSorted(puts, dels)
}

func conflictsQuadratic(puts []putKey, dels []delSpan) error {
	for i := range puts {
		for j := range dels {
			if puts[i].unit != dels[j].unit && dels[j].contains(puts[i].key) {
				return errDuplicateKey
			}
		}
	}
	return nil
}

// spanEnd is the end of a span, kept with its unit, for the prefix maxima
// of conflictsSorted.
type spanEnd struct {
	end   []byte
	toEnd bool
	unit  int
	ok    bool // false: no span
}

func (a spanEnd) after(b spanEnd) bool {
	switch {
	case !b.ok:
		return a.ok
	case b.toEnd:
		return false
	case a.toEnd:
		return true
	}
	return bytes.Compare(a.end, b.end) > 0
}

// conflictsSorted is checkConflicts' put/delete check in O((P+D) log D):
// spans are sorted by start, and for each prefix of them it keeps the
// largest end and the largest end among the other units. A put of unit u
// conflicts iff, among the spans starting at or before it, one of another
// unit ends after it; the larger end not of unit u is one of the two kept.
func conflictsSorted(puts []putKey, dels []delSpan) error {
	slices.SortFunc(dels, func(a, b delSpan) int { return bytes.Compare(a.start, b.start) })
	type best2 struct{ first, second spanEnd }
	prefix := make([]best2, len(dels))
	var b best2
	for i := range dels {
		e := spanEnd{end: dels[i].end, toEnd: dels[i].toEnd, unit: dels[i].unit, ok: true}
		switch {
		case b.first.ok && e.unit == b.first.unit:
			if e.after(b.first) {
				b.first = e
			}
		case e.after(b.first):
			b.second, b.first = b.first, e
		case e.after(b.second):
			b.second = e
		}
		prefix[i] = b
	}
	for _, p := range puts {
		n := sort.Search(len(dels), func(i int) bool { return bytes.Compare(dels[i].start, p.key) > 0 })
		if n == 0 {
			continue
		}
		c := prefix[n-1].first
		if c.unit == p.unit {
			c = prefix[n-1].second
		}
		if c.ok && (c.toEnd || bytes.Compare(p.key, c.end) < 0) {
			return errDuplicateKey
		}
	}
	return nil
}

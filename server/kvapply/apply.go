package kvapply

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/synod-db/synod/mvcc"
)

// LeaseChecker tells Put whether a lease exists when the entry is applied.
// It is an interface so that the lease package can plug in without this
// package depending on it; the check must be deterministic (a function of
// the applied state only), since every member applies the same entry.
// Attaching keys to leases is not its job: the server does that from the
// events Store.Write returns (their KV.Lease and PrevKV.Lease).
type LeaseChecker interface {
	// LeaseExists reports whether lease id is granted and not yet revoked.
	LeaseExists(id int64) bool
}

// LeaseCheckerFunc adapts a function to LeaseChecker, for tests and for a
// server that keeps its lease table in a map.
type LeaseCheckerFunc func(id int64) bool

// LeaseExists calls f(id).
func (f LeaseCheckerFunc) LeaseExists(id int64) bool { return f(id) }

// Allocation groups: each response is allocated together with its header
// (and, inside a Txn, with its ResponseOp wrapper), one allocation instead
// of two or three on the hot path. A one-key Range result and a one-op Txn
// branch (a Get, a compare-and-swap) also keep their single element and
// its one-slot slice inline. Only addresses of the fields escape; the
// messages are never copied.
type (
	rangeAlloc struct {
		resp pb.RangeResponse
		hdr  pb.ResponseHeader
		kv   mvccpb.KeyValue
		kvs  [1]*mvccpb.KeyValue
	}
	putAlloc struct {
		resp pb.PutResponse
		hdr  pb.ResponseHeader
	}
	deleteAlloc struct {
		resp pb.DeleteRangeResponse
		hdr  pb.ResponseHeader
	}
	txnAlloc struct {
		resp pb.TxnResponse
		hdr  pb.ResponseHeader
		op   [1]pb.ResponseOp
		ops  [1]*pb.ResponseOp
	}
	rangeOpAlloc struct {
		op pb.ResponseOp_ResponseRange
		rangeAlloc
	}
	putOpAlloc struct {
		op pb.ResponseOp_ResponsePut
		putAlloc
	}
	deleteOpAlloc struct {
		op pb.ResponseOp_ResponseDeleteRange
		deleteAlloc
	}
	txnOpAlloc struct {
		op pb.ResponseOp_ResponseTxn
		txnAlloc
	}
)

// view is where a request runs: a write transaction (tx set) on the apply
// goroutine, or the store read at one fixed revision (read-only txn).
type view struct {
	tx     *mvcc.WriteTxn
	s      *mvcc.Store
	base   int64 // revision before the request: compares read here
	leases LeaseChecker
}

// read ranges over [key, end) through the view. opts.Rev 0 reads the
// view's current state: through tx its own writes included, else base (the
// store's current revision if base is 0).
func (v *view) read(key, end []byte, opts mvcc.RangeOptions) (mvcc.RangeResult, error) {
	if v.tx == nil && opts.Rev <= 0 {
		opts.Rev = v.base
	}
	if emptyRange(key, end) {
		// Empty range. The store's iterators must not get a lower bound
		// above the upper one, so only check the revision (a one-key
		// count) and answer nothing, as etcd does.
		opts = mvcc.RangeOptions{Rev: opts.Rev, CountOnly: true}
		end = nil
		res, err := v.rangeRaw(key, end, opts)
		return mvcc.RangeResult{Rev: res.Rev}, err
	}
	return v.rangeRaw(key, end, opts)
}

// emptyRange reports whether [key, end) is a real range (not one key, not
// "to the end") that contains nothing because end <= key.
func emptyRange(key, end []byte) bool {
	return len(end) > 0 && !(len(end) == 1 && end[0] == 0) && bytes.Compare(key, end) >= 0
}

func (v *view) rangeRaw(key, end []byte, opts mvcc.RangeOptions) (mvcc.RangeResult, error) {
	if v.tx != nil {
		return v.tx.Range(key, end, opts)
	}
	return v.s.Range(key, end, opts)
}

// headerRev is the revision a response served through the view reports.
func (v *view) headerRev(res *mvcc.RangeResult) int64 {
	if v.tx == nil {
		return v.base
	}
	return res.Rev
}

// Range serves a Range request from the store at req.Revision (0: the
// current revision), with etcd's semantics: range_end empty reads the one
// key, "\x00" every key from key on; Count is every live key in the range
// (whatever Limit and the revision filters), More says Limit cut the
// filtered results; sort_order NONE sorts by key ascending, or ascending
// by any other sort_target (ties keep key order). The Header holds the
// store's current revision at the read, which is what etcd reports even
// when req.Revision asks for an older one. Linearizability (ReadIndex) and
// serializable reads are the caller's business.
func Range(s *mvcc.Store, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if s == nil {
		return nil, errNilStore
	}
	if err := ValidateRange(req); err != nil {
		return nil, err
	}
	v := view{s: s} // base 0: read at the store's current revision
	res, err := v.read(req.Key, req.RangeEnd, rangeOptions(req))
	if err != nil {
		return nil, storeError(err)
	}
	return rangeResponse(new(rangeAlloc), req, &res, res.Rev), nil
}

// rangeOptions maps a (validated) RangeRequest to the store's options.
func rangeOptions(req *pb.RangeRequest) mvcc.RangeOptions {
	o := mvcc.RangeOptions{
		Limit: req.Limit,
		Rev:   req.Revision,
		// etcd sorts by value before dropping values for keys_only; the
		// store drops them first, so keep them for that sort and let
		// rangeResponse drop them.
		KeysOnly:     req.KeysOnly && req.SortTarget != pb.RangeRequest_VALUE,
		CountOnly:    req.CountOnly,
		MinCreateRev: req.MinCreateRevision,
		MaxCreateRev: req.MaxCreateRevision,
		MinModRev:    req.MinModRevision,
		MaxModRev:    req.MaxModRevision,
	}
	switch req.SortOrder {
	case pb.RangeRequest_ASCEND:
		o.SortOrder = mvcc.SortAscend
	case pb.RangeRequest_DESCEND:
		o.SortOrder = mvcc.SortDescend
	default:
		o.SortOrder = mvcc.SortNone
	}
	switch req.SortTarget {
	case pb.RangeRequest_VERSION:
		o.SortTarget = mvcc.SortByVersion
	case pb.RangeRequest_CREATE:
		o.SortTarget = mvcc.SortByCreate
	case pb.RangeRequest_MOD:
		o.SortTarget = mvcc.SortByMod
	case pb.RangeRequest_VALUE:
		o.SortTarget = mvcc.SortByValue
	default:
		o.SortTarget = mvcc.SortByKey
	}
	return o
}

func rangeResponse(a *rangeAlloc, req *pb.RangeRequest, res *mvcc.RangeResult, rev int64) *pb.RangeResponse {
	a.hdr.Revision = rev
	a.resp.Header = &a.hdr
	if req.KeysOnly {
		for i := range res.KVs {
			res.KVs[i].Value = nil
		}
	}
	if len(res.KVs) == 1 {
		setPBKV(&a.kv, &res.KVs[0])
		a.kvs[0] = &a.kv
		a.resp.Kvs = a.kvs[:]
	} else {
		a.resp.Kvs = toPBKVs(res.KVs)
	}
	a.resp.More = res.More
	a.resp.Count = res.Count
	return &a.resp
}

// toPBKVs converts the store's KVs with two allocations in all. The
// store's KVs own their key and value slices (fresh copies), so the
// protobuf KVs share them instead of copying again.
func toPBKVs(kvs []mvcc.KeyValue) []*mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	backing := make([]mvccpb.KeyValue, len(kvs))
	out := make([]*mvccpb.KeyValue, len(kvs))
	for i := range kvs {
		setPBKV(&backing[i], &kvs[i])
		out[i] = &backing[i]
	}
	return out
}

func setPBKV(dst *mvccpb.KeyValue, kv *mvcc.KeyValue) {
	dst.Key = kv.Key
	dst.Value = kv.Value
	dst.CreateRevision = kv.CreateRevision
	dst.ModRevision = kv.ModRevision
	dst.Version = kv.Version
	dst.Lease = kv.Lease
}

// Put applies a Put request in tx, which must be the WriteTxn of the
// request's own Store.Write (the put is its revision). As in etcd: a
// non-zero lease must exist (leases.LeaseExists; a nil leases knows no
// lease) or the put fails with ErrLeaseNotFound;
// ignore_value and ignore_lease keep the key's current value or lease and
// fail with mvcc.ErrKeyNotFound if the key does not exist; prev_kv
// returns the version replaced, if any.
func Put(tx *mvcc.WriteTxn, req *pb.PutRequest, leases LeaseChecker) (*pb.PutResponse, error) {
	if tx == nil {
		return nil, errNilStore
	}
	v := view{tx: tx, base: tx.Rev(), leases: leases}
	a := new(putAlloc)
	if err := v.put(req, a); err != nil {
		return nil, err
	}
	return &a.resp, nil
}

func (v *view) put(req *pb.PutRequest, a *putAlloc) error {
	if err := ValidatePut(req); err != nil {
		return err
	}
	if req.Lease != 0 && (v.leases == nil || !v.leases.LeaseExists(req.Lease)) {
		return errLeaseNotFound
	}
	prev, err := v.tx.Put(req.Key, req.Value, req.Lease, mvcc.PutOptions{
		PrevKV:      req.PrevKv,
		IgnoreValue: req.IgnoreValue,
		IgnoreLease: req.IgnoreLease,
	})
	if err != nil {
		return storeError(err)
	}
	if req.PrevKv && prev != nil {
		kv := new(mvccpb.KeyValue)
		setPBKV(kv, prev)
		a.resp.PrevKv = kv
	}
	a.hdr.Revision = v.tx.Rev()
	a.resp.Header = &a.hdr
	return nil
}

// DeleteRange applies a DeleteRange request in tx, which must be the
// WriteTxn of the request's own Store.Write. It deletes the live keys in
// [key, range_end) (range_end rules as in Range), returns how many, and
// with prev_kv their last versions. Deleting nothing is not an error and
// makes no new revision.
func DeleteRange(tx *mvcc.WriteTxn, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if tx == nil {
		return nil, errNilStore
	}
	v := view{tx: tx, base: tx.Rev()}
	a := new(deleteAlloc)
	if err := v.deleteRange(req, a); err != nil {
		return nil, err
	}
	return &a.resp, nil
}

func (v *view) deleteRange(req *pb.DeleteRangeRequest, a *deleteAlloc) error {
	if err := ValidateDeleteRange(req); err != nil {
		return err
	}
	if emptyRange(req.Key, req.RangeEnd) {
		// Deletes nothing (and the store must not iterate an inverted range).
		a.hdr.Revision = v.tx.Rev()
		a.resp.Header = &a.hdr
		return nil
	}
	n, prev, err := v.tx.DeleteRange(req.Key, req.RangeEnd, req.PrevKv)
	if err != nil {
		return storeError(err)
	}
	a.resp.Deleted = n
	if req.PrevKv {
		a.resp.PrevKvs = toPBKVs(prev)
	}
	a.hdr.Revision = v.tx.Rev()
	a.resp.Header = &a.hdr
	return nil
}

// IsReadOnlyTxn reports whether every operation of req, in both branches
// and in nested transactions, is a Range. Such a txn changes nothing, so
// the server may serve it with ReadTxn (after ReadIndex, or locally when
// serializable) instead of through the log. etcd sends any txn holding a
// nested txn through the log; serving read-only nested ones here gives the
// same answer without the consensus round. A nil txn, or one holding a nil
// or empty operation, is not read-only: it goes the write path, whose
// validation rejects it.
func IsReadOnlyTxn(req *pb.TxnRequest) bool {
	if req == nil {
		return false
	}
	for _, ops := range [2][]*pb.RequestOp{req.Success, req.Failure} {
		for _, op := range ops {
			switch r := op.GetRequest().(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !IsReadOnlyTxn(r.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// testHookReadTxnBase, set only by tests, runs between ReadTxn taking its
// revision and reading, to force the compaction race deterministically.
var testHookReadTxnBase func()

// maxReadTxnRetries bounds how often ReadTxn restarts after a compaction
// overtook the revision it was reading at.
const maxReadTxnRetries = 8

// ReadTxn serves a read-only Txn (IsReadOnlyTxn) from the store without
// the log. All its compares and ranges (with revision 0) read at one
// revision, the store's revision when it starts, so the answer is the one
// a write Txn applied at that revision would give; that revision is the
// Header's. A write operation is refused (a RequestError).
func ReadTxn(s *mvcc.Store, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if s == nil {
		return nil, errNilStore
	}
	for attempt := 0; ; attempt++ {
		v := view{s: s, base: s.Rev()}
		if testHookReadTxnBase != nil {
			testHookReadTxnBase()
		}
		resp, err := v.topTxn(req)
		// A compaction past v.base between taking it and reading makes
		// reads the client did not pin to a revision fail; start again
		// at the newer revision.
		if err == errCompacted && attempt < maxReadTxnRetries && s.CompactedRev() > v.base {
			continue
		}
		return resp, err
	}
}

// Txn applies a Txn request in tx, which must be the WriteTxn of the
// request's own Store.Write, with etcd's semantics: every compare (of
// nested transactions too) is evaluated against the state before the txn;
// the chosen branch's operations then run in order, each seeing the writes
// of the ones before it, all in the one revision of tx. A compare with a
// range_end holds if it holds for every key in the range; with no key
// there, a VALUE compare fails and the others compare against 0. If any
// operation fails Txn returns its error and the caller must let
// Store.Write discard the transaction (return the error from its
// function). Nested responses carry Headers as in etcd: Range, Put and
// DeleteRange the revision after the operation, nested Txns an empty one.
func Txn(tx *mvcc.WriteTxn, req *pb.TxnRequest, leases LeaseChecker) (*pb.TxnResponse, error) {
	if tx == nil {
		return nil, errNilStore
	}
	v := view{tx: tx, base: tx.Rev(), leases: leases}
	return v.topTxn(req)
}

func (v *view) topTxn(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	a := new(txnAlloc)
	if err := v.txn(req, a); err != nil {
		return nil, err
	}
	if v.tx != nil {
		a.hdr.Revision = v.tx.Rev()
	} else {
		a.hdr.Revision = v.base
	}
	return &a.resp, nil
}

func (v *view) txn(req *pb.TxnRequest, a *txnAlloc) error {
	if req == nil {
		return errNilRequest
	}
	a.resp.Header = &a.hdr
	ok := true
	for _, c := range req.Compare {
		held, err := v.compare(c)
		if err != nil {
			return err
		}
		if !held {
			ok = false
			break
		}
	}
	ops := req.Success
	if !ok {
		ops = req.Failure
	}
	a.resp.Succeeded = ok
	if len(ops) == 0 {
		return nil
	}
	var slots []pb.ResponseOp
	if len(ops) == 1 {
		slots, a.resp.Responses = a.op[:], a.ops[:]
	} else {
		slots = make([]pb.ResponseOp, len(ops))
		a.resp.Responses = make([]*pb.ResponseOp, len(ops))
	}
	for i, op := range ops {
		if err := v.op(op, &slots[i]); err != nil {
			return err
		}
		a.resp.Responses[i] = &slots[i]
	}
	return nil
}

// op runs one operation of a Txn branch and stores its response in out.
func (v *view) op(op *pb.RequestOp, out *pb.ResponseOp) error {
	switch r := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		if r.RequestRange == nil {
			return errNilRangeOp
		}
		a := new(rangeOpAlloc)
		if err := v.rangeOp(r.RequestRange, &a.rangeAlloc); err != nil {
			return err
		}
		a.op.ResponseRange = &a.resp
		out.Response = &a.op
	case *pb.RequestOp_RequestPut:
		if r.RequestPut == nil {
			return errNilPutOp
		}
		if v.tx == nil {
			return errWriteInReadOnly
		}
		a := new(putOpAlloc)
		if err := v.put(r.RequestPut, &a.putAlloc); err != nil {
			return err
		}
		a.op.ResponsePut = &a.resp
		out.Response = &a.op
	case *pb.RequestOp_RequestDeleteRange:
		if r.RequestDeleteRange == nil {
			return errNilDeleteOp
		}
		if v.tx == nil {
			return errWriteInReadOnly
		}
		a := new(deleteOpAlloc)
		if err := v.deleteRange(r.RequestDeleteRange, &a.deleteAlloc); err != nil {
			return err
		}
		a.op.ResponseDeleteRange = &a.resp
		out.Response = &a.op
	case *pb.RequestOp_RequestTxn:
		if r.RequestTxn == nil {
			return errNilTxnOp
		}
		a := new(txnOpAlloc)
		if err := v.txn(r.RequestTxn, &a.txnAlloc); err != nil {
			return err
		}
		a.op.ResponseTxn = &a.resp
		out.Response = &a.op
	default:
		return errKeyNotFound
	}
	return nil
}

// rangeOp runs a Range inside a Txn. As in etcd, a revision above the one
// before the txn is a future revision, even once the txn has written.
func (v *view) rangeOp(req *pb.RangeRequest, a *rangeAlloc) error {
	if err := ValidateRange(req); err != nil {
		return err
	}
	if req.Revision > v.base {
		return errFutureRev
	}
	res, err := v.read(req.Key, req.RangeEnd, rangeOptions(req))
	if err != nil {
		return storeError(err)
	}
	rangeResponse(a, req, &res, v.headerRev(&res))
	return nil
}

// compare evaluates one Txn compare against the state before the txn.
func (v *view) compare(c *pb.Compare) (bool, error) {
	if err := validateCompare(c); err != nil {
		return false, err
	}
	res, err := v.read(c.Key, c.RangeEnd, mvcc.RangeOptions{
		Rev:      v.base,
		KeysOnly: c.Target != pb.Compare_VALUE,
	})
	if err != nil {
		return false, storeError(err)
	}
	if len(res.KVs) == 0 {
		if c.Target == pb.Compare_VALUE {
			// A missing key has no value, not an empty one.
			return false, nil
		}
		return compareKV(c, &mvcc.KeyValue{}), nil
	}
	for i := range res.KVs {
		if !compareKV(c, &res.KVs[i]) {
			return false, nil
		}
	}
	return true, nil
}

// compareKV applies a validated compare to one key-value. The operand
// is read with the getter of the target's type, which gives zero when it
// is missing or of another type, as etcd reads it.
func compareKV(c *pb.Compare, kv *mvcc.KeyValue) bool {
	var r int
	switch c.Target {
	case pb.Compare_VALUE:
		r = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_VERSION:
		r = cmpInt(kv.Version, c.GetVersion())
	case pb.Compare_CREATE:
		r = cmpInt(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		r = cmpInt(kv.ModRevision, c.GetModRevision())
	case pb.Compare_LEASE:
		r = cmpInt(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return r == 0
	case pb.Compare_NOT_EQUAL:
		return r != 0
	case pb.Compare_GREATER:
		return r > 0
	case pb.Compare_LESS:
		return r < 0
	}
	return false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package kvapply

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/mvcc"
)

// This file holds a second, deliberately naive implementation of etcd's KV
// semantics (a map per revision) and checks kvapply on the real store
// against it over long random histories.
//
// KVAPPLY_SEED picks the seed (default 1), KVAPPLY_OPS the number of
// operations per run (default 3000).

type modelKV struct {
	value                         []byte
	create, mod, version, leaseID int64
}

type model struct {
	rev       int64
	compacted int64
	hist      []map[string]modelKV // hist[r]: the keys at revision r
}

func newModel() *model {
	return &model{rev: 1, hist: []map[string]modelKV{nil, {}}}
}

func (m *model) cur() map[string]modelKV { return m.hist[m.rev] }

func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	}
	return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
}

// keysIn returns the keys of state in [key, end), ascending.
func keysIn(state map[string]modelKV, key, end []byte) []string {
	var out []string
	for k := range state {
		if inRange([]byte(k), key, end) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (kv modelKV) pb(key string, keysOnly bool) *mvccpb.KeyValue {
	out := &mvccpb.KeyValue{Key: []byte(key), CreateRevision: kv.create, ModRevision: kv.mod, Version: kv.version, Lease: kv.leaseID}
	if !keysOnly {
		out.Value = kv.value
	}
	return out
}

// rangeState answers a Range on one state, etcd's way.
func rangeState(state map[string]modelKV, r *pb.RangeRequest, hdrRev int64) *pb.RangeResponse {
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: hdrRev}}
	keys := keysIn(state, r.Key, r.RangeEnd)
	resp.Count = int64(len(keys))
	if r.CountOnly {
		return resp
	}
	var kvs []*mvccpb.KeyValue
	for _, k := range keys {
		kv := state[k]
		if r.MinModRevision != 0 && kv.mod < r.MinModRevision ||
			r.MaxModRevision != 0 && kv.mod > r.MaxModRevision ||
			r.MinCreateRevision != 0 && kv.create < r.MinCreateRevision ||
			r.MaxCreateRevision != 0 && kv.create > r.MaxCreateRevision {
			continue
		}
		kvs = append(kvs, kv.pb(k, false))
	}
	less := func(a, b *mvccpb.KeyValue) int {
		switch r.SortTarget {
		case pb.RangeRequest_VERSION:
			return int(a.Version - b.Version)
		case pb.RangeRequest_CREATE:
			return int(a.CreateRevision - b.CreateRevision)
		case pb.RangeRequest_MOD:
			return int(a.ModRevision - b.ModRevision)
		case pb.RangeRequest_VALUE:
			return bytes.Compare(a.Value, b.Value)
		}
		return bytes.Compare(a.Key, b.Key)
	}
	// Ties keep key order (synod sorts stably; etcd leaves ties unspecified).
	desc := r.SortOrder == pb.RangeRequest_DESCEND
	sort.SliceStable(kvs, func(i, j int) bool {
		c := less(kvs[i], kvs[j])
		if desc {
			return c > 0
		}
		return c < 0
	})
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for _, kv := range kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = kvs
	return resp
}

// stateAt returns the state at rev (0: current) or etcd's error.
func (m *model) stateAt(rev int64) (map[string]modelKV, error) {
	switch {
	case rev <= 0:
		return m.cur(), nil
	case rev > m.rev:
		return nil, errFutureRev
	case rev < m.compacted:
		return nil, errCompacted
	}
	return m.hist[rev], nil
}

func (m *model) rangeReq(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	state, err := m.stateAt(r.Revision)
	if err != nil {
		return nil, err
	}
	return rangeState(state, r, m.rev), nil
}

// mtxn is one write (or read-only) request being applied to the model.
type mtxn struct {
	m       *model
	base    int64
	work    map[string]modelKV
	changed bool
	write   bool
	leases  func(int64) bool
}

func (m *model) begin(write bool) *mtxn {
	work := make(map[string]modelKV, len(m.cur()))
	for k, v := range m.cur() {
		work[k] = v
	}
	return &mtxn{m: m, base: m.rev, work: work, write: write, leases: func(id int64) bool { return id == 1 }}
}

func (x *mtxn) rev() int64 {
	if x.changed {
		return x.base + 1
	}
	return x.base
}

func (x *mtxn) commit() {
	if x.changed {
		x.m.rev++
		x.m.hist = append(x.m.hist, x.work)
	}
}

func (x *mtxn) put(p *pb.PutRequest) (*pb.PutResponse, error) {
	if p.Lease != 0 && !x.leases(p.Lease) {
		return nil, errLeaseNotFound
	}
	k := string(p.Key)
	prev, ok := x.work[k]
	if !ok && (p.IgnoreValue || p.IgnoreLease) {
		return nil, errKeyNotFound
	}
	next := modelKV{value: p.Value, leaseID: p.Lease, mod: x.base + 1, create: x.base + 1, version: 1}
	if next.value == nil {
		next.value = []byte{}
	}
	if ok {
		next.create, next.version = prev.create, prev.version+1
		if p.IgnoreValue {
			next.value = prev.value
		}
		if p.IgnoreLease {
			next.leaseID = prev.leaseID
		}
	}
	x.work[k] = next
	x.changed = true
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: x.base + 1}}
	if p.PrevKv && ok {
		resp.PrevKv = prev.pb(k, false)
	}
	return resp, nil
}

func (x *mtxn) deleteRange(d *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	resp := &pb.DeleteRangeResponse{}
	for _, k := range keysIn(x.work, d.Key, d.RangeEnd) {
		if d.PrevKv {
			resp.PrevKvs = append(resp.PrevKvs, x.work[k].pb(k, false))
		}
		delete(x.work, k)
		resp.Deleted++
		x.changed = true
	}
	resp.Header = &pb.ResponseHeader{Revision: x.rev()}
	return resp
}

func (x *mtxn) rangeOp(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if r.Revision > x.base {
		return nil, errFutureRev
	}
	if r.Revision > 0 {
		if r.Revision < x.m.compacted {
			return nil, errCompacted
		}
		return rangeState(x.m.hist[r.Revision], r, x.rev()), nil
	}
	return rangeState(x.work, r, x.rev()), nil
}

func modelCompare(state map[string]modelKV, c *pb.Compare) bool {
	keys := keysIn(state, c.Key, c.RangeEnd)
	if len(keys) == 0 {
		if c.Target == pb.Compare_VALUE {
			return false
		}
		return compareOne(c, modelKV{})
	}
	for _, k := range keys {
		if !compareOne(c, state[k]) {
			return false
		}
	}
	return true
}

func compareOne(c *pb.Compare, kv modelKV) bool {
	var r int
	switch c.Target {
	case pb.Compare_VALUE:
		r = bytes.Compare(kv.value, c.GetValue())
	case pb.Compare_VERSION:
		r = cmpInt(kv.version, c.GetVersion())
	case pb.Compare_CREATE:
		r = cmpInt(kv.create, c.GetCreateRevision())
	case pb.Compare_MOD:
		r = cmpInt(kv.mod, c.GetModRevision())
	case pb.Compare_LEASE:
		r = cmpInt(kv.leaseID, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return r == 0
	case pb.Compare_NOT_EQUAL:
		return r != 0
	case pb.Compare_GREATER:
		return r > 0
	}
	return r < 0
}

func (x *mtxn) txn(t *pb.TxnRequest, top bool) (*pb.TxnResponse, error) {
	ok := true
	for _, c := range t.Compare {
		if !modelCompare(x.m.hist[x.base], c) {
			ok = false
			break
		}
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: ok}
	for _, op := range ops {
		var out pb.ResponseOp
		switch r := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := x.rangeOp(r.RequestRange)
			if err != nil {
				return nil, err
			}
			out.Response = &pb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *pb.RequestOp_RequestPut:
			pr, err := x.put(r.RequestPut)
			if err != nil {
				return nil, err
			}
			out.Response = &pb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *pb.RequestOp_RequestDeleteRange:
			out.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: x.deleteRange(r.RequestDeleteRange)}
		case *pb.RequestOp_RequestTxn:
			tr, err := x.txn(r.RequestTxn, false)
			if err != nil {
				return nil, err
			}
			out.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}
		}
		resp.Responses = append(resp.Responses, &out)
	}
	if top {
		resp.Header.Revision = x.rev()
	}
	return resp, nil
}

// modelDuplicate is the obvious (quadratic) statement of ValidateTxn's
// duplicate-key rule: within a branch, writes of two different operations
// (a nested txn's two branches counting as one operation) must not put the
// same key twice or put a key the other deletes.
func modelDuplicate(ops []*pb.RequestOp) bool {
	type write struct {
		key, end []byte
		put      bool
	}
	var collect func(op *pb.RequestOp) []write
	collect = func(op *pb.RequestOp) []write {
		switch r := op.Request.(type) {
		case *pb.RequestOp_RequestPut:
			return []write{{key: r.RequestPut.Key, put: true}}
		case *pb.RequestOp_RequestDeleteRange:
			return []write{{key: r.RequestDeleteRange.Key, end: r.RequestDeleteRange.RangeEnd}}
		case *pb.RequestOp_RequestTxn:
			var all []write
			for _, o := range r.RequestTxn.Success {
				all = append(all, collect(o)...)
			}
			for _, o := range r.RequestTxn.Failure {
				all = append(all, collect(o)...)
			}
			return all
		}
		return nil
	}
	for _, op := range ops {
		if r, ok := op.Request.(*pb.RequestOp_RequestTxn); ok {
			if modelDuplicate(r.RequestTxn.Success) || modelDuplicate(r.RequestTxn.Failure) {
				return true
			}
		}
	}
	for i := range ops {
		for j := range ops {
			if i == j {
				continue
			}
			for _, a := range collect(ops[i]) {
				for _, b := range collect(ops[j]) {
					if !a.put {
						continue
					}
					if b.put && bytes.Equal(a.key, b.key) || !b.put && inRange(a.key, b.key, b.end) {
						return true
					}
				}
			}
		}
	}
	return false
}

// gen makes random requests over a small key space, so that keys collide,
// ranges overlap and compares sometimes hold.
type gen struct {
	rng *rand.Rand
	m   *model
}

var modelKeys = []string{"a", "a\x00", "ab", "abc", "b", "b\xff", "ba", "c", "d", "d\x00\x01", "e", "zz"}

func (g *gen) key() []byte {
	if g.rng.Intn(30) == 0 {
		return []byte{0}
	}
	return []byte(modelKeys[g.rng.Intn(len(modelKeys))])
}

// span returns a key and a range_end of any form.
func (g *gen) span() ([]byte, []byte) {
	key := g.key()
	switch n := g.rng.Intn(10); {
	case n < 4:
		return key, nil
	case n < 5:
		return key, []byte{0}
	case n < 6:
		end := append([]byte(nil), key...)
		end[len(end)-1]++ // prefix end (keys never end in 0xff here but "b\xff")
		if end[len(end)-1] == 0 {
			return key, []byte{0}
		}
		return key, end
	}
	return key, g.key()
}

func (g *gen) value() []byte {
	switch g.rng.Intn(5) {
	case 0:
		return nil
	case 1:
		return []byte{0}
	}
	return []byte(strconv.Itoa(g.rng.Intn(6)))
}

func (g *gen) rev() int64 {
	// Around the live window, including compacted and future revisions.
	lo := g.m.compacted - 2
	return lo + g.rng.Int63n(g.m.rev-lo+3)
}

func (g *gen) maybe(p int) bool { return g.rng.Intn(100) < p }

func (g *gen) rangeReq() *pb.RangeRequest {
	key, end := g.span()
	r := &pb.RangeRequest{Key: key, RangeEnd: end}
	if g.maybe(30) {
		r.Limit = g.rng.Int63n(5) - 1
	}
	if g.maybe(30) {
		r.Revision = g.rev()
	}
	if g.maybe(40) {
		r.SortOrder = pb.RangeRequest_SortOrder(g.rng.Intn(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.rng.Intn(5))
	}
	r.KeysOnly = g.maybe(15)
	r.CountOnly = g.maybe(10)
	for _, f := range []*int64{&r.MinModRevision, &r.MaxModRevision, &r.MinCreateRevision, &r.MaxCreateRevision} {
		if g.maybe(10) {
			*f = g.rng.Int63n(g.m.rev + 2)
		}
	}
	return r
}

func (g *gen) putReq() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.maybe(50)}
	switch n := g.rng.Intn(20); {
	case n < 3:
		p.Lease = 1 // exists
	case n < 4:
		p.Lease = 2 // does not
	}
	if g.maybe(10) {
		p.IgnoreValue, p.Value = true, nil
	}
	if g.maybe(10) {
		p.IgnoreLease, p.Lease = true, 0
	}
	return p
}

func (g *gen) deleteReq() *pb.DeleteRangeRequest {
	key, end := g.span()
	return &pb.DeleteRangeRequest{Key: key, RangeEnd: end, PrevKv: g.maybe(50)}
}

func (g *gen) compare() *pb.Compare {
	c := &pb.Compare{Key: g.key(), Result: pb.Compare_CompareResult(g.rng.Intn(4)), Target: pb.Compare_CompareTarget(g.rng.Intn(5))}
	if g.maybe(20) {
		_, c.RangeEnd = g.span()
	}
	// Half the time compare against the key's real current fields, so
	// that EQUAL holds now and then.
	kv, real := g.m.cur()[string(c.Key)]
	real = real && g.maybe(50)
	pick := func(actual, random int64) int64 {
		if real {
			return actual
		}
		return random
	}
	switch c.Target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: pick(kv.version, g.rng.Int63n(4))}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: pick(kv.create, g.rng.Int63n(g.m.rev+2))}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: pick(kv.mod, g.rng.Int63n(g.m.rev+2))}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: pick(kv.leaseID, g.rng.Int63n(3))}
	case pb.Compare_VALUE:
		v := g.value()
		if real {
			v = kv.value
		}
		c.TargetUnion = &pb.Compare_Value{Value: v}
	}
	return c
}

func (g *gen) ops(depth int, readOnly bool) []*pb.RequestOp {
	ops := make([]*pb.RequestOp, g.rng.Intn(5))
	for i := range ops {
		n := g.rng.Intn(10)
		switch {
		case readOnly && n < 8 || n < 3:
			ops[i] = opRangeReq(g.rangeReq())
		case !readOnly && n < 6:
			ops[i] = opPutReq(g.putReq())
		case !readOnly && n < 8:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteReq()}}
		case depth < 2:
			ops[i] = opTxn(g.txnReq(depth+1, readOnly))
		default:
			ops[i] = opRangeReq(g.rangeReq())
		}
	}
	return ops
}

func (g *gen) txnReq(depth int, readOnly bool) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for i := g.rng.Intn(4); i > 0; i-- {
		t.Compare = append(t.Compare, g.compare())
	}
	t.Success = g.ops(depth, readOnly)
	t.Failure = g.ops(depth, readOnly)
	return t
}

func envInt(name string, def int64) int64 {
	if s := os.Getenv(name); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			return v
		}
	}
	return def
}

// TestModel applies thousands of random Put, DeleteRange, Txn (nested,
// read-only or not), Range and compaction steps to kvapply on a real store
// and to the naive model, and requires identical responses, errors and
// revisions at every step.
func TestModel(t *testing.T) {
	seed := envInt("KVAPPLY_SEED", 1)
	steps := int(envInt("KVAPPLY_OPS", 3000))
	if testing.Short() {
		steps /= 5
	}
	s := openStore(t)
	m := newModel()
	g := &gen{rng: rand.New(rand.NewSource(seed)), m: m}
	leases := LeaseCheckerFunc(func(id int64) bool { return id == 1 })
	fail := func(step int, format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d (KVAPPLY_SEED=%d to replay), step %d: %s", seed, seed, step, fmt.Sprintf(format, args...))
	}
	same := func(step int, what string, req proto.Message, got, want proto.Message, gotErr, wantErr error) {
		t.Helper()
		if gotErr != wantErr {
			fail(step, "%s\n%s\nerror %v, want %v", what, show(req), gotErr, wantErr)
		}
		if wantErr == nil && !proto.Equal(got, want) {
			fail(step, "%s\n%s\ngot\n%s\nwant\n%s", what, show(req), show(got), show(want))
		}
	}
	var stats [6]int
	var txnErrs, txnDups, txnSucceeded, putErrs, rangeErrs int
	for step := 0; step < steps; step++ {
		switch n := g.rng.Intn(100); {
		case n < 25: // Range
			req := g.rangeReq()
			got, err := Range(s, req)
			want, werr := m.rangeReq(req)
			same(step, "range", req, got, want, err, werr)
			if werr != nil {
				rangeErrs++
			}
			stats[0]++
		case n < 45: // Put
			req := g.putReq()
			var got *pb.PutResponse
			rev, _, err := s.Write(uint64(step+1), func(tx *mvcc.WriteTxn) error {
				var err error
				got, err = Put(tx, req, leases)
				return err
			})
			x := m.begin(true)
			want, werr := x.put(req)
			if werr == nil {
				x.commit()
			} else {
				putErrs++
			}
			same(step, "put", req, got, want, err, werr)
			if rev != m.rev {
				fail(step, "store at %d, model at %d", rev, m.rev)
			}
			stats[1]++
		case n < 55: // DeleteRange
			req := g.deleteReq()
			got, err := doDelete(s, req)
			x := m.begin(true)
			want := x.deleteRange(req)
			x.commit()
			same(step, "delete", req, got, want, err, nil)
			stats[2]++
		case n < 97: // Txn
			readOnly := g.maybe(25)
			req := g.txnReq(0, readOnly)
			verr := ValidateTxn(req, Limits{})
			dup := modelDuplicate(req.Success) || modelDuplicate(req.Failure)
			if dup != (verr == errDuplicateKey) || (!dup && verr != nil) {
				fail(step, "txn\n%s\nvalidation %v, model duplicate %v", show(req), verr, dup)
			}
			// Execute even what validation rejects: the executor's
			// semantics are defined for any well-formed txn.
			x := m.begin(!readOnly)
			want, werr := x.txn(req, true)
			var got *pb.TxnResponse
			var err error
			if IsReadOnlyTxn(req) && g.maybe(50) {
				got, err = ReadTxn(s, req)
				stats[4]++
			} else {
				got, err = doTxn(s, req, leases)
			}
			if werr == nil {
				x.commit()
				if want.Succeeded {
					txnSucceeded++
				}
			} else {
				txnErrs++
			}
			if dup {
				txnDups++
			}
			same(step, "txn", req, got, want, err, werr)
			if s.Rev() != m.rev {
				fail(step, "store at %d, model at %d", s.Rev(), m.rev)
			}
			stats[3]++
		default: // Compact
			if m.rev > m.compacted {
				rev := m.compacted + 1 + g.rng.Int63n(m.rev-m.compacted)
				if err := s.Compact(0, rev); err != nil {
					fail(step, "compact %d: %v", rev, err)
				}
				m.compacted = rev
				stats[5]++
			}
		}
		if step%100 == 99 {
			// Every readable revision, in full.
			for rev := max(m.compacted, 1); rev <= m.rev; rev++ {
				req := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
				got, err := Range(s, req)
				want, werr := m.rangeReq(req)
				same(step, "full range", req, got, want, err, werr)
			}
		}
	}
	t.Logf("seed %d: %d ranges (%d errors), %d puts (%d errors), %d deletes, %d txns (%d succeeded, %d errors, %d duplicate keys, %d by ReadTxn), %d compactions; final revision %d",
		seed, stats[0], rangeErrs, stats[1], putErrs, stats[2], stats[3], txnSucceeded, txnErrs, txnDups, stats[4], stats[5], m.rev)
}

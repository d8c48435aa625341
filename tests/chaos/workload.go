package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/synod-db/synod/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Mix weighs the kinds of operation a KV workload issues.
type Mix struct {
	Get, Put, Delete, Range, DeleteAll int
	// CAS is a Txn comparing one key's mod revision with the last one the
	// client saw: then put, else get.
	CAS int
	// Txn is a Txn over two or three keys: comparisons on some, reads of
	// some and writes of others in the chosen branch.
	Txn int
	// LeaseGrant, LeasePut and LeaseRevoke grant one of the run's lease
	// IDs (with a TTL of 1 to 3 seconds), put a key with a lease, and
	// revoke a lease; KeepAlive renews one (not recorded: keep-alives are
	// not linearizable in etcd either). Leases left alone expire.
	LeaseGrant, LeasePut, LeaseRevoke, KeepAlive int
	// Serializable sends plain Gets and Ranges as serializable reads,
	// which may be stale: only the harness's self-test uses it, to show
	// that the checker catches what it should.
	Serializable bool
}

// DefaultMix is the KV workload of the tests.
var DefaultMix = Mix{Get: 20, Put: 22, Delete: 6, Range: 10, DeleteAll: 1, CAS: 20, Txn: 21}

// LeaseMix is DefaultMix with leases.
var LeaseMix = Mix{Get: 20, Put: 18, Delete: 5, Range: 10, DeleteAll: 1, CAS: 18, Txn: 18, LeaseGrant: 3, LeasePut: 5, LeaseRevoke: 1, KeepAlive: 1}

// keyspace is the keys of a run: a prefix of its own and a small table,
// and the run's lease IDs.
type keyspace struct {
	prefix    string
	keys      []string // full keys, in key order
	short     []string // display names
	leaseBase int64    // lease slot s is ID leaseBase+s
	// pad, if not zero, is the size every value is padded to on the wire
	// (Config.ValueBytes); the run sees the values unpadded.
	pad int
}

// wire returns a value as it is written: padded to ks.pad bytes with a
// zero byte and zeros, so that members store and ship large values while
// histories, models and reports hold the short ones (values the
// workload writes never contain a zero byte).
func (ks *keyspace) wire(v string) string {
	if ks.pad <= len(v) {
		return v
	}
	b := make([]byte, ks.pad)
	copy(b, v)
	return string(b)
}

// unwire returns a value as the run knows it: without its padding.
func (ks *keyspace) unwire(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// leaseID is the lease ID of a slot+1.
func (ks *keyspace) leaseID(slot1 int) int64 { return ks.leaseBase + int64(slot1-1) }

// leaseSlot turns a lease ID into slot+1 (0 for no lease, -1 for an ID
// outside the run).
func (ks *keyspace) leaseSlot(id int64) int {
	switch {
	case id == 0:
		return 0
	case id >= ks.leaseBase && id < ks.leaseBase+MaxLeases:
		return int(id-ks.leaseBase) + 1
	}
	return -1
}

func newKeyspace(prefix string, n int) *keyspace {
	ks := &keyspace{prefix: prefix}
	for i := range n {
		ks.short = append(ks.short, fmt.Sprintf("k%d", i))
		ks.keys = append(ks.keys, prefix+ks.short[i])
	}
	return ks
}

// index returns a key's table index, or -1.
func (ks *keyspace) index(key []byte) int {
	s := string(key)
	for i, k := range ks.keys {
		if k == s {
			return i
		}
	}
	return -1
}

func (ks *keyspace) kvs(in []*mvccpb.KeyValue) []KV {
	out := make([]KV, 0, len(in))
	for _, kv := range in {
		out = append(out, KV{Key: ks.index(kv.Key), Value: ks.unwire(kv.Value), Mod: kv.ModRevision, Create: kv.CreateRevision, Version: kv.Version, Lease: ks.leaseSlot(kv.Lease)})
	}
	return out
}

// Endpoints is what workers need of a cluster: the client addresses of
// its current members, and a generation that changes with them.
type Endpoints interface {
	Endpoints() (eps []string, generation uint64)
}

// worker is one client issuing operations one at a time.
type worker struct {
	id      int
	rng     *rand.Rand
	ks      *keyspace
	rec     *Recorder
	mix     Mix
	timeout time.Duration
	pinned  bool // talks to one member only (else to all, balanced)
	cl      Endpoints

	cli     *clientv3.Client
	gen     uint64
	seq     int
	lastMod [MaxKeys]int64
	lastVal [MaxKeys]string

	ops, unknown, failedReads *atomic.Int64
}

// run issues operations until ctx ends or the budget is spent.
func (w *worker) run(ctx context.Context, budget *atomic.Int64) {
	defer func() {
		if w.cli != nil {
			w.cli.Close()
		}
	}()
	for ctx.Err() == nil && budget.Add(-1) >= 0 {
		if err := w.refresh(); err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if w.mix.KeepAlive > 0 && w.rng.IntN(100) < w.mix.KeepAlive {
			kctx, cancel := context.WithTimeout(ctx, w.timeout)
			w.cli.KeepAliveOnce(kctx, clientv3.LeaseID(w.ks.leaseID(1+w.rng.IntN(MaxLeases)))) //nolint:errcheck // best effort, not recorded
			cancel()
		}
		w.one(ctx)
	}
}

// refresh (re)creates the client when the cluster's endpoints changed.
func (w *worker) refresh() error {
	eps, gen := w.cl.Endpoints()
	if w.cli != nil && gen == w.gen {
		return nil
	}
	if len(eps) == 0 {
		return fmt.Errorf("no endpoints")
	}
	if w.pinned {
		eps = eps[w.id%len(eps) : w.id%len(eps)+1]
	}
	cli, err := framework.ClientFor(eps)
	if err != nil {
		return err
	}
	if w.cli != nil {
		w.cli.Close()
	}
	w.cli, w.gen = cli, gen
	return nil
}

func (w *worker) value() string {
	w.seq++
	return fmt.Sprintf("c%d.%d", w.id, w.seq)
}

func (w *worker) key() int { return w.rng.IntN(len(w.ks.keys)) }

// next draws a request from the mix.
func (w *worker) next() Request {
	m := w.mix
	total := m.Get + m.Put + m.Delete + m.Range + m.DeleteAll + m.CAS + m.Txn + m.LeaseGrant + m.LeasePut + m.LeaseRevoke
	x := w.rng.IntN(total)
	pick := func(weight int) bool {
		if x < weight {
			return true
		}
		x -= weight
		return false
	}
	switch {
	case pick(m.Get):
		return Request{Then: []Op{{Kind: OpGet, Key: w.key()}}}
	case pick(m.Put):
		return Request{Then: []Op{{Kind: OpPut, Key: w.key(), Value: w.value()}}}
	case pick(m.Delete):
		return Request{Then: []Op{{Kind: OpDelete, Key: w.key()}}}
	case pick(m.Range):
		return Request{Then: []Op{{Kind: OpRange}}}
	case pick(m.DeleteAll):
		return Request{Then: []Op{{Kind: OpDeleteRange}}}
	case pick(m.LeaseGrant):
		return Request{Then: []Op{{Kind: OpLeaseGrant, Lease: 1 + w.rng.IntN(MaxLeases), TTL: 1 + w.rng.Int64N(3)}}}
	case pick(m.LeasePut):
		return Request{Then: []Op{{Kind: OpPut, Key: w.key(), Value: w.value(), Lease: 1 + w.rng.IntN(MaxLeases)}}}
	case pick(m.LeaseRevoke):
		return Request{Then: []Op{{Kind: OpLeaseRevoke, Lease: 1 + w.rng.IntN(MaxLeases)}}}
	case pick(m.CAS):
		k := w.key()
		return Request{Txn: true,
			Cmps: []Cmp{{Key: k, Target: CmpMod, Result: CmpEqual, Num: w.lastMod[k]}},
			Then: []Op{{Kind: OpPut, Key: k, Value: w.value()}},
			Else: []Op{{Kind: OpGet, Key: k}}}
	default:
		return w.txn()
	}
}

// txn draws a multi-key transaction: comparisons on one or two keys,
// then reads of some keys followed by writes of others (never the same
// key twice among the writes, which etcd refuses).
func (w *worker) txn() Request {
	n := len(w.ks.keys)
	perm := w.rng.Perm(n)
	k := min(n, 2+w.rng.IntN(2))
	keys := perm[:k]
	var req Request
	req.Txn = true
	for i := range 1 + w.rng.IntN(2) {
		key := keys[i%len(keys)]
		c := Cmp{Key: key}
		switch w.rng.IntN(5) {
		case 0:
			c.Target, c.Result, c.Num = CmpMod, CmpEqual, w.lastMod[key]
		case 1:
			c.Target, c.Result, c.Num = CmpMod, CmpLess, w.lastMod[key]+1+int64(w.rng.IntN(3))
		case 2:
			c.Target, c.Result, c.Num = CmpVersion, CmpGreater, 0
		case 3:
			c.Target, c.Result, c.Value = CmpValue, CmpEqual, w.lastVal[key]
		default:
			c.Target, c.Result, c.Num = CmpCreate, CmpNotEqual, 0
		}
		req.Cmps = append(req.Cmps, c)
	}
	split := 1 + w.rng.IntN(len(keys)-1)
	for _, key := range keys[:split] {
		req.Then = append(req.Then, Op{Kind: OpGet, Key: key})
	}
	for _, key := range keys[split:] {
		if w.rng.IntN(4) == 0 {
			req.Then = append(req.Then, Op{Kind: OpDelete, Key: key})
		} else {
			req.Then = append(req.Then, Op{Kind: OpPut, Key: key, Value: w.value()})
		}
	}
	switch w.rng.IntN(3) {
	case 0:
		req.Else = []Op{{Kind: OpRange}}
	case 1:
		for _, key := range keys {
			req.Else = append(req.Else, Op{Kind: OpGet, Key: key})
		}
	default:
		// Write in the else branch too, so that either outcome writes.
		req.Else = []Op{{Kind: OpPut, Key: keys[0], Value: w.value()}}
	}
	return req
}

// one runs one operation and records it.
func (w *worker) one(ctx context.Context) {
	req := w.next()
	octx, cancel := context.WithTimeout(ctx, w.timeout)
	call := w.rec.Now()
	resp, member, err := execute(octx, w.cli, w.ks, &req, w.mix.Serializable)
	ret := w.rec.Now()
	cancel()
	w.ops.Add(1)
	if e := definite(err); e != "" && definiteFor(&req, e) {
		w.rec.Add(Record{Client: w.id, Req: req, Resp: Response{Err: e}, Call: call, Return: ret, Member: member})
		return
	}
	if err != nil {
		if !req.Writes() {
			w.failedReads.Add(1)
			return // a failed read has no effect: leave it out
		}
		w.unknown.Add(1)
		w.rec.Add(Record{Client: w.id, Req: req, Resp: Response{Unknown: true}, Call: call, Return: ret, Err: shortErr(err)})
		return
	}
	w.rec.Add(Record{Client: w.id, Req: req, Resp: resp, Call: call, Return: ret, Member: member})
	w.learn(&req, &resp)
}

// learn remembers the revisions and values the client saw, so that its
// comparisons succeed often enough to matter.
func (w *worker) learn(req *Request, resp *Response) {
	ops := req.Then
	if !resp.Succeeded {
		ops = req.Else
	}
	for i, op := range ops {
		if i >= len(resp.Results) {
			return // a malformed answer; the checker reports it
		}
		switch op.Kind {
		case OpGet, OpRange:
			if op.Kind == OpGet && len(resp.Results[i].KVs) == 0 {
				w.lastMod[op.Key], w.lastVal[op.Key] = 0, ""
			}
			for _, kv := range resp.Results[i].KVs {
				if kv.Key >= 0 && kv.Key < MaxKeys {
					w.lastMod[kv.Key], w.lastVal[kv.Key] = kv.Mod, kv.Value
				}
			}
		case OpPut:
			if resp.Err == "" {
				w.lastMod[op.Key], w.lastVal[op.Key] = resp.Rev, op.Value
			}
		case OpDelete:
			w.lastMod[op.Key], w.lastVal[op.Key] = 0, ""
		}
	}
}

// execute sends a request through the etcd client and converts the
// answer. member is the answering member's ID in hex.
func execute(ctx context.Context, cli *clientv3.Client, ks *keyspace, req *Request, serializable bool) (Response, string, error) {
	if !req.Txn {
		op := req.Then[0]
		var (
			h   *pb.ResponseHeader
			res Result
		)
		switch op.Kind {
		case OpGet, OpRange:
			var r *clientv3.GetResponse
			var err error
			var opts []clientv3.OpOption
			if serializable {
				opts = append(opts, clientv3.WithSerializable())
			}
			if op.Kind == OpGet {
				r, err = cli.Get(ctx, ks.keys[op.Key], opts...)
			} else {
				r, err = cli.Get(ctx, ks.prefix, append(opts, clientv3.WithPrefix())...)
			}
			if err != nil {
				return Response{}, "", err
			}
			h, res.KVs = r.Header, ks.kvs(r.Kvs)
		case OpPut:
			var opts []clientv3.OpOption
			if op.Lease > 0 {
				opts = append(opts, clientv3.WithLease(clientv3.LeaseID(ks.leaseID(op.Lease))))
			}
			r, err := cli.Put(ctx, ks.keys[op.Key], ks.wire(op.Value), opts...)
			if err != nil {
				return Response{}, "", err
			}
			h = r.Header
		case OpLeaseGrant:
			// The raw gRPC client: clientv3's Lease retries grants and
			// revokes, which would turn a retried success into an error.
			r, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: ks.leaseID(op.Lease), TTL: op.TTL})
			if err != nil {
				return Response{}, "", err
			}
			h = r.Header
		case OpLeaseRevoke:
			r, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: ks.leaseID(op.Lease)})
			if err != nil {
				return Response{}, "", err
			}
			h = r.Header
		case OpDelete, OpDeleteRange:
			var r *clientv3.DeleteResponse
			var err error
			if op.Kind == OpDelete {
				r, err = cli.Delete(ctx, ks.keys[op.Key])
			} else {
				r, err = cli.Delete(ctx, ks.prefix, clientv3.WithPrefix())
			}
			if err != nil {
				return Response{}, "", err
			}
			h, res.Deleted = r.Header, r.Deleted
		}
		return Response{Succeeded: true, Rev: h.Revision, Results: []Result{res}}, fmt.Sprintf("%x", h.MemberId), nil
	}
	var cmps []clientv3.Cmp
	for _, c := range req.Cmps {
		key := ks.keys[c.Key]
		rel := [...]string{"=", "!=", "<", ">"}[c.Result]
		switch c.Target {
		case CmpMod:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), rel, c.Num))
		case CmpCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), rel, c.Num))
		case CmpVersion:
			cmps = append(cmps, clientv3.Compare(clientv3.Version(key), rel, c.Num))
		case CmpValue:
			cmps = append(cmps, clientv3.Compare(clientv3.Value(key), rel, ks.wire(c.Value)))
		}
	}
	r, err := cli.Txn(ctx).If(cmps...).Then(clientOps(ks, req.Then)...).Else(clientOps(ks, req.Else)...).Commit()
	if err != nil {
		return Response{}, "", err
	}
	resp := Response{Succeeded: r.Succeeded, Rev: r.Header.Revision}
	for _, ro := range r.Responses {
		var res Result
		switch x := ro.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			res.KVs = ks.kvs(x.ResponseRange.Kvs)
		case *pb.ResponseOp_ResponseDeleteRange:
			res.Deleted = x.ResponseDeleteRange.Deleted
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, fmt.Sprintf("%x", r.Header.MemberId), nil
}

func clientOps(ks *keyspace, ops []Op) []clientv3.Op {
	var out []clientv3.Op
	for _, op := range ops {
		switch op.Kind {
		case OpGet:
			out = append(out, clientv3.OpGet(ks.keys[op.Key]))
		case OpRange:
			out = append(out, clientv3.OpGet(ks.prefix, clientv3.WithPrefix()))
		case OpPut:
			out = append(out, clientv3.OpPut(ks.keys[op.Key], ks.wire(op.Value)))
		case OpDelete:
			out = append(out, clientv3.OpDelete(ks.keys[op.Key]))
		case OpDeleteRange:
			out = append(out, clientv3.OpDelete(ks.prefix, clientv3.WithPrefix()))
		}
	}
	return out
}

// definite returns the model's name for an error that tells the request
// had no effect, or "".
func definite(err error) string {
	if err == nil {
		return ""
	}
	switch rpctypes.ErrorDesc(err) {
	case rpctypes.ErrorDesc(rpctypes.ErrGRPCLeaseNotFound):
		return ErrLeaseNotFound
	case rpctypes.ErrorDesc(rpctypes.ErrGRPCLeaseExist):
		return ErrLeaseExists
	}
	return ""
}

// definiteFor reports whether the error e is one the request can answer:
// a lease error only comes from the lease operation or put that names it.
func definiteFor(req *Request, e string) bool {
	if req.Txn || len(req.Then) != 1 {
		return false
	}
	switch op := req.Then[0]; {
	case e == ErrLeaseNotFound:
		return op.Kind == OpLeaseRevoke || (op.Kind == OpPut && op.Lease > 0)
	case e == ErrLeaseExists:
		return op.Kind == OpLeaseGrant
	}
	return false
}

// shortErr shortens an error for the visualization.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	return s
}

package chaos

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Record is one client operation as the harness saw it.
type Record struct {
	Client int
	Req    Request
	Resp   Response
	// Call and Return are nanoseconds since the run started, read from the
	// monotonic clock just before the request and just after its answer.
	Call, Return int64
	// Member is the name of the member that answered (empty if none did).
	Member string
	// Err is the error of an operation of unknown outcome.
	Err string
}

// Recorder collects the operations of a run from many goroutines.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	recs  []Record
}

// NewRecorder starts a history now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the time since the recorder started, in nanoseconds.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Add appends a finished operation.
func (r *Recorder) Add(rec Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

// Records returns a copy of the history so far.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// Event is one change of the key space as a watch reports it: the
// revision's writes, in order.
type Event struct {
	Rev    int64
	Key    int // index in the key table; -1 outside it
	Delete bool
	Value  string
	Create int64
	Ver    int64
}

// Prepared is a history ready for porcupine.
type Prepared struct {
	Ops     []porcupine.Operation
	Claimed map[int64]bool
	// Dropped counts the operations of unknown outcome left out because
	// they cannot have written (see Prepare); Pinned those placed at the
	// revision they wrote at; Open those left to porcupine to place.
	Dropped, Pinned, Open int
	// Gaps counts the revisions of the run no known write explains;
	// GapRevs lists the first of them.
	Gaps    int
	GapRevs []int64
}

// Prepare turns a run's records into porcupine operations. Reads that
// failed were never recorded. Writes of unknown outcome are the hard part
// of checking: each might have happened at any time after its call, and
// porcupine would try them everywhere. Prepare narrows them using only
// facts that make the history stricter, never looser, so a violation is
// never hidden (if the narrowed history is linearizable, so is the
// original: an operation left out can always be placed after everything
// else, where its effect is never observed):
//
//   - every value a client writes is unique, so a value seen by a read,
//     or at a revision of the key space's history (log, from a watch),
//     pins the unknown write that wrote it to that revision, and it must
//     have happened before the earliest read that saw it returned;
//   - revisions are dense (every write that changes the key space takes
//     exactly the next one) and a known write tells its revision, so the
//     revisions between rev0 and final that no known or pinned write
//     explains are the only places an unknown write can have taken
//     effect; when there are none, the remaining unknown operations had
//     no effect up to the final read and are left out;
//   - with the log, an unexplained revision holds deletes only, and only
//     the unknown operations whose deletes match it may have made it:
//     a single candidate is pinned there, several may each have made it
//     (Response.Maybe), and an operation that matches none is left out.
func Prepare(recs []Record, rev0, final int64, log []Event) Prepared {
	type seen struct {
		rev int64
		ret int64
	}
	observed := map[string]seen{}
	note := func(kvs []KV, ret int64) {
		for _, kv := range kvs {
			if s, ok := observed[kv.Value]; !ok || ret < s.ret {
				observed[kv.Value] = seen{rev: kv.Mod, ret: ret}
			}
		}
	}
	var end int64
	for i := range recs {
		end = max(end, recs[i].Call, recs[i].Return)
	}
	recs = append(recs, expiries(recs, end)...)
	for i := range recs {
		r := &recs[i]
		if !r.Resp.Unknown {
			for _, res := range r.Resp.Results {
				note(res.KVs, r.Return)
			}
		}
	}
	byRev := map[int64][]Event{}
	for _, e := range log {
		if e.Rev > rev0 && e.Rev <= final {
			byRev[e.Rev] = append(byRev[e.Rev], e)
			if !e.Delete {
				if _, ok := observed[e.Value]; !ok {
					observed[e.Value] = seen{rev: e.Rev, ret: math.MaxInt64}
				}
			}
		}
	}

	p := Prepared{Claimed: map[int64]bool{}}
	for i := range recs {
		r := &recs[i]
		if r.Resp.Unknown || !r.Req.Writes() || r.Resp.Rev <= rev0 || r.Resp.Err != "" {
			continue
		}
		// A revoke's revision is its own only if it deleted keys, which
		// its answer does not tell: it is not claimed.
		if wroteAt(&r.Req, &r.Resp) {
			p.Claimed[r.Resp.Rev] = true
		}
	}
	// Pin unknown writes by the values they wrote.
	pinned := make([]bool, len(recs))
	for i := range recs {
		r := &recs[i]
		if !r.Resp.Unknown || !r.Req.Writes() {
			continue
		}
		for bi, ops := range [][]Op{r.Req.Then, r.Req.Else} {
			for _, op := range ops {
				if op.Kind != OpPut {
					continue
				}
				s, ok := observed[op.Value]
				if !ok {
					continue
				}
				pinned[i] = true
				// It took effect before the first read that saw it
				// returned; seen only in the log, some time before the
				// end. Its own error time bounds nothing: a request
				// that failed may still be applied later.
				r.Return = end + 1
				if s.ret != math.MaxInt64 {
					r.Return = max(r.Call, s.ret)
				}
				if !r.Req.Txn && len(r.Req.Cmps) == 0 {
					r.Resp = Response{Rev: s.rev, Succeeded: true, Results: make([]Result, 1)}
				} else {
					r.Resp = Response{Unknown: true, Rev: s.rev, Succeeded: bi == 0}
				}
				p.Claimed[s.rev] = true
				break
			}
			if pinned[i] {
				break
			}
		}
	}
	// With the log, a revision left unexplained is a delete (a put's
	// value would have pinned its writer): the unknown operations that
	// could have made it are its only candidates; a single one is pinned.
	maybe := map[int][]int64{}
	if log != nil {
		for rev := rev0 + 1; rev <= final; rev++ {
			if p.Claimed[rev] || len(byRev[rev]) == 0 {
				continue
			}
			var cands []int
			revoked := false // a known revoke may have made it
			for i := range recs {
				r := &recs[i]
				if !pinned[i] && r.Resp.Unknown && couldDelete(&r.Req, byRev[rev]) {
					cands = append(cands, i)
				}
				if !r.Resp.Unknown && r.Resp.Err == "" && r.Resp.Rev == rev && r.Req.Leases() {
					revoked = true
				}
			}
			if len(cands) == 1 && !revoked {
				pinned[cands[0]] = true
				recs[cands[0]].Resp = Response{Unknown: true, Rev: rev}
				recs[cands[0]].Return = end + 1
				p.Claimed[rev] = true
				continue
			}
			for _, c := range cands {
				maybe[c] = append(maybe[c], rev)
			}
		}
	}
	for rev := rev0 + 1; rev <= final; rev++ {
		if !p.Claimed[rev] {
			p.Gaps++
			if len(p.GapRevs) < 10 {
				p.GapRevs = append(p.GapRevs, rev)
			}
		}
	}
	for i := range recs {
		r := &recs[i]
		op := porcupine.Operation{ClientId: r.Client, Input: r.Req, Call: r.Call, Output: r.Resp, Return: r.Return, Metadata: r.Member}
		if r.Resp.Unknown {
			noWrite := p.Gaps == 0 || (log != nil && len(maybe[i]) == 0)
			switch {
			case pinned[i]:
				p.Pinned++
			case r.Req.Leases():
				// A lease may change without a revision: keep it.
				p.Open++
				r.Resp.Maybe, r.Resp.NoWrite = maybe[i], noWrite
				op.Output = r.Resp
				if r.Req.Then[0].Kind != OpLeaseExpire {
					op.Return = end + 1
				}
			case !r.Req.Writes() || noWrite:
				// It cannot have changed anything up to the final
				// revision: as good as placed after everything.
				p.Dropped++
				continue
			default:
				p.Open++
				r.Resp.Maybe = maybe[i]
				op.Output = r.Resp
				op.Return = end + 1
			}
			op.Metadata = fmt.Sprintf("%s unknown: %s", r.Member, r.Err)
		}
		if op.Return < op.Call {
			op.Return = end + 1
		}
		p.Ops = append(p.Ops, op)
	}
	sort.SliceStable(p.Ops, func(i, j int) bool { return p.Ops[i].Call < p.Ops[j].Call })
	return p
}

// expiries returns one synthetic expiry of unknown outcome per grant
// that may have succeeded: the lessor may revoke a lease at any time once
// its TTL passed since the grant was called (never earlier: a lease lives
// at least its TTL), or never. A later grant of the same lease, called
// after this one returned and known to have succeeded, found it gone: the
// expiry, if it happened, happened before that grant returned.
func expiries(recs []Record, end int64) []Record {
	var out []Record
	for _, r := range recs {
		if len(r.Req.Then) != 1 || r.Req.Then[0].Kind != OpLeaseGrant || (!r.Resp.Unknown && r.Resp.Err != "") {
			continue
		}
		g := r.Req.Then[0]
		ret := end + 1
		if !r.Resp.Unknown {
			for _, o := range recs {
				if len(o.Req.Then) == 1 && o.Req.Then[0].Kind == OpLeaseGrant && o.Req.Then[0].Lease == g.Lease &&
					!o.Resp.Unknown && o.Resp.Err == "" && o.Call > r.Return && o.Return < ret {
					ret = o.Return
				}
			}
		}
		call := r.Call + int64(g.TTL)*int64(time.Second)
		if call > ret {
			continue // cannot have expired before its lease was granted again
		}
		out = append(out, Record{Client: LessorClient, Req: Request{Then: []Op{{Kind: OpLeaseExpire, Lease: g.Lease}}},
			Resp: Response{Unknown: true}, Call: call, Return: ret, Member: "lessor", Err: "expiry"})
	}
	return out
}

// LessorClient is the client ID of the synthetic lease expiries in a
// history.
const LessorClient = 99

// wroteAt reports whether a known response shows that the request wrote
// a new revision (its chosen branch has a put, or a delete that deleted
// something; a revoke is not known to).
func wroteAt(req *Request, resp *Response) bool {
	if resp.Err != "" {
		return false
	}
	ops := req.Then
	if !resp.Succeeded {
		ops = req.Else
	}
	for i, op := range ops {
		switch op.Kind {
		case OpPut:
			return true
		case OpDelete, OpDeleteRange:
			if i < len(resp.Results) && resp.Results[i].Deleted > 0 {
				return true
			}
		}
	}
	return false
}

// couldDelete reports whether a branch of req consists of deletes that
// could have produced exactly the events of one revision.
func couldDelete(req *Request, evs []Event) bool {
	for _, e := range evs {
		if !e.Delete {
			return false
		}
	}
	for _, ops := range [][]Op{req.Then, req.Else} {
		for _, op := range ops {
			if op.Kind == OpLeaseRevoke || op.Kind == OpLeaseExpire {
				return true // deletes whatever keys the lease has
			}
		}
		if writes(ops) && !hasPut(ops) && deletesCover(ops, evs) {
			return true
		}
	}
	return false
}

func hasPut(ops []Op) bool {
	for _, op := range ops {
		if op.Kind == OpPut {
			return true
		}
	}
	return false
}

func deletesCover(ops []Op, evs []Event) bool {
	for _, e := range evs {
		ok := false
		for _, op := range ops {
			if op.Kind == OpDeleteRange || (op.Kind == OpDelete && op.Key == e.Key) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

package chaos

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// MaxKeys is the most keys one run may use. The model's state is a fixed
// array of this size, so that states compare with == and copy cheaply;
// porcupine's search stays fast when the key space is small.
const MaxKeys = 8

// OpKind is the kind of one operation inside a request.
type OpKind uint8

// The operations of the model. Every request is a transaction of these;
// a plain Put, Get or Delete call is a transaction with no comparisons
// and one operation.
const (
	// OpGet reads one key.
	OpGet OpKind = iota
	// OpPut writes one key.
	OpPut
	// OpDelete deletes one key.
	OpDelete
	// OpRange reads every key of the run (a range over its prefix).
	OpRange
	// OpDeleteRange deletes every key of the run (a delete over its prefix).
	OpDeleteRange
	// OpLeaseGrant grants the lease Op.Lease (fails if it exists).
	OpLeaseGrant
	// OpLeaseRevoke revokes the lease Op.Lease, deleting its keys in one
	// revision (fails if it does not exist).
	OpLeaseRevoke
	// OpLeaseExpire is the lessor revoking the lease Op.Lease when its
	// time is up: the harness adds one, of unknown outcome, for every
	// grant, as it may happen at any time after the grant (or never).
	OpLeaseExpire
)

// MaxLeases is the number of lease slots of the model. A lease slot is
// a lease ID of the run; Op.Lease and KV.Lease hold slot+1 (0: no lease).
const MaxLeases = 3

// Definite errors an operation may answer with; it then had no effect.
const (
	ErrLeaseNotFound = "lease not found"
	ErrLeaseExists   = "lease already exists"
)

// Op is one operation of a request. Key indexes the run's key table;
// Lease is a lease slot+1 (a put with a lease, or a lease operation).
type Op struct {
	Kind  OpKind
	Key   int
	Value string
	Lease int
	TTL   int64 // OpLeaseGrant, in seconds (not part of the model)
}

// CmpTarget is what a comparison looks at.
type CmpTarget uint8

// Comparison targets, as etcd's Compare.
const (
	CmpMod CmpTarget = iota
	CmpCreate
	CmpVersion
	CmpValue
)

// CmpResult is the relation a comparison asks for.
type CmpResult uint8

// Comparison relations, as etcd's Compare.
const (
	CmpEqual CmpResult = iota
	CmpNotEqual
	CmpLess
	CmpGreater
)

// Cmp is one comparison of a transaction.
type Cmp struct {
	Key    int
	Target CmpTarget
	Result CmpResult
	// Num is compared with the mod revision, create revision or version;
	// Value with the value.
	Num   int64
	Value string
}

// Request is the input of one recorded operation.
type Request struct {
	// Txn tells whether the client sent a Txn (otherwise Then holds the
	// single Put, Get, Delete or Range it called).
	Txn        bool
	Cmps       []Cmp
	Then, Else []Op
}

// writes reports whether ops contain a write (of keys or leases).
func writes(ops []Op) bool {
	for _, op := range ops {
		if op.Kind != OpGet && op.Kind != OpRange {
			return true
		}
	}
	return false
}

// Writes reports whether either branch of the request writes.
func (r *Request) Writes() bool { return writes(r.Then) || writes(r.Else) }

// Leases reports whether the request grants, revokes or expires a lease:
// it may change the state without taking a revision.
func (r *Request) Leases() bool {
	for _, ops := range [][]Op{r.Then, r.Else} {
		for _, op := range ops {
			if op.Kind >= OpLeaseGrant {
				return true
			}
		}
	}
	return false
}

// KV is a key as a response shows it. Key indexes the key table; -1 is a
// key outside the table (which the model never accepts).
type KV struct {
	Key                  int
	Value                string
	Mod, Create, Version int64
	Lease                int // slot+1; 0 none; -1 a lease outside the run
}

// Result is the response to one operation of a request.
type Result struct {
	KVs     []KV  // OpGet, OpRange
	Deleted int64 // OpDelete, OpDeleteRange
}

// Response is the output of one recorded operation.
type Response struct {
	// Unknown marks an operation whose outcome the client does not know
	// (it failed or timed out): it may or may not have taken effect, and
	// nothing of its output is checked.
	Unknown bool
	// Rev, when Unknown and nonzero, is the revision the operation is
	// known to have written at (learned from the key space's history).
	Rev int64
	// Maybe, when Unknown, lists the revisions at which the operation
	// may have written; if empty, any revision no known write holds.
	Maybe []int64
	// NoWrite, when Unknown, says the operation cannot have written a
	// revision up to the final one (it may still have changed a lease).
	NoWrite bool
	// Err is a definite error: the operation had no effect.
	Err       string
	Succeeded bool
	Results   []Result
}

// keyState is one key in the model.
type keyState struct {
	Value                string
	Mod, Create, Version int64 // Version 0: the key does not exist
	Lease                int   // slot+1
}

// State is the model's state: etcd's key space restricted to the run's
// keys, with the store's revision.
type State struct {
	Rev    int64
	Keys   [MaxKeys]keyState
	Leases [MaxLeases]bool
}

var hashSeed = maphash.MakeSeed()

// Model returns the porcupine model of etcd's KV semantics for a run on
// the keys names (at most MaxKeys), starting from store revision rev0
// with none of them present and ending at revision final.
//
// Operations of unknown outcome are where the search can explode, so the
// model only lets one take effect where it can matter: as a write at a
// revision that no known write holds (claimed; each revision has exactly
// one writer), or at the pinned revision Response.Rev, or once the state
// reached final. This loses nothing: an unknown operation that changes
// nothing where it is placed can as well be placed after everything,
// where whatever it does is never observed.
func Model(names []string, rev0, final int64, claimed map[int64]bool) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return State{Rev: rev0} },
		Step: func(st, in, out any) (bool, any) {
			s := st.(State)
			req := in.(Request)
			resp := out.(Response)
			return step(s, &req, &resp, final, claimed)
		},
		Hash: func(st any) uint64 { return maphash.Comparable(hashSeed, st.(State)) },
		DescribeOperation: func(in, out any) string {
			req := in.(Request)
			resp := out.(Response)
			return describe(names, &req, &resp)
		},
		DescribeState: func(st any) string {
			s := st.(State)
			var b strings.Builder
			fmt.Fprintf(&b, "rev %d", s.Rev)
			for i, k := range s.Keys {
				if k.Version > 0 {
					fmt.Fprintf(&b, ", %s=%q (mod %d, create %d, ver %d", name(names, i), k.Value, k.Mod, k.Create, k.Version)
					if k.Lease > 0 {
						fmt.Fprintf(&b, ", lease L%d", k.Lease)
					}
					b.WriteString(")")
				}
			}
			for i, l := range s.Leases {
				if l {
					fmt.Fprintf(&b, ", lease L%d", i+1)
				}
			}
			return b.String()
		},
	}
}

// step applies req to s and checks resp against the result. It never
// modifies s in place (State is a value).
func step(s State, req *Request, resp *Response, final int64, claimed map[int64]bool) (bool, State) {
	ok := true
	for _, c := range req.Cmps {
		if !compare(&s, c) {
			ok = false
			break
		}
	}
	ops := req.Then
	if !ok {
		ops = req.Else
	}
	if !resp.Unknown && resp.Err == "" && (resp.Succeeded != ok || len(resp.Results) != len(ops)) {
		return false, s
	}
	next := s
	rev := s.Rev + 1
	wrote := false
	fail := ""
	for i, op := range ops {
		var res *Result
		if !resp.Unknown && resp.Err == "" {
			res = &resp.Results[i]
		}
		switch op.Kind {
		case OpGet:
			if res != nil && !matchKVs(res.KVs, &next, op.Key, op.Key+1) {
				return false, s
			}
		case OpRange:
			if res != nil && !matchKVs(res.KVs, &next, 0, MaxKeys) {
				return false, s
			}
		case OpPut:
			if op.Lease > 0 && !next.Leases[op.Lease-1] {
				fail = ErrLeaseNotFound
				break
			}
			k := &next.Keys[op.Key]
			if k.Version == 0 {
				k.Create = rev
			}
			k.Version++
			k.Mod = rev
			k.Value = op.Value
			k.Lease = op.Lease
			wrote = true
		case OpDelete, OpDeleteRange:
			lo, hi := op.Key, op.Key+1
			if op.Kind == OpDeleteRange {
				lo, hi = 0, MaxKeys
			}
			var n int64
			for j := lo; j < hi; j++ {
				if next.Keys[j].Version > 0 {
					next.Keys[j] = keyState{}
					n++
				}
			}
			if n > 0 {
				wrote = true
			}
			if res != nil && res.Deleted != n {
				return false, s
			}
		case OpLeaseGrant:
			if next.Leases[op.Lease-1] {
				fail = ErrLeaseExists
				break
			}
			next.Leases[op.Lease-1] = true
		case OpLeaseRevoke, OpLeaseExpire:
			if !next.Leases[op.Lease-1] {
				fail = ErrLeaseNotFound
				break
			}
			next.Leases[op.Lease-1] = false
			for j := range next.Keys {
				if next.Keys[j].Version > 0 && next.Keys[j].Lease == op.Lease {
					next.Keys[j] = keyState{}
					wrote = true
				}
			}
		}
		if fail != "" {
			break
		}
	}
	if fail != "" {
		// The request failed as a whole and changed nothing.
		next, wrote = s, false
	}
	if wrote {
		next.Rev = rev
	}
	if resp.Unknown {
		// An operation of unknown outcome may take effect at any point,
		// but a write needs a revision no known write holds; when the
		// history tells at which revision it wrote, only that one. One
		// that changes nothing is placed after everything instead.
		switch {
		case resp.Rev != 0:
			return wrote && rev == resp.Rev, next
		case s.Rev >= final:
			return true, next
		case wrote && resp.NoWrite:
			return false, s
		case wrote && len(resp.Maybe) > 0:
			return slices.Contains(resp.Maybe, rev), next
		case wrote:
			return !claimed[rev], next
		case next != s:
			return true, next // a lease changed, no revision taken
		case len(ops) == 1 && ops[0].Kind == OpLeaseExpire:
			return true, s // an expiry that did not happen
		default:
			return false, s
		}
	}
	if resp.Err != fail {
		return false, s
	}
	return fail != "" || resp.Rev == next.Rev, next
}

// compare evaluates one comparison as etcd does: a missing key has zero
// revisions and version, and a value comparison on it is always false.
func compare(s *State, c Cmp) bool {
	k := s.Keys[c.Key]
	var d int
	switch c.Target {
	case CmpValue:
		if k.Version == 0 {
			return false
		}
		d = strings.Compare(k.Value, c.Value)
	default:
		var n int64
		switch c.Target {
		case CmpMod:
			n = k.Mod
		case CmpCreate:
			n = k.Create
		case CmpVersion:
			n = k.Version
		}
		switch {
		case n < c.Num:
			d = -1
		case n > c.Num:
			d = 1
		}
	}
	switch c.Result {
	case CmpEqual:
		return d == 0
	case CmpNotEqual:
		return d != 0
	case CmpLess:
		return d < 0
	default:
		return d > 0
	}
}

// matchKVs reports whether kvs are exactly the existing keys of s in
// [lo, hi), in key order.
func matchKVs(kvs []KV, s *State, lo, hi int) bool {
	i := 0
	for j := lo; j < hi && j < MaxKeys; j++ {
		k := s.Keys[j]
		if k.Version == 0 {
			continue
		}
		if i >= len(kvs) {
			return false
		}
		kv := kvs[i]
		if kv.Key != j || kv.Value != k.Value || kv.Mod != k.Mod || kv.Create != k.Create || kv.Version != k.Version || kv.Lease != k.Lease {
			return false
		}
		i++
	}
	return i == len(kvs)
}

func name(names []string, i int) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("key#%d", i)
}

// describe renders an operation for porcupine's visualization.
func describe(names []string, req *Request, resp *Response) string {
	var b strings.Builder
	if req.Txn {
		b.WriteString("txn(")
		for i, c := range req.Cmps {
			if i > 0 {
				b.WriteString(" && ")
			}
			target := [...]string{"mod", "create", "ver", "value"}[c.Target]
			rel := [...]string{"=", "!=", "<", ">"}[c.Result]
			if c.Target == CmpValue {
				fmt.Fprintf(&b, "%s(%s)%s%q", target, name(names, c.Key), rel, c.Value)
			} else {
				fmt.Fprintf(&b, "%s(%s)%s%d", target, name(names, c.Key), rel, c.Num)
			}
		}
		b.WriteString(") then ")
		describeOps(&b, names, req.Then)
		if len(req.Else) > 0 {
			b.WriteString(" else ")
			describeOps(&b, names, req.Else)
		}
	} else {
		describeOps(&b, names, req.Then)
	}
	b.WriteString(" -> ")
	if resp.Unknown {
		b.WriteString("unknown")
		if resp.Rev != 0 {
			fmt.Fprintf(&b, " (wrote at rev %d)", resp.Rev)
		}
		return b.String()
	}
	if resp.Err != "" {
		return b.String() + resp.Err
	}
	if req.Txn {
		if resp.Succeeded {
			b.WriteString("then ")
		} else {
			b.WriteString("else ")
		}
	}
	fmt.Fprintf(&b, "rev %d", resp.Rev)
	for _, r := range resp.Results {
		if r.KVs != nil {
			b.WriteString(" [")
			for i, kv := range r.KVs {
				if i > 0 {
					b.WriteString(" ")
				}
				fmt.Fprintf(&b, "%s=%q@%d/%d/v%d", name(names, kv.Key), kv.Value, kv.Mod, kv.Create, kv.Version)
				if kv.Lease != 0 {
					fmt.Fprintf(&b, "/L%d", kv.Lease)
				}
			}
			b.WriteString("]")
		} else if r.Deleted > 0 {
			fmt.Fprintf(&b, " deleted %d", r.Deleted)
		}
	}
	return b.String()
}

func describeOps(b *strings.Builder, names []string, ops []Op) {
	for i, op := range ops {
		if i > 0 {
			b.WriteString("; ")
		}
		switch op.Kind {
		case OpGet:
			fmt.Fprintf(b, "get %s", name(names, op.Key))
		case OpPut:
			fmt.Fprintf(b, "put %s=%q", name(names, op.Key), op.Value)
			if op.Lease > 0 {
				fmt.Fprintf(b, " lease L%d", op.Lease)
			}
		case OpDelete:
			fmt.Fprintf(b, "del %s", name(names, op.Key))
		case OpRange:
			b.WriteString("range *")
		case OpDeleteRange:
			b.WriteString("del *")
		case OpLeaseGrant:
			fmt.Fprintf(b, "grant L%d ttl %ds", op.Lease, op.TTL)
		case OpLeaseRevoke:
			fmt.Fprintf(b, "revoke L%d", op.Lease)
		case OpLeaseExpire:
			fmt.Fprintf(b, "expire L%d", op.Lease)
		}
	}
}

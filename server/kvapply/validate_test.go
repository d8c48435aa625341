package kvapply

import (
	"fmt"
	"math/rand"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// errInvalid stands, in the tables, for "some InvalidArgument error of
// this package" (the exact message is not part of the API).
var errInvalid = fmt.Errorf("any InvalidArgument")

func checkWant(t *testing.T, err, want error) {
	t.Helper()
	if want == errInvalid {
		checkInvalid(t, err)
		return
	}
	checkErr(t, err, want)
}

func TestValidateRange(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.RangeRequest
		want error
	}{
		{"nil", nil, errInvalid},
		{"empty key", &pb.RangeRequest{}, errEmptyKey},
		{"empty key with end", &pb.RangeRequest{RangeEnd: []byte("\x00")}, errEmptyKey},
		{"bad sort order", &pb.RangeRequest{Key: []byte("a"), SortOrder: 3}, errInvalidSortOption},
		{"negative sort order", &pb.RangeRequest{Key: []byte("a"), SortOrder: -1}, errInvalidSortOption},
		{"bad sort target", &pb.RangeRequest{Key: []byte("a"), SortTarget: 5}, errInvalidSortOption},
		{"ok", &pb.RangeRequest{Key: []byte("a")}, nil},
		{"ok all keys", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}, nil},
		{"ok every option", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), Limit: -3, Revision: -1,
			SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VALUE, KeysOnly: true, CountOnly: true,
			MinModRevision: 1, MaxModRevision: 2, MinCreateRevision: 3, MaxCreateRevision: 4, Serializable: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkWant(t, ValidateRange(tt.req), tt.want) })
	}
}

func TestValidatePut(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.PutRequest
		want error
	}{
		{"nil", nil, errInvalid},
		{"empty key", &pb.PutRequest{Value: []byte("v")}, errEmptyKey},
		{"value with ignore_value", &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}, errValueProvided},
		{"lease with ignore_lease", &pb.PutRequest{Key: []byte("a"), Lease: 5, IgnoreLease: true}, errLeaseProvided},
		{"empty key first", &pb.PutRequest{Value: []byte("v"), IgnoreValue: true}, errEmptyKey},
		{"ignore_value without value", &pb.PutRequest{Key: []byte("a"), IgnoreValue: true, Lease: 3}, nil},
		{"ignore_lease without lease", &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreLease: true}, nil},
		{"both ignores", &pb.PutRequest{Key: []byte("a"), IgnoreValue: true, IgnoreLease: true, PrevKv: true}, nil},
		{"ok", &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), Lease: 7, PrevKv: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkWant(t, ValidatePut(tt.req), tt.want) })
	}
}

func TestValidateDeleteRange(t *testing.T) {
	checkWant(t, ValidateDeleteRange(nil), errInvalid)
	checkWant(t, ValidateDeleteRange(&pb.DeleteRangeRequest{RangeEnd: []byte{0}}), errEmptyKey)
	checkWant(t, ValidateDeleteRange(&pb.DeleteRangeRequest{Key: []byte("a"), PrevKv: true}), nil)
	checkWant(t, ValidateDeleteRange(&pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}), nil)
}

func TestValidateCompaction(t *testing.T) {
	checkWant(t, ValidateCompaction(nil), errInvalid)
	checkWant(t, ValidateCompaction(&pb.CompactionRequest{Revision: -1}), errCompacted)
	checkWant(t, ValidateCompaction(&pb.CompactionRequest{Revision: 0}), nil)
	checkWant(t, ValidateCompaction(&pb.CompactionRequest{Revision: 9, Physical: true}), nil)
}

func manyOps(n int) []*pb.RequestOp {
	ops := make([]*pb.RequestOp, n)
	for i := range ops {
		ops[i] = opRange(fmt.Sprint("k", i), "")
	}
	return ops
}

func manyCompares(n int) []*pb.Compare {
	cs := make([]*pb.Compare, n)
	for i := range cs {
		cs[i] = cmpVersion(fmt.Sprint("k", i), pb.Compare_EQUAL, 0)
	}
	return cs
}

// TestValidateTxn covers operation counts (with the budget nested
// transactions inherit), and the shape of every compare and operation.
func TestValidateTxn(t *testing.T) {
	lim3 := Limits{MaxTxnOps: 3}
	good := cmpVersion("a", pb.Compare_EQUAL, 0)
	tests := []struct {
		name string
		req  *pb.TxnRequest
		lim  Limits
		want error
	}{
		{"nil", nil, lim3, errInvalid},
		{"empty txn", &pb.TxnRequest{}, lim3, nil},
		{"compares at limit", &pb.TxnRequest{Compare: manyCompares(3)}, lim3, nil},
		{"too many compares", &pb.TxnRequest{Compare: manyCompares(4)}, lim3, errTooManyOps},
		{"too many success", &pb.TxnRequest{Success: manyOps(4)}, lim3, errTooManyOps},
		{"too many failure", &pb.TxnRequest{Failure: manyOps(4)}, lim3, errTooManyOps},
		{"each count on its own", &pb.TxnRequest{Compare: manyCompares(3), Success: manyOps(3), Failure: manyOps(3)}, lim3, nil},
		{"default limit ok", &pb.TxnRequest{Success: manyOps(DefaultMaxTxnOps)}, Limits{}, nil},
		{"default limit exceeded", &pb.TxnRequest{Success: manyOps(DefaultMaxTxnOps + 1)}, Limits{}, errTooManyOps},
		{"nested within budget", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: manyOps(2)}), opPut("x", "")}}, lim3 /* 3-2=1 left */, errTooManyOps},
		{"nested budget fits", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: manyOps(1)}), opPut("x", "")}}, lim3, nil},
		{"nested in failure", &pb.TxnRequest{Failure: []*pb.RequestOp{opTxn(&pb.TxnRequest{Compare: manyCompares(3)})}}, lim3, errTooManyOps},
		{"nil compare", &pb.TxnRequest{Compare: []*pb.Compare{nil}}, lim3, errInvalid},
		{"compare empty key", &pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("", pb.Compare_EQUAL, 0)}}, lim3, errEmptyKey},
		{"compare bad result", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a"), Result: 4, TargetUnion: &pb.Compare_Version{}}}}, lim3, errInvalid},
		{"compare bad target", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a"), Target: 5, TargetUnion: &pb.Compare_Version{}}}}, lim3, errInvalid},
		// As in etcd, a missing or mismatched operand compares as zero.
		{"compare no operand ok", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_MOD}}}, lim3, nil},
		{"compare wrong operand ok", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, TargetUnion: &pb.Compare_Version{}}}}, lim3, nil},
		{"compare nil value operand ok", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, TargetUnion: &pb.Compare_Value{}}}}, lim3, nil},
		{"every compare kind", &pb.TxnRequest{Compare: []*pb.Compare{good, cmpCreate("a", pb.Compare_GREATER, 1), cmpMod("a", pb.Compare_LESS, 1)}}, lim3, nil},
		{"value and lease compares", &pb.TxnRequest{Compare: []*pb.Compare{cmpValue("a", pb.Compare_NOT_EQUAL, "x"), withEnd(cmpLease("a", pb.Compare_EQUAL, 0), "\x00")}}, lim3, nil},
		{"nil op", &pb.TxnRequest{Success: []*pb.RequestOp{nil}}, lim3, errKeyNotFound},
		{"empty op", &pb.TxnRequest{Failure: []*pb.RequestOp{{}}}, lim3, errKeyNotFound},
		{"nil range op", &pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(nil)}}, lim3, errInvalid},
		{"nil put op", &pb.TxnRequest{Success: []*pb.RequestOp{opPutReq(nil)}}, lim3, errInvalid},
		{"nil delete op", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{}}}}, lim3, errInvalid},
		{"nil txn op", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(nil)}}, lim3, errInvalid},
		{"range empty key", &pb.TxnRequest{Success: []*pb.RequestOp{opRange("", "")}}, lim3, errEmptyKey},
		{"range bad sort", &pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: []byte("a"), SortTarget: 9})}}, lim3, errInvalidSortOption},
		{"put empty key", &pb.TxnRequest{Failure: []*pb.RequestOp{opPut("", "v")}}, lim3, errEmptyKey},
		{"put value provided", &pb.TxnRequest{Success: []*pb.RequestOp{opPutReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true})}}, lim3, errValueProvided},
		{"delete empty key", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("", "\x00")}}, lim3, errEmptyKey},
		{"nested bad compare", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Compare: []*pb.Compare{nil}})}}, lim3, errInvalid},
		{"nested nil op", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{nil}})}}, lim3, errKeyNotFound},
		{"mixed ok", &pb.TxnRequest{Compare: []*pb.Compare{good}, Success: []*pb.RequestOp{opPut("a", "1"), opRange("a", ""), opDel("b", "c")}, Failure: []*pb.RequestOp{opRange("a", "\x00")}}, lim3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkWant(t, ValidateTxn(tt.req, tt.lim), tt.want) })
	}
}

// TestValidateTxnDuplicates covers the put/put and put/delete overlap
// rules, through nested transactions.
func TestValidateTxnDuplicates(t *testing.T) {
	dup := errDuplicateKey
	nested := func(success []*pb.RequestOp, failure ...*pb.RequestOp) *pb.RequestOp {
		return opTxn(&pb.TxnRequest{Success: success, Failure: failure})
	}
	type ops = []*pb.RequestOp
	tests := []struct {
		name string
		ops  ops
		want error
	}{
		{"one put", ops{opPut("a", "")}, nil},
		{"two keys", ops{opPut("a", ""), opPut("b", "")}, nil},
		{"same key twice", ops{opPut("a", "1"), opPut("b", ""), opPut("a", "2")}, dup},
		{"put and delete same key", ops{opPut("a", ""), opDel("a", "")}, dup},
		{"delete then put", ops{opDel("a", ""), opPut("a", "")}, dup},
		{"put in deleted range", ops{opDel("a", "c"), opPut("b", "")}, dup},
		{"put at range start", ops{opDel("b", "c"), opPut("b", "")}, dup},
		{"put at range end", ops{opDel("a", "c"), opPut("c", "")}, nil},
		{"put before range", ops{opDel("b", "c"), opPut("a", "")}, nil},
		{"put after key", ops{opDel("a", ""), opPut("a\x00", "")}, nil},
		{"delete to end", ops{opPut("zzz", ""), opDel("b", "\x00")}, dup},
		{"before delete to end", ops{opPut("a", ""), opDel("b", "\x00")}, nil},
		{"delete all", ops{opDel("\x00", "\x00"), opPut("\x01", "")}, dup},
		{"inverted delete", ops{opDel("c", "a"), opPut("b", "")}, nil},
		{"overlapping deletes", ops{opDel("a", "c"), opDel("b", "d"), opDel("b", "")}, nil},
		{"ranges ignored", ops{opRange("a", "\x00"), opPut("a", ""), opRange("a", "")}, nil},
		{"nested put vs top put", ops{opPut("a", ""), nested(ops{opPut("a", "")})}, dup},
		{"nested failure put vs top put", ops{nested(nil, opPut("a", "")), opPut("a", "")}, dup},
		{"nested branches may overlap", ops{nested(ops{opPut("a", "")}, opPut("a", ""))}, nil},
		{"nested branches put vs delete ok", ops{nested(ops{opDel("a", "z")}, opPut("b", ""))}, nil},
		{"nested put vs top delete", ops{opDel("a", "c"), nested(ops{opPut("b", "")})}, dup},
		{"nested delete vs top put", ops{opPut("b", ""), nested(nil, opDel("a", "c"))}, dup},
		{"siblings both put", ops{nested(ops{opPut("k", "")}), nested(nil, opPut("k", ""))}, dup},
		{"sibling put before sibling delete", ops{nested(ops{opPut("k", "")}), nested(ops{opDel("j", "l")})}, dup},
		{"sibling delete before sibling put", ops{nested(ops{opDel("j", "l")}), nested(ops{opPut("k", "")})}, dup},
		{"siblings disjoint", ops{nested(ops{opPut("k", "")}), nested(ops{opPut("l", ""), opDel("a", "b")})}, nil},
		{"dup inside nested branch", ops{nested(ops{opPut("k", ""), opPut("k", "")})}, dup},
		{"deep", ops{opPut("x", ""), nested(ops{nested(nil, nested(ops{opDel("w", "y")}))})}, dup},
		{"deep ok", ops{opPut("x", ""), nested(ops{nested(nil, nested(ops{opDel("y", "z")}, opPut("y", "")))})}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, branch := range []string{"success", "failure"} {
				req := &pb.TxnRequest{Success: tt.ops}
				if branch == "failure" {
					req = &pb.TxnRequest{Failure: tt.ops, Success: []*pb.RequestOp{opPut("a", "")}}
				}
				if err := ValidateTxn(req, Limits{}); err != tt.want {
					t.Fatalf("%s: error %v, want %v", branch, err, tt.want)
				}
			}
		})
	}
}

// TestConflictsSortedMatchesQuadratic checks the O(n log n) put/delete
// overlap check against the obvious one on random inputs.
func TestConflictsSortedMatchesQuadratic(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	keys := []string{"a", "a\x00", "ab", "b", "ba", "c", "c\xff", "d", "e"}
	key := func() []byte { return []byte(keys[rng.Intn(len(keys))]) }
	conflicts := 0
	for iter := 0; iter < 20000; iter++ {
		units := 1 + rng.Intn(4)
		var puts []putKey
		var dels []delSpan
		for i := rng.Intn(6); i > 0; i-- {
			puts = append(puts, putKey{key(), rng.Intn(units)})
		}
		for i := rng.Intn(6); i > 0; i-- {
			var end []byte
			switch rng.Intn(4) {
			case 0:
			case 1:
				end = []byte{0}
			default:
				end = key()
			}
			if s, ok := deleteSpan(key(), end); ok {
				s.unit = rng.Intn(units)
				dels = append(dels, s)
			}
		}
		if len(puts) == 0 || len(dels) == 0 {
			continue
		}
		want := conflictsQuadratic(puts, dels)
		got := conflictsSorted(puts, dels)
		if got != want {
			t.Fatalf("iteration %d: sorted %v, quadratic %v\nputs %+v\ndels %+v", iter, got, want, puts, dels)
		}
		if want != nil {
			conflicts++
		}
	}
	if conflicts == 0 {
		t.Fatal("no conflicting input generated")
	}
}

// TestValidateTxnLargeBranch takes the sorted path of the overlap check
// (many puts and deletes) through ValidateTxn.
func TestValidateTxnLargeBranch(t *testing.T) {
	var ops []*pb.RequestOp
	for i := 0; i < 60; i++ {
		ops = append(ops, opPut(fmt.Sprintf("p%03d", i), ""))
		ops = append(ops, opDel(fmt.Sprintf("q%03d", i), fmt.Sprintf("q%03d\xff", i)))
	}
	if err := ValidateTxn(&pb.TxnRequest{Success: ops}, Limits{}); err != nil {
		t.Fatal(err)
	}
	ops = append(ops, opPut("q030\x01", ""))
	checkErr(t, ValidateTxn(&pb.TxnRequest{Success: ops}, Limits{}), errDuplicateKey)
}

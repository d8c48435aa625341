package kvapply

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/mvcc"
)

// rangeFixture builds a store whose state at revision 11 is
// a(c2 m5 v2 "4"), ab(c6 m6 v1 "0"), b(c3 m10 v3 "6"),
// b\x00(c11 m11 v1 "7"), d(c7 m7 v1 "9"); c lived from 4 to 8.
func rangeFixture(t testing.TB) *mvcc.Store {
	s := openStore(t)
	mustPut(t, s, "a", "1")     // 2
	mustPut(t, s, "b", "2")     // 3
	mustPut(t, s, "c", "3")     // 4
	mustPut(t, s, "a", "4")     // 5
	mustPut(t, s, "ab", "0")    // 6
	mustPut(t, s, "d", "9")     // 7
	mustDelete(t, s, "c", "")   // 8
	mustPut(t, s, "b", "5")     // 9
	mustPut(t, s, "b", "6")     // 10
	mustPut(t, s, "b\x00", "7") // 11
	if s.Rev() != 11 {
		t.Fatalf("fixture at revision %d", s.Rev())
	}
	return s
}

// TestRange covers every RangeRequest field on a fixed history.
func TestRange(t *testing.T) {
	s := rangeFixture(t)
	all := []string{"a", "ab", "b", "b\x00", "d"}
	r := func(key, end string) *pb.RangeRequest { return &pb.RangeRequest{Key: bs(key), RangeEnd: bs(end)} }
	with := func(req *pb.RangeRequest, f func(*pb.RangeRequest)) *pb.RangeRequest { f(req); return req }
	sorted := func(o pb.RangeRequest_SortOrder, tg pb.RangeRequest_SortTarget) *pb.RangeRequest {
		return &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortOrder: o, SortTarget: tg}
	}
	tests := []struct {
		name  string
		req   *pb.RangeRequest
		keys  []string
		count int64
		more  bool
		err   error
	}{
		{"single key", r("a", ""), []string{"a"}, 1, false, nil},
		{"single key with nul", r("b\x00", ""), []string{"b\x00"}, 1, false, nil},
		{"missing key", r("zz", ""), []string{}, 0, false, nil},
		{"deleted key", r("c", ""), []string{}, 0, false, nil},
		{"range", r("a", "b"), []string{"a", "ab"}, 2, false, nil},
		{"prefix", r("b", "c"), []string{"b", "b\x00"}, 2, false, nil},
		{"from key", r("b", "\x00"), []string{"b", "b\x00", "d"}, 3, false, nil},
		{"all keys", r("\x00", "\x00"), all, 5, false, nil},
		{"inverted", r("d", "a"), []string{}, 0, false, nil},
		{"key equals end", r("a", "a"), []string{}, 0, false, nil},
		{"inverted future", with(r("d", "a"), func(q *pb.RangeRequest) { q.Revision = 12 }), nil, 0, false, errFutureRev},
		{"limit", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Limit = 2 }), []string{"a", "ab"}, 5, true, nil},
		{"limit equal count", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Limit = 5 }), all, 5, false, nil},
		{"limit above count", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Limit = 6 }), all, 5, false, nil},
		{"negative limit", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Limit = -1 }), all, 5, false, nil},
		{"limit sorted", with(sorted(pb.RangeRequest_DESCEND, pb.RangeRequest_KEY), func(q *pb.RangeRequest) { q.Limit = 2 }), []string{"d", "b\x00"}, 5, true, nil},
		{"revision", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Revision = 4 }), []string{"a", "b", "c"}, 3, false, nil},
		{"revision after delete", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Revision = 8 }), []string{"a", "ab", "b", "d"}, 4, false, nil},
		{"revision current", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Revision = 11 }), all, 5, false, nil},
		{"negative revision is current", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.Revision = -5 }), all, 5, false, nil},
		{"future revision", with(r("a", ""), func(q *pb.RangeRequest) { q.Revision = 12 }), nil, 0, false, errFutureRev},
		{"key asc", sorted(pb.RangeRequest_ASCEND, pb.RangeRequest_KEY), all, 5, false, nil},
		{"key desc", sorted(pb.RangeRequest_DESCEND, pb.RangeRequest_KEY), []string{"d", "b\x00", "b", "ab", "a"}, 5, false, nil},
		{"version none is ascend", sorted(pb.RangeRequest_NONE, pb.RangeRequest_VERSION), []string{"ab", "b\x00", "d", "a", "b"}, 5, false, nil},
		{"version asc", sorted(pb.RangeRequest_ASCEND, pb.RangeRequest_VERSION), []string{"ab", "b\x00", "d", "a", "b"}, 5, false, nil},
		{"version desc", sorted(pb.RangeRequest_DESCEND, pb.RangeRequest_VERSION), []string{"b", "a", "ab", "b\x00", "d"}, 5, false, nil},
		{"create asc", sorted(pb.RangeRequest_ASCEND, pb.RangeRequest_CREATE), []string{"a", "b", "ab", "d", "b\x00"}, 5, false, nil},
		{"create desc", sorted(pb.RangeRequest_DESCEND, pb.RangeRequest_CREATE), []string{"b\x00", "d", "ab", "b", "a"}, 5, false, nil},
		{"mod none is ascend", sorted(pb.RangeRequest_NONE, pb.RangeRequest_MOD), []string{"a", "ab", "d", "b", "b\x00"}, 5, false, nil},
		{"mod desc", sorted(pb.RangeRequest_DESCEND, pb.RangeRequest_MOD), []string{"b\x00", "b", "d", "ab", "a"}, 5, false, nil},
		{"value asc", sorted(pb.RangeRequest_ASCEND, pb.RangeRequest_VALUE), []string{"ab", "a", "b", "b\x00", "d"}, 5, false, nil},
		{"value desc", sorted(pb.RangeRequest_DESCEND, pb.RangeRequest_VALUE), []string{"d", "b\x00", "b", "a", "ab"}, 5, false, nil},
		{"min mod", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.MinModRevision = 7 }), []string{"b", "b\x00", "d"}, 5, false, nil},
		{"max mod", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.MaxModRevision = 6 }), []string{"a", "ab"}, 5, false, nil},
		{"min create", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.MinCreateRevision = 3 }), []string{"ab", "b", "b\x00", "d"}, 5, false, nil},
		{"max create", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.MaxCreateRevision = 3 }), []string{"a", "b"}, 5, false, nil},
		{"filter with limit", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.MinModRevision = 7; q.Limit = 1 }), []string{"b"}, 5, true, nil},
		{"filter limit exact", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.MinModRevision = 7; q.Limit = 3 }), []string{"b", "b\x00", "d"}, 5, false, nil},
		{"count only", with(r("\x00", "\x00"), func(q *pb.RangeRequest) { q.CountOnly = true; q.Limit = 1 }), []string{}, 5, false, nil},
		{"keys only", with(r("a", "b"), func(q *pb.RangeRequest) { q.KeysOnly = true }), []string{"a", "ab"}, 2, false, nil},
		{"keys only sorted by value", with(sorted(pb.RangeRequest_DESCEND, pb.RangeRequest_VALUE), func(q *pb.RangeRequest) { q.KeysOnly = true }), []string{"d", "b\x00", "b", "a", "ab"}, 5, false, nil},
		{"serializable is ignored", with(r("a", ""), func(q *pb.RangeRequest) { q.Serializable = true }), []string{"a"}, 1, false, nil},
		{"empty key", r("", "\x00"), nil, 0, false, errEmptyKey},
		{"bad sort", with(r("a", ""), func(q *pb.RangeRequest) { q.SortOrder = 7 }), nil, 0, false, errInvalidSortOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := Range(s, tt.req)
			checkErr(t, err, tt.err)
			if err != nil {
				return
			}
			if got := kvsString(resp.Kvs); !reflect.DeepEqual(got, tt.keys) {
				t.Fatalf("keys %q, want %q", got, tt.keys)
			}
			if resp.Count != tt.count || resp.More != tt.more {
				t.Fatalf("count %d more %v, want %d %v", resp.Count, resp.More, tt.count, tt.more)
			}
			if resp.Header == nil || resp.Header.Revision != 11 {
				t.Fatalf("header %v, want revision 11", resp.Header)
			}
			for _, kv := range resp.Kvs {
				if tt.req.KeysOnly != (kv.Value == nil) {
					t.Fatalf("key %q value %q with keys_only %v", kv.Key, kv.Value, tt.req.KeysOnly)
				}
			}
		})
	}
	t.Run("fields", func(t *testing.T) {
		resp, err := Range(s, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b")})
		if err != nil {
			t.Fatal(err)
		}
		want := []*mvccpb.KeyValue{
			{Key: []byte("a"), Value: []byte("4"), CreateRevision: 2, ModRevision: 5, Version: 2},
			{Key: []byte("ab"), Value: []byte("0"), CreateRevision: 6, ModRevision: 6, Version: 1},
		}
		for i := range want {
			if !proto.Equal(resp.Kvs[i], want[i]) {
				t.Fatalf("kv %d: %v, want %v", i, resp.Kvs[i], want[i])
			}
		}
	})
	t.Run("compacted", func(t *testing.T) {
		if err := s.Compact(0, 5); err != nil {
			t.Fatal(err)
		}
		_, err := Range(s, &pb.RangeRequest{Key: []byte("a"), Revision: 4})
		checkErr(t, err, errCompacted)
		resp, err := Range(s, &pb.RangeRequest{Key: []byte("a"), Revision: 5})
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "4" {
			t.Fatalf("at the compaction revision: %v %v", resp, err)
		}
	})
	t.Run("nil", func(t *testing.T) {
		_, err := Range(s, nil)
		checkInvalid(t, err)
		_, err = Range(nil, &pb.RangeRequest{Key: []byte("a")})
		if !errors.Is(err, mvcc.ErrClosed) || IsRequestError(err) {
			t.Fatalf("nil store: %v, want a storage failure like a closed store's", err)
		}
	})
}

// TestPut covers every PutRequest field.
func TestPut(t *testing.T) {
	s := openStore(t)
	get := func(key string) *mvccpb.KeyValue {
		t.Helper()
		resp, err := Range(s, &pb.RangeRequest{Key: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		return resp.Kvs[0]
	}
	kv := func(key, val string, create, mod, ver, lease int64) *mvccpb.KeyValue {
		return &mvccpb.KeyValue{Key: []byte(key), Value: bs(val), CreateRevision: create, ModRevision: mod, Version: ver, Lease: lease}
	}
	steps := []struct {
		name    string
		req     *pb.PutRequest
		leases  LeaseChecker
		err     error
		rev     int64            // header revision
		prev    *mvccpb.KeyValue // expected prev_kv
		after   *mvccpb.KeyValue // the key after the step
		storeAt int64            // store revision after the step
	}{
		{"create", &pb.PutRequest{Key: []byte("k"), Value: []byte("v1")}, nil, nil, 2, nil, kv("k", "v1", 2, 2, 1, 0), 2},
		{"create prev_kv", &pb.PutRequest{Key: []byte("n"), Value: []byte("x"), PrevKv: true}, nil, nil, 3, nil, kv("n", "x", 3, 3, 1, 0), 3},
		{"update", &pb.PutRequest{Key: []byte("k"), Value: []byte("v2")}, nil, nil, 4, nil, kv("k", "v2", 2, 4, 2, 0), 4},
		{"update prev_kv", &pb.PutRequest{Key: []byte("k"), Value: []byte("v3"), PrevKv: true}, nil, nil, 5, kv("k", "v2", 2, 4, 2, 0), kv("k", "v3", 2, 5, 3, 0), 5},
		{"with lease", &pb.PutRequest{Key: []byte("k"), Value: []byte("v4"), Lease: 1}, leaseOne, nil, 6, nil, kv("k", "v4", 2, 6, 4, 1), 6},
		{"missing lease", &pb.PutRequest{Key: []byte("k"), Value: []byte("bad"), Lease: 2}, leaseOne, errLeaseNotFound, 0, nil, kv("k", "v4", 2, 6, 4, 1), 6},
		{"no lease checker", &pb.PutRequest{Key: []byte("k"), Value: []byte("bad"), Lease: 1}, nil, errLeaseNotFound, 0, nil, kv("k", "v4", 2, 6, 4, 1), 6},
		{"ignore_value", &pb.PutRequest{Key: []byte("k"), IgnoreValue: true, PrevKv: true}, nil, nil, 7, kv("k", "v4", 2, 6, 4, 1), kv("k", "v4", 2, 7, 5, 0), 7},
		{"ignore_value sets lease", &pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Lease: 1}, leaseOne, nil, 8, nil, kv("k", "v4", 2, 8, 6, 1), 8},
		{"ignore_lease", &pb.PutRequest{Key: []byte("k"), Value: []byte("v5"), IgnoreLease: true}, nil, nil, 9, nil, kv("k", "v5", 2, 9, 7, 1), 9},
		{"both ignores", &pb.PutRequest{Key: []byte("k"), IgnoreValue: true, IgnoreLease: true}, nil, nil, 10, nil, kv("k", "v5", 2, 10, 8, 1), 10},
		{"ignore_value missing key", &pb.PutRequest{Key: []byte("m"), IgnoreValue: true}, nil, errKeyNotFound, 0, nil, nil, 10},
		{"ignore_lease missing key", &pb.PutRequest{Key: []byte("m"), Value: []byte("x"), IgnoreLease: true}, nil, errKeyNotFound, 0, nil, nil, 10},
		{"missing lease before missing key", &pb.PutRequest{Key: []byte("m"), IgnoreValue: true, Lease: 3}, leaseOne, errLeaseNotFound, 0, nil, nil, 10},
		{"value provided", &pb.PutRequest{Key: []byte("k"), Value: []byte("x"), IgnoreValue: true}, nil, errValueProvided, 0, nil, kv("k", "v5", 2, 10, 8, 1), 10},
		{"lease provided", &pb.PutRequest{Key: []byte("k"), Lease: 1, IgnoreLease: true}, leaseOne, errLeaseProvided, 0, nil, kv("k", "v5", 2, 10, 8, 1), 10},
		{"empty key", &pb.PutRequest{Value: []byte("x")}, nil, errEmptyKey, 0, nil, nil, 10},
		{"empty value", &pb.PutRequest{Key: []byte("e")}, nil, nil, 11, nil, kv("e", "", 11, 11, 1, 0), 11},
		{"binary key", &pb.PutRequest{Key: []byte("\x00\xff"), Value: []byte{0}}, nil, nil, 12, nil, kv("\x00\xff", "\x00", 12, 12, 1, 0), 12},
	}
	for _, st := range steps {
		resp, err := doPut(s, st.req, st.leases)
		if err != st.err {
			t.Fatalf("%s: error %v, want %v", st.name, err, st.err)
		}
		if err == nil {
			if resp.Header == nil || resp.Header.Revision != st.rev {
				t.Fatalf("%s: header %v, want revision %d", st.name, resp.Header, st.rev)
			}
			if !proto.Equal(resp.PrevKv, st.prev) {
				t.Fatalf("%s: prev_kv %v, want %v", st.name, resp.PrevKv, st.prev)
			}
		}
		if len(st.req.GetKey()) > 0 {
			if got := get(string(st.req.Key)); !proto.Equal(got, st.after) {
				t.Fatalf("%s: key now %v, want %v", st.name, got, st.after)
			}
		}
		if s.Rev() != st.storeAt {
			t.Fatalf("%s: store at revision %d, want %d", st.name, s.Rev(), st.storeAt)
		}
	}
	if _, err := Put(nil, &pb.PutRequest{Key: []byte("a")}, nil); err == nil {
		t.Fatal("nil txn accepted")
	}
	_, err := doPut(s, nil, nil)
	checkInvalid(t, err)
}

// TestDeleteRange covers every DeleteRangeRequest field and range form.
func TestDeleteRange(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		end     string
		deleted []string
	}{
		{"single", "ab", "", []string{"ab"}},
		{"missing", "zz", "", nil},
		{"already deleted", "c", "", nil},
		{"range", "a", "b", []string{"a", "ab"}},
		{"prefix", "b", "c", []string{"b", "b\x00"}},
		{"from key", "b", "\x00", []string{"b", "b\x00", "d"}},
		{"all", "\x00", "\x00", []string{"a", "ab", "b", "b\x00", "d"}},
		{"inverted", "d", "a", nil},
		{"key equals end", "a", "a", nil},
	}
	for _, tt := range tests {
		for _, prevKV := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/prev_kv=%v", tt.name, prevKV), func(t *testing.T) {
				s := rangeFixture(t)
				before, err := Range(s, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
				if err != nil {
					t.Fatal(err)
				}
				resp, err := doDelete(s, &pb.DeleteRangeRequest{Key: bs(tt.key), RangeEnd: bs(tt.end), PrevKv: prevKV})
				if err != nil {
					t.Fatal(err)
				}
				wantRev := int64(11)
				if len(tt.deleted) > 0 {
					wantRev = 12
				}
				if resp.Deleted != int64(len(tt.deleted)) || resp.Header.GetRevision() != wantRev || s.Rev() != wantRev {
					t.Fatalf("deleted %d header %v store %d, want %d at %d", resp.Deleted, resp.Header, s.Rev(), len(tt.deleted), wantRev)
				}
				if !prevKV {
					if resp.PrevKvs != nil {
						t.Fatalf("prev_kvs without prev_kv: %v", resp.PrevKvs)
					}
				} else {
					var want []*mvccpb.KeyValue
					for _, kv := range before.Kvs {
						for _, k := range tt.deleted {
							if string(kv.Key) == k {
								want = append(want, kv)
							}
						}
					}
					if len(want) != len(resp.PrevKvs) {
						t.Fatalf("prev_kvs %v, want %v", resp.PrevKvs, want)
					}
					for i := range want {
						if !proto.Equal(want[i], resp.PrevKvs[i]) {
							t.Fatalf("prev_kvs %v, want %v", resp.PrevKvs, want)
						}
					}
				}
				after, err := Range(s, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
				if err != nil {
					t.Fatal(err)
				}
				if after.Count != before.Count-int64(len(tt.deleted)) {
					t.Fatalf("%d keys left, want %d", after.Count, before.Count-int64(len(tt.deleted)))
				}
			})
		}
	}
	t.Run("invalid", func(t *testing.T) {
		s := openStore(t)
		_, err := doDelete(s, &pb.DeleteRangeRequest{RangeEnd: []byte{0}})
		checkErr(t, err, errEmptyKey)
		_, err = doDelete(s, nil)
		checkInvalid(t, err)
		if _, err := DeleteRange(nil, &pb.DeleteRangeRequest{Key: []byte("a")}); err == nil {
			t.Fatal("nil txn accepted")
		}
	})
}

// TestTxnCompares covers every compare target and result, on existing
// keys, missing keys and ranges.
func TestTxnCompares(t *testing.T) {
	s := rangeFixture(t) // a(c2 m5 v2 "4"), ab(c6 m6 v1 "0"), b(c3 m10 v3 "6"), b\x00(c11 m11 v1 "7"), d(c7 m7 v1 "9")
	if _, err := doPut(s, &pb.PutRequest{Key: []byte("l"), Value: []byte("x"), Lease: 1}, leaseOne); err != nil {
		t.Fatal(err)
	} // 12
	E, N, G, L := pb.Compare_EQUAL, pb.Compare_NOT_EQUAL, pb.Compare_GREATER, pb.Compare_LESS
	tests := []struct {
		name string
		cmp  []*pb.Compare
		want bool
	}{
		{"no compares", nil, true},
		{"version =", []*pb.Compare{cmpVersion("a", E, 2)}, true},
		{"version = wrong", []*pb.Compare{cmpVersion("a", E, 1)}, false},
		{"version !=", []*pb.Compare{cmpVersion("a", N, 1)}, true},
		{"version >", []*pb.Compare{cmpVersion("a", G, 1)}, true},
		{"version > equal", []*pb.Compare{cmpVersion("a", G, 2)}, false},
		{"version <", []*pb.Compare{cmpVersion("a", L, 3)}, true},
		{"version < equal", []*pb.Compare{cmpVersion("a", L, 2)}, false},
		{"create =", []*pb.Compare{cmpCreate("a", E, 2)}, true},
		{"create >", []*pb.Compare{cmpCreate("b", G, 2)}, true},
		{"create <", []*pb.Compare{cmpCreate("b", L, 3)}, false},
		{"mod =", []*pb.Compare{cmpMod("b", E, 10)}, true},
		{"mod !=", []*pb.Compare{cmpMod("b", N, 10)}, false},
		{"mod <", []*pb.Compare{cmpMod("b", L, 11)}, true},
		{"value =", []*pb.Compare{cmpValue("a", E, "4")}, true},
		{"value = wrong", []*pb.Compare{cmpValue("a", E, "5")}, false},
		{"value !=", []*pb.Compare{cmpValue("a", N, "5")}, true},
		{"value >", []*pb.Compare{cmpValue("a", G, "3")}, true},
		{"value > longer", []*pb.Compare{cmpValue("a", G, "40")}, false},
		{"value <", []*pb.Compare{cmpValue("a", L, "40")}, true},
		{"value = empty", []*pb.Compare{cmpValue("a", E, "")}, false},
		{"value > empty", []*pb.Compare{cmpValue("a", G, "")}, true},
		{"lease =", []*pb.Compare{cmpLease("l", E, 1)}, true},
		{"lease none", []*pb.Compare{cmpLease("a", E, 0)}, true},
		{"lease >", []*pb.Compare{cmpLease("l", G, 0)}, true},
		{"lease !=", []*pb.Compare{cmpLease("l", N, 1)}, false},
		{"missing version = 0", []*pb.Compare{cmpVersion("zz", E, 0)}, true},
		{"missing version > 0", []*pb.Compare{cmpVersion("zz", G, 0)}, false},
		{"missing create = 0", []*pb.Compare{cmpCreate("zz", E, 0)}, true},
		{"missing mod < 1", []*pb.Compare{cmpMod("zz", L, 1)}, true},
		{"missing lease = 0", []*pb.Compare{cmpLease("zz", E, 0)}, true},
		{"missing value = empty", []*pb.Compare{cmpValue("zz", E, "")}, false},
		{"missing value !=", []*pb.Compare{cmpValue("zz", N, "x")}, false},
		{"deleted key version = 0", []*pb.Compare{cmpVersion("c", E, 0)}, true},
		{"all compares hold", []*pb.Compare{cmpVersion("a", E, 2), cmpMod("b", E, 10), cmpValue("d", E, "9")}, true},
		{"one compare fails", []*pb.Compare{cmpVersion("a", E, 2), cmpMod("b", E, 9), cmpValue("d", E, "9")}, false},
		{"range all hold", []*pb.Compare{withEnd(cmpCreate("a", G, 1), "c")}, true},
		{"range one fails", []*pb.Compare{withEnd(cmpVersion("a", E, 1), "b")}, false},
		{"range mod <", []*pb.Compare{withEnd(cmpMod("a", L, 13), "\x00")}, true},
		{"range mod < some", []*pb.Compare{withEnd(cmpMod("a", L, 12), "\x00")}, false},
		{"prefix values !=", []*pb.Compare{withEnd(cmpValue("b", N, "x"), "c")}, true},
		{"all keys", []*pb.Compare{withEnd(cmpVersion("\x00", G, 0), "\x00")}, true},
		{"empty range version = 0", []*pb.Compare{withEnd(cmpVersion("e", E, 0), "f")}, true},
		{"empty range create > 0", []*pb.Compare{withEnd(cmpCreate("e", G, 0), "f")}, false},
		{"empty range value", []*pb.Compare{withEnd(cmpValue("e", E, ""), "f")}, false},
		{"inverted range version = 0", []*pb.Compare{withEnd(cmpVersion("d", E, 0), "a")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &pb.TxnRequest{Compare: tt.cmp, Success: []*pb.RequestOp{opRange("a", "")}}
			resp, err := doTxn(s, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Succeeded != tt.want {
				t.Fatalf("succeeded %v, want %v", resp.Succeeded, tt.want)
			}
			wantOps := 0
			if tt.want {
				wantOps = 1
			}
			if len(resp.Responses) != wantOps || resp.Header.GetRevision() != 12 {
				t.Fatalf("response %v", show(resp))
			}
			if IsReadOnlyTxn(req) {
				ro, err := ReadTxn(s, req)
				if err != nil || !proto.Equal(ro, resp) {
					t.Fatalf("ReadTxn %v %v, want %v", show(ro), err, show(resp))
				}
			}
		})
	}
}

// TestTxnOps covers operation order, visibility of earlier writes, one
// revision per txn, nested transactions, response shapes and headers, and
// the txn's atomicity when an operation fails.
func TestTxnOps(t *testing.T) {
	s := openStore(t)
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "b", "2") // 3

	t.Run("success branch", func(t *testing.T) {
		resp, err := doTxn(s, &pb.TxnRequest{
			Compare: []*pb.Compare{cmpValue("a", pb.Compare_EQUAL, "1")},
			Success: []*pb.RequestOp{
				opRange("a", ""),
				opPutReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("10"), PrevKv: true}),
				opRange("a", ""),
				opPut("c", "3"),
				opRangeReq(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), CountOnly: true}),
				opDel("b", ""),
				opRange("b", ""),
				opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 3}),
			},
			Failure: []*pb.RequestOp{opPut("x", "")},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 4}, Succeeded: true, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 3}, Count: 1,
				Kvs: []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1}}}}},
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 4},
				PrevKv: &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1}}}},
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}, Count: 1,
				Kvs: []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("10"), CreateRevision: 2, ModRevision: 4, Version: 2}}}}},
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 4}}}},
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}, Count: 3}}},
			{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: 4}, Deleted: 1}}},
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}}}},
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}, Count: 1,
				Kvs: []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1}}}}},
		}}
		if !proto.Equal(resp, want) {
			t.Fatalf("got\n%s\nwant\n%s", show(resp), show(want))
		}
		if s.Rev() != 4 {
			t.Fatalf("store at %d, want 4 (one revision per txn)", s.Rev())
		}
	})

	t.Run("failure branch", func(t *testing.T) {
		resp, err := doTxn(s, &pb.TxnRequest{
			Compare: []*pb.Compare{cmpValue("a", pb.Compare_EQUAL, "1")},
			Success: []*pb.RequestOp{opPut("x", "")},
			Failure: []*pb.RequestOp{opPut("b", "again"), opDel("zz", "")},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 5}, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 5}}}},
			{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: 5}}}},
		}}
		if !proto.Equal(resp, want) {
			t.Fatalf("got\n%s\nwant\n%s", show(resp), show(want))
		}
		got, _ := Range(s, &pb.RangeRequest{Key: []byte("b")})
		if got.Kvs[0].CreateRevision != 5 || got.Kvs[0].Version != 1 {
			t.Fatalf("b recreated as %v", got.Kvs[0])
		}
	})

	t.Run("no change keeps revision", func(t *testing.T) {
		resp, err := doTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{opDel("zz", ""), opRange("a", "")}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Revision != 5 || s.Rev() != 5 || !resp.Succeeded {
			t.Fatalf("header %v store %d", resp.Header, s.Rev())
		}
		empty, err := doTxn(s, &pb.TxnRequest{}, nil)
		if err != nil || !empty.Succeeded || len(empty.Responses) != 0 || empty.Header.Revision != 5 {
			t.Fatalf("empty txn: %v %v", show(empty), err)
		}
	})

	t.Run("nested", func(t *testing.T) {
		// a is "10" (v2) at 5. The nested compares see the state before
		// the txn, not the put of n before them.
		resp, err := doTxn(s, &pb.TxnRequest{
			Success: []*pb.RequestOp{
				opPut("n", "1"),
				opTxn(&pb.TxnRequest{
					Compare: []*pb.Compare{cmpVersion("n", pb.Compare_EQUAL, 0)},
					Success: []*pb.RequestOp{opRange("n", ""), opPut("m", "")},
					Failure: []*pb.RequestOp{opPut("wrong", "")},
				}),
				opTxn(&pb.TxnRequest{
					Compare: []*pb.Compare{cmpValue("a", pb.Compare_EQUAL, "nope")},
					Failure: []*pb.RequestOp{opTxn(&pb.TxnRequest{})},
				}),
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		nKV := &mvccpb.KeyValue{Key: []byte("n"), Value: []byte("1"), CreateRevision: 6, ModRevision: 6, Version: 1}
		want := &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 6}, Succeeded: true, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 6}}}},
			{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: true, Responses: []*pb.ResponseOp{
				{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 6}, Count: 1, Kvs: []*mvccpb.KeyValue{nKV}}}},
				{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 6}}}},
			}}}},
			{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: &pb.ResponseHeader{}, Responses: []*pb.ResponseOp{
				{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: true}}},
			}}}},
		}}
		if !proto.Equal(resp, want) {
			t.Fatalf("got\n%s\nwant\n%s", show(resp), show(want))
		}
	})

	t.Run("failing op discards the txn", func(t *testing.T) {
		before := s.Rev()
		cases := []struct {
			name string
			ops  []*pb.RequestOp
			err  error
		}{
			{"missing lease", []*pb.RequestOp{opPut("p", "1"), opPutReq(&pb.PutRequest{Key: []byte("q"), Lease: 9})}, errLeaseNotFound},
			{"ignore_value missing", []*pb.RequestOp{opDel("a", ""), opPutReq(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true})}, errKeyNotFound},
			{"future range", []*pb.RequestOp{opPut("p", "1"), opRangeReq(&pb.RangeRequest{Key: []byte("p"), Revision: before + 1})}, errFutureRev},
			{"nested failure", []*pb.RequestOp{opPut("p", "1"), opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("b", ""), {}}})}, errKeyNotFound},
			{"empty put key", []*pb.RequestOp{opPut("p", "1"), opPut("", "1")}, errEmptyKey},
		}
		for _, c := range cases {
			_, err := doTxn(s, &pb.TxnRequest{Success: c.ops}, leaseOne)
			if err != c.err {
				t.Fatalf("%s: error %v, want %v", c.name, err, c.err)
			}
			if s.Rev() != before {
				t.Fatalf("%s: store moved to %d", c.name, s.Rev())
			}
			if r, _ := Range(s, &pb.RangeRequest{Key: []byte("p")}); r.Count != 0 {
				t.Fatalf("%s: p was written", c.name)
			}
		}
	})

	t.Run("compacted range", func(t *testing.T) {
		if err := s.Compact(0, s.Rev()); err != nil {
			t.Fatal(err)
		}
		_, err := doTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 2})}}, nil)
		checkErr(t, err, errCompacted)
		_, err = ReadTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 2})}})
		checkErr(t, err, errCompacted)
	})
}

// TestTxnMalformed feeds requests that validation would reject straight
// to the executors: they must fail with InvalidArgument, never panic, and
// change nothing.
func TestTxnMalformed(t *testing.T) {
	s := openStore(t)
	mustPut(t, s, "a", "1")
	reqs := map[string]*pb.TxnRequest{
		"nil":                nil,
		"nil compare":        {Compare: []*pb.Compare{nil}},
		"bad target":         {Compare: []*pb.Compare{{Key: []byte("a"), Target: 99, TargetUnion: &pb.Compare_Value{}}}},
		"bad result":         {Compare: []*pb.Compare{{Key: []byte("a"), Result: -1, TargetUnion: &pb.Compare_Version{}}}},
		"empty compare key":  {Compare: []*pb.Compare{cmpVersion("", pb.Compare_EQUAL, 0)}},
		"nil op":             {Success: []*pb.RequestOp{opPut("z", ""), nil}},
		"empty op":           {Success: []*pb.RequestOp{opPut("z", ""), {}}},
		"nil range":          {Success: []*pb.RequestOp{opPut("z", ""), opRangeReq(nil)}},
		"nil put":            {Success: []*pb.RequestOp{opPut("z", ""), opPutReq(nil)}},
		"nil delete":         {Success: []*pb.RequestOp{opPut("z", ""), {Request: &pb.RequestOp_RequestDeleteRange{}}}},
		"nil nested":         {Success: []*pb.RequestOp{opPut("z", ""), opTxn(nil)}},
		"nested nil compare": {Success: []*pb.RequestOp{opPut("z", ""), opTxn(&pb.TxnRequest{Compare: []*pb.Compare{nil}})}},
		"range bad sort":     {Success: []*pb.RequestOp{opPut("z", ""), opRangeReq(&pb.RangeRequest{Key: []byte("a"), SortTarget: 77})}},
		"range empty key":    {Success: []*pb.RequestOp{opPut("z", ""), opRange("", "\x00")}},
		"delete empty key":   {Success: []*pb.RequestOp{opPut("z", ""), opDel("", "\x00")}},
		"value provided":     {Success: []*pb.RequestOp{opPut("z", ""), opPutReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("x"), IgnoreValue: true})}},
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			_, err := doTxn(s, req, nil)
			checkInvalid(t, err)
			if s.Rev() != 2 {
				t.Fatalf("store moved to %d", s.Rev())
			}
			_, err = ReadTxn(s, req)
			checkInvalid(t, err)
		})
	}
	if _, err := Txn(nil, &pb.TxnRequest{}, nil); err == nil {
		t.Fatal("nil txn accepted")
	}
	if _, err := ReadTxn(nil, &pb.TxnRequest{}); err == nil {
		t.Fatal("nil store accepted")
	}
}

func TestIsReadOnlyTxn(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.TxnRequest
		want bool
	}{
		{"nil", nil, false},
		{"empty", &pb.TxnRequest{}, true},
		{"compares only", &pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("a", pb.Compare_EQUAL, 0)}}, true},
		{"ranges", &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", "")}, Failure: []*pb.RequestOp{opRange("b", "\x00")}}, true},
		{"put in success", &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", ""), opPut("a", "")}}, false},
		{"delete in failure", &pb.TxnRequest{Failure: []*pb.RequestOp{opDel("a", "")}}, false},
		{"nested read-only", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opRange("a", "")}})}}, true},
		{"nested write", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opPut("a", "")}})}}, false},
		{"nil op", &pb.TxnRequest{Success: []*pb.RequestOp{nil}}, false},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, false},
		{"nil nested", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(nil)}}, false},
	}
	for _, tt := range tests {
		if got := IsReadOnlyTxn(tt.req); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestReadTxnWriteOp checks that ReadTxn refuses writes (the server must
// route them through the log).
func TestReadTxnWriteOp(t *testing.T) {
	s := openStore(t)
	for _, op := range []*pb.RequestOp{opPut("a", ""), opDel("a", "")} {
		_, err := ReadTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{op}})
		checkInvalid(t, err)
	}
	if s.Rev() != 1 {
		t.Fatal("ReadTxn wrote")
	}
}

// TestReadTxnOneRevision runs read-only txns while a writer keeps two
// keys equal (both changed in each of its txns) and a compactor follows
// right behind it: every read-only txn must see both keys at the same
// revision, whatever the races, and never fail.
func TestReadTxnOneRevision(t *testing.T) {
	s := openStore(t)
	if _, err := doTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{opPut("x", "0"), opPut("y", "0")}}, nil); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer stop.Store(true)
		for i := 1; i <= 300; i++ {
			v := fmt.Sprint(i)
			if _, err := doTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{opPut("x", v), opPut("y", v)}}, nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := s.Compact(0, s.Rev()); err != nil && !errors.Is(err, mvcc.ErrCompacted) {
				t.Error(err)
				return
			}
		}
	}()
	req := &pb.TxnRequest{
		Compare: []*pb.Compare{cmpVersion("x", pb.Compare_GREATER, 0)},
		Success: []*pb.RequestOp{opRange("x", ""), opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opRange("y", "")}})},
	}
	reads := 0
	for !stop.Load() || reads == 0 {
		resp, err := ReadTxn(s, req)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		reads++
		x := resp.Responses[0].GetResponseRange().Kvs[0]
		y := resp.Responses[1].GetResponseTxn().Responses[0].GetResponseRange().Kvs[0]
		if string(x.Value) != string(y.Value) || x.ModRevision != y.ModRevision || resp.Header.Revision != x.ModRevision {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("read-only txn saw x=%v y=%v at %d", x, y, resp.Header.Revision)
		}
	}
	wg.Wait()
	t.Logf("%d read-only txns", reads)
}

// TestReadTxnCompactionRace forces a compaction past the revision a
// read-only txn took: it must start again at the newer revision, while a
// read pinned to a compacted revision still fails.
func TestReadTxnCompactionRace(t *testing.T) {
	s := openStore(t)
	mustPut(t, s, "a", "1") // 2
	races := 2
	testHookReadTxnBase = func() {
		if races > 0 {
			races--
			mustPut(t, s, "a", fmt.Sprint("r", races))
			if err := s.Compact(0, s.Rev()); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { testHookReadTxnBase = nil }()
	resp, err := ReadTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", "")}})
	if err != nil {
		t.Fatal(err)
	}
	if races != 0 || resp.Header.Revision != 4 || string(resp.Responses[0].GetResponseRange().Kvs[0].Value) != "r0" {
		t.Fatalf("races left %d, response %s", races, show(resp))
	}
	races = 1
	_, err = ReadTxn(s, &pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 3})}})
	checkErr(t, err, errCompacted)
}

// TestStoreError checks the split between a request's fault and the
// store's: the store's request errors become RequestErrors that still
// match mvcc's values, anything else is left as it is.
func TestStoreError(t *testing.T) {
	tests := []struct {
		in      error
		request bool
	}{
		{mvcc.ErrCompacted, true},
		{mvcc.ErrFutureRev, true},
		{fmt.Errorf("wrapped: %w", mvcc.ErrCompacted), true},
		{mvcc.ErrKeyNotFound, true},
		{mvcc.ErrEmptyKey, true},
		{mvcc.ErrClosed, false},
		{mvcc.ErrCorrupt, false},
		{errors.New("disk on fire"), false},
	}
	for _, tt := range tests {
		got := storeError(tt.in)
		if IsRequestError(got) != tt.request {
			t.Errorf("%v: request error %v, want %v", tt.in, IsRequestError(got), tt.request)
		}
		if !errors.Is(got, tt.in) && !errors.Is(tt.in, errors.Unwrap(got)) {
			t.Errorf("%v: %v no longer matches it", tt.in, got)
		}
	}
	if storeError(nil) != nil {
		t.Error("storeError(nil) is not nil")
	}
}

// TestCompareMissingOperand: as in etcd, a compare whose operand is
// missing, or of another target's type, compares against zero (a JSON
// client of the gateway often leaves a zero out).
func TestCompareMissingOperand(t *testing.T) {
	s := openStore(t)
	mustPut(t, s, "a", "1")
	for _, tc := range []struct {
		name string
		cmp  *pb.Compare
		want bool
	}{
		{"missing key, mod == (none)", &pb.Compare{Key: []byte("zz"), Target: pb.Compare_MOD}, true},
		{"existing key, version == (none)", &pb.Compare{Key: []byte("a"), Target: pb.Compare_VERSION}, false},
		{"existing key, version > (none)", &pb.Compare{Key: []byte("a"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER}, true},
		{"existing key, create > (a value operand)", &pb.Compare{Key: []byte("a"), Target: pb.Compare_CREATE, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Value{Value: []byte("x")}}, true},
		{"existing key, value > (none)", &pb.Compare{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_GREATER}, true},
	} {
		resp, err := ReadTxn(s, &pb.TxnRequest{Compare: []*pb.Compare{tc.cmp}})
		if err != nil || resp.Succeeded != tc.want {
			t.Errorf("%s: succeeded %v, %v; want %v", tc.name, resp.GetSucceeded(), err, tc.want)
		}
	}
}

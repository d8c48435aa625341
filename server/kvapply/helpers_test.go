package kvapply

import (
	"path/filepath"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/mvcc"
)

func openStore(t testing.TB) *mvcc.Store {
	t.Helper()
	s, err := mvcc.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// leaseOne knows exactly one lease, 1.
var leaseOne = LeaseCheckerFunc(func(id int64) bool { return id == 1 })

// doPut applies a Put as its own revision.
func doPut(s *mvcc.Store, req *pb.PutRequest, leases LeaseChecker) (*pb.PutResponse, error) {
	var resp *pb.PutResponse
	_, _, err := s.Write(0, func(tx *mvcc.WriteTxn) error {
		var err error
		resp, err = Put(tx, req, leases)
		return err
	})
	return resp, err
}

func doDelete(s *mvcc.Store, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	var resp *pb.DeleteRangeResponse
	_, _, err := s.Write(0, func(tx *mvcc.WriteTxn) error {
		var err error
		resp, err = DeleteRange(tx, req)
		return err
	})
	return resp, err
}

func doTxn(s *mvcc.Store, req *pb.TxnRequest, leases LeaseChecker) (*pb.TxnResponse, error) {
	var resp *pb.TxnResponse
	_, _, err := s.Write(0, func(tx *mvcc.WriteTxn) error {
		var err error
		resp, err = Txn(tx, req, leases)
		return err
	})
	return resp, err
}

func mustPut(t testing.TB, s *mvcc.Store, key, val string) int64 {
	t.Helper()
	resp, err := doPut(s, &pb.PutRequest{Key: []byte(key), Value: []byte(val)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func mustDelete(t testing.TB, s *mvcc.Store, key, end string) int64 {
	t.Helper()
	resp, err := doDelete(s, &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: bs(end)})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// bs is []byte(s), but nil for "" (as a decoded request has it).
func bs(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func show(m proto.Message) string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return "<nil>"
	}
	return prototext.MarshalOptions{Multiline: true}.Format(m)
}

// checkErr fails unless err is want (compared as values: the package
// returns etcd's error variables) or, for want == nil, nil.
func checkErr(t testing.TB, err, want error) {
	t.Helper()
	if err != want {
		t.Fatalf("error %v, want %v", err, want)
	}
}

// checkInvalid fails unless err refuses a malformed request: a
// RequestError (the API layer makes it InvalidArgument).
func checkInvalid(t testing.TB, err error) {
	t.Helper()
	if !IsRequestError(err) {
		t.Fatalf("error %v, want a RequestError", err)
	}
}

func kvsString(kvs []*mvccpb.KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// Request builders, to keep the tables short.

func opRange(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: bs(key), RangeEnd: bs(end)}}}
}

func opRangeReq(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opPut(key, val string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: bs(key), Value: bs(val)}}}
}

func opPutReq(r *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r}}
}

func opDel(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: bs(key), RangeEnd: bs(end)}}}
}

func opTxn(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func cmpVersion(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: bs(key), Target: pb.Compare_VERSION, Result: r, TargetUnion: &pb.Compare_Version{Version: v}}
}

func cmpCreate(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: bs(key), Target: pb.Compare_CREATE, Result: r, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: v}}
}

func cmpMod(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: bs(key), Target: pb.Compare_MOD, Result: r, TargetUnion: &pb.Compare_ModRevision{ModRevision: v}}
}

func cmpValue(key string, r pb.Compare_CompareResult, v string) *pb.Compare {
	return &pb.Compare{Key: bs(key), Target: pb.Compare_VALUE, Result: r, TargetUnion: &pb.Compare_Value{Value: bs(v)}}
}

func cmpLease(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: bs(key), Target: pb.Compare_LEASE, Result: r, TargetUnion: &pb.Compare_Lease{Lease: v}}
}

func withEnd(c *pb.Compare, end string) *pb.Compare {
	c.RangeEnd = bs(end)
	return c
}

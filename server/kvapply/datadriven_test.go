package kvapply

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/mvcc"
)

// TestScripts runs the scripts in testdata/kv: requests, written as the
// text form of their protobuf message, against a fresh store per file,
// each followed by the answer etcd's semantics give. Leases 1 and 2
// exist. Rewrite the expected output after an intended change with
//
//	go test ./server/kvapply -run TestScripts -rewrite
//
// Commands: put, del, range, txn (the input is a PutRequest,
// DeleteRangeRequest, RangeRequest or TxnRequest), and compact rev=<n>.
// Writes are validated first, as the API layer does.
func TestScripts(t *testing.T) {
	leases := LeaseCheckerFunc(func(id int64) bool { return id == 1 || id == 2 })
	datadriven.Walk(t, "testdata/kv", func(t *testing.T, path string) {
		s := openStore(t)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			parse := func(m proto.Message) {
				if err := prototext.Unmarshal([]byte(d.Input), m); err != nil {
					d.Fatalf(t, "%s: %v", d.Cmd, err)
				}
			}
			var out strings.Builder
			var err error
			switch d.Cmd {
			case "put":
				req := &pb.PutRequest{}
				parse(req)
				var resp *pb.PutResponse
				if err = ValidatePut(req); err == nil {
					resp, err = doPut(s, req, leases)
				}
				if err == nil {
					fmt.Fprintf(&out, "rev=%d\n", resp.Header.Revision)
					writePrev(&out, "", resp.PrevKv)
				}
			case "del":
				req := &pb.DeleteRangeRequest{}
				parse(req)
				var resp *pb.DeleteRangeResponse
				if err = ValidateDeleteRange(req); err == nil {
					resp, err = doDelete(s, req)
				}
				if err == nil {
					writeDelete(&out, "", resp)
				}
			case "range":
				req := &pb.RangeRequest{}
				parse(req)
				var resp *pb.RangeResponse
				if resp, err = Range(s, req); err == nil {
					writeRange(&out, "", resp)
				}
			case "txn":
				req := &pb.TxnRequest{}
				parse(req)
				var resp *pb.TxnResponse
				if err = ValidateTxn(req, Limits{}); err == nil {
					if IsReadOnlyTxn(req) {
						resp, err = ReadTxn(s, req)
					} else {
						resp, err = doTxn(s, req, leases)
					}
				}
				if err == nil {
					writeTxn(&out, "", resp)
				}
			case "compact":
				var rev int64
				d.ScanArgs(t, "rev", &rev)
				if err = s.Compact(0, rev); err == nil {
					fmt.Fprintf(&out, "compacted at %d\n", rev)
				}
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			if err != nil {
				kind := "storage failure"
				if IsRequestError(err) || errors.Is(err, mvcc.ErrCompacted) || errors.Is(err, mvcc.ErrFutureRev) {
					kind = "refused"
				}
				return fmt.Sprintf("%s: %v\n", kind, err)
			}
			return out.String()
		})
	})
}

func writeKV(out *strings.Builder, indent string, kv *mvccpb.KeyValue) {
	fmt.Fprintf(out, "%s%s=%s (create=%d mod=%d ver=%d", indent, kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	if kv.Lease != 0 {
		fmt.Fprintf(out, " lease=%d", kv.Lease)
	}
	out.WriteString(")\n")
}

func writePrev(out *strings.Builder, indent string, kv *mvccpb.KeyValue) {
	if kv != nil {
		writeKV(out, indent+"prev ", kv)
	}
}

func writeRange(out *strings.Builder, indent string, r *pb.RangeResponse) {
	fmt.Fprintf(out, "%srange rev=%d count=%d more=%v\n", indent, r.Header.GetRevision(), r.Count, r.More)
	for _, kv := range r.Kvs {
		writeKV(out, indent+"  ", kv)
	}
}

func writeDelete(out *strings.Builder, indent string, r *pb.DeleteRangeResponse) {
	fmt.Fprintf(out, "%sdeleted=%d rev=%d\n", indent, r.Deleted, r.Header.GetRevision())
	for _, kv := range r.PrevKvs {
		writeKV(out, indent+"  prev ", kv)
	}
}

func writeTxn(out *strings.Builder, indent string, r *pb.TxnResponse) {
	fmt.Fprintf(out, "%stxn succeeded=%v rev=%d\n", indent, r.Succeeded, r.Header.GetRevision())
	for _, op := range r.Responses {
		switch x := op.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			writeRange(out, indent+"  ", x.ResponseRange)
		case *pb.ResponseOp_ResponsePut:
			fmt.Fprintf(out, "%s  put rev=%d\n", indent, x.ResponsePut.Header.GetRevision())
			writePrev(out, indent+"  ", x.ResponsePut.PrevKv)
		case *pb.ResponseOp_ResponseDeleteRange:
			writeDelete(out, indent+"  ", x.ResponseDeleteRange)
		case *pb.ResponseOp_ResponseTxn:
			writeTxn(out, indent+"  ", x.ResponseTxn)
		}
	}
}

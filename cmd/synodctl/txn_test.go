package main

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func txnServer(succeeded bool, responses ...*pb.ResponseOp) *fakeServer {
	return &fakeServer{txnResp: &clientv3.TxnResponse{Header: testHeader(), Succeeded: succeeded, Responses: responses}}
}

func putResponseOp() *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: testHeader()}}}
}

func rangeResponseOp(count int64, kvs ...*kvT) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: testHeader(), Kvs: kvs, Count: count}}}
}

func deleteResponseOp(n int64, prev ...*kvT) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: testHeader(), Deleted: n, PrevKvs: prev}}}
}

func TestTxnCommandSendsParsedTransaction(t *testing.T) {
	s := txnServer(true, putResponseOp(), rangeResponseOp(1, kv("k2", "v2")))
	r := runWith(s, nil, "mod(\"k1\") > \"0\"\n\nput k1 v1\nget k2\n\ndel k1\n", "txn")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if len(s.txns) != 1 {
		t.Fatalf("%d transactions sent, want 1", len(s.txns))
	}
	got := describeTxn(&txnRequest{compares: s.txns[0].cmps, success: s.txns[0].thens, failure: s.txns[0].elses})
	want := "if MOD(\"k1\") GREATER 0\nthen put \"k1\" val=\"v1\"\nthen get \"k2\"\nelse del \"k1\""
	if got != want {
		t.Errorf("sent:\n%s\nwant:\n%s", got, want)
	}
	if wantOut := "SUCCESS\n\nOK\n\nk2\nv2\n"; r.stdout != wantOut {
		t.Errorf("stdout %q, want %q", r.stdout, wantOut)
	}
}

func TestTxnCommandOutput(t *testing.T) {
	tests := []struct {
		name  string
		s     *fakeServer
		stdin string
		args  []string
		want  string
	}{
		{"failure with delete", txnServer(false, deleteResponseOp(1, kv("k", "v"))), "value(\"k\") = \"x\"\n\nput k x\n\ndel k --prev-kv\n", nil,
			"FAILURE\n\n1\nk\nv\n"},
		{"count-only and keys-only gets", txnServer(true, rangeResponseOp(7), rangeResponseOp(2, &kvT{Key: []byte("a")}, &kvT{Key: []byte("b")})), "\nget --count-only a z\nget --keys-only a z\n", nil,
			"SUCCESS\n\n7\n\na\nb\n"},
		{"empty transaction", txnServer(true), "", nil, "SUCCESS\n"},
		{"hex", txnServer(true, rangeResponseOp(1, kv("k", "v"))), "\nget k\n", []string{"--hex"}, "SUCCESS\n\n\\x6b\n\\x76\n"},
		{"json", txnServer(true, putResponseOp()), "\nput k v\n", []string{"-w", "json"},
			`{"header":{"cluster_id":193,"member_id":161,"revision":5,"raft_term":2},"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"cluster_id":193,"member_id":161,"revision":5,"raft_term":2}}}}]}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(tt.s, nil, tt.stdin, append([]string{"txn"}, tt.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if r.stdout != tt.want {
				t.Errorf("stdout %q\nwant   %q", r.stdout, tt.want)
			}
		})
	}
}

func TestTxnCommandInteractivePromptsOnStderr(t *testing.T) {
	s := txnServer(true, putResponseOp())
	r := runWith(s, nil, "\nput k v\n\n\n", "txn", "-i")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "compares:") || !strings.Contains(r.stderr, "failure requests (get, put, del):") {
		t.Errorf("prompts missing from stderr: %q", r.stderr)
	}
	if r.stdout != "SUCCESS\n\nOK\n" {
		t.Errorf("stdout %q: prompts must not mix with the result", r.stdout)
	}
}

func TestTxnCommandErrors(t *testing.T) {
	s := txnServer(true)
	r := runWith(s, nil, "\nfrob\n", "txn")
	if r.code != exitError || !strings.Contains(r.stderr, `line 2 (success requests): unknown request "frob"`) {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if len(s.dials) != 0 {
		t.Errorf("a malformed transaction was sent")
	}
	runFail(t, s, "txn takes no arguments", "txn", "extra")
}

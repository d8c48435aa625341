package kvapply

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/mvcc"
)

// benchStore returns a store holding n keys "key/%08d" with 128-byte
// values.
func benchStore(b *testing.B, n int) (*mvcc.Store, [][]byte) {
	s := openStore(b)
	keys := make([][]byte, n)
	val := make([]byte, 128)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key/%08d", i))
		if _, _, err := s.Put(0, keys[i], val, 0, mvcc.PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return s, keys
}

// BenchmarkPut measures a Put applied through kvapply (one Store.Write per
// request, as the apply loop does), next to the bare store call, so the
// cost kvapply adds is visible.
func BenchmarkPut(b *testing.B) {
	const n = 1000
	val := make([]byte, 128)
	b.Run("kvapply", func(b *testing.B) {
		s, keys := benchStore(b, n)
		reqs := make([]pb.PutRequest, n)
		for i := range reqs {
			reqs[i].Key, reqs[i].Value = keys[i], val
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			req := &reqs[i%n]
			if _, _, err := s.Write(0, func(tx *mvcc.WriteTxn) error {
				_, err := Put(tx, req, nil)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kvapply-prevkv", func(b *testing.B) {
		s, keys := benchStore(b, n)
		reqs := make([]pb.PutRequest, n)
		for i := range reqs {
			reqs[i].Key, reqs[i].Value, reqs[i].PrevKv = keys[i], val, true
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			req := &reqs[i%n]
			if _, _, err := s.Write(0, func(tx *mvcc.WriteTxn) error {
				_, err := Put(tx, req, nil)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mvcc", func(b *testing.B) {
		s, keys := benchStore(b, n)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, _, err := s.Write(0, func(tx *mvcc.WriteTxn) error {
				_, err := tx.Put(keys[i%n], val, 0, mvcc.PutOptions{})
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRange measures a one-key Range (the common Get), through
// kvapply and bare, and a 10-key prefix read.
func BenchmarkRange(b *testing.B) {
	const n = 1000
	s, keys := benchStore(b, n)
	reqs := make([]pb.RangeRequest, n)
	for i := range reqs {
		reqs[i].Key = keys[i]
	}
	b.Run("kvapply-one-key", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			resp, err := Range(s, &reqs[i%n])
			if err != nil || len(resp.Kvs) != 1 {
				b.Fatal(resp, err)
			}
		}
	})
	b.Run("mvcc-one-key", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			res, err := s.Range(keys[i%n], nil, mvcc.RangeOptions{})
			if err != nil || len(res.KVs) != 1 {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("kvapply-prefix-10", func(b *testing.B) {
		req := &pb.RangeRequest{Key: []byte("key/0000010"), RangeEnd: []byte("key/0000011")}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			resp, err := Range(s, req)
			if err != nil || len(resp.Kvs) != 10 {
				b.Fatal(resp, err)
			}
		}
	})
}

// BenchmarkTxnCAS measures the compare-and-swap transaction Kubernetes
// issues for every update: if mod_revision(k) == r then put k else get k.
// The compare holds (the benchmark tracks each key's mod revision).
func BenchmarkTxnCAS(b *testing.B) {
	const n = 1000
	s, keys := benchStore(b, n)
	mods := make([]int64, n)
	for i := range keys {
		res, err := s.Range(keys[i], nil, mvcc.RangeOptions{KeysOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		mods[i] = res.KVs[0].ModRevision
	}
	// Requests are built once: building them is the client's cost.
	val := make([]byte, 128)
	operands := make([]*pb.Compare_ModRevision, n)
	reqs := make([]*pb.TxnRequest, n)
	for k := range reqs {
		operands[k] = &pb.Compare_ModRevision{ModRevision: mods[k]}
		reqs[k] = &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: keys[k], Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: operands[k]}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: keys[k], Value: val}}}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: keys[k]}}}},
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % n
		req := reqs[k]
		if err := ValidateTxn(req, Limits{}); err != nil {
			b.Fatal(err)
		}
		var resp *pb.TxnResponse
		rev, _, err := s.Write(0, func(tx *mvcc.WriteTxn) error {
			var err error
			resp, err = Txn(tx, req, nil)
			return err
		})
		if err != nil || !resp.Succeeded {
			b.Fatal(err)
		}
		operands[k].ModRevision = rev
	}
}

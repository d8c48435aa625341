package mvcc

import (
	"fmt"
	"testing"
)

// BenchmarkPut measures one Put (one revision, one batch) into stores of
// growing key counts and history lengths: the cost must stay flat.
func BenchmarkPut(b *testing.B) {
	for _, keys := range []int{100, 10000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			s, _ := openTest(b)
			val := make([]byte, 128)
			for i := 0; i < keys; i++ {
				s.Put(0, []byte(fmt.Sprintf("key/%08d", i)), val, 0, PutOptions{})
			}
			kbuf := make([][]byte, keys)
			for i := range kbuf {
				kbuf[i] = []byte(fmt.Sprintf("key/%08d", i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := s.Put(uint64(i+1), kbuf[i%keys], val, 0, PutOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGroupPut measures a put applied in a WriteGroup of n puts
// (one Pebble commit for n raft entries, as the server applies a Ready)
// against n=1, one commit per put.
func BenchmarkGroupPut(b *testing.B) {
	const keys = 10000
	kbuf := make([][]byte, keys)
	for i := range kbuf {
		kbuf[i] = []byte(fmt.Sprintf("key/%08d", i))
	}
	val := make([]byte, 256)
	for _, n := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("group=%d", n), func(b *testing.B) {
			s, _ := openTest(b)
			b.ReportAllocs()
			b.ResetTimer()
			putInGroups(b, s, kbuf, val, n)
		})
	}
}

// putInGroups applies b.N puts, one raft entry each, in write groups of
// n (one Pebble commit per group, as the server applies a Ready); put i
// writes keys[i mod len(keys)].
func putInGroups(b *testing.B, s *Store, keys [][]byte, val []byte, n int) {
	for i := 0; i < b.N; {
		g, err := s.Group()
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < n && i < b.N; j++ {
			i++
			if _, _, err := g.Write(uint64(i), func(tx *WriteTxn) error {
				_, err := tx.Put(keys[i%len(keys)], val, 0, PutOptions{})
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
		if err := g.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRange reads one key, and a 10-key prefix, from a store where
// every key has a long history; the cost must not depend on the history.
func BenchmarkRange(b *testing.B) {
	for _, history := range []int{1, 100} {
		s, _ := openTest(b)
		val := make([]byte, 128)
		for h := 0; h < history; h++ {
			s.Write(0, func(tx *WriteTxn) error {
				for i := 0; i < 1000; i++ {
					tx.Put([]byte(fmt.Sprintf("key/%04d", i)), val, 0, PutOptions{})
				}
				return nil
			})
		}
		b.Run(fmt.Sprintf("single/history=%d", history), func(b *testing.B) {
			key := []byte("key/0500")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if res, err := s.Range(key, nil, RangeOptions{}); err != nil || len(res.KVs) != 1 {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("prefix10/history=%d", history), func(b *testing.B) {
			key, end := []byte("key/050"), []byte("key/051")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if res, err := s.Range(key, end, RangeOptions{}); err != nil || len(res.KVs) != 10 {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("oldrev/history=%d", history), func(b *testing.B) {
			key := []byte("key/0500")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if res, err := s.Range(key, nil, RangeOptions{Rev: 2}); err != nil || len(res.KVs) != 1 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkForEachLeasedKey walks the live keys of a store with 100,000
// keys (one in ten leased, each with a few versions), as a restarting
// member does to rebuild its lease attachments.
func BenchmarkForEachLeasedKey(b *testing.B) {
	s, _ := openTest(b)
	const keys = 100000
	val := make([]byte, 64)
	for range 3 {
		err := func() error {
			_, _, err := s.Write(0, func(tx *WriteTxn) error {
				for i := range keys {
					lease := int64(0)
					if i%10 == 0 {
						lease = int64(1 + i%7)
					}
					if _, err := tx.Put([]byte(fmt.Sprintf("key/%08d", i)), val, lease, PutOptions{}); err != nil {
						return err
					}
				}
				return nil
			})
			return err
		}()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := s.ForEachLeasedKey(func([]byte, int64) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != keys/10 {
			b.Fatalf("%d leased keys, want %d", n, keys/10)
		}
	}
}

// BenchmarkSustainedPut writes 256-byte values over 100,000 keys in key
// order, in groups of 64 as the server applies them, for long enough that
// Pebble flushes and compacts: what a put costs once the history no longer
// fits in memory. It reports the bytes Pebble wrote to tables per put
// (flushes plus compactions: the write amplification of the layout).
func BenchmarkSustainedPut(b *testing.B) {
	const keys, group = 100000, 64
	kbuf := make([][]byte, keys)
	for i := range kbuf {
		kbuf[i] = []byte(fmt.Sprintf("%08d", i))
	}
	val := make([]byte, 256)
	s, _ := openTest(b)
	b.ReportAllocs()
	b.ResetTimer()
	putInGroups(b, s, kbuf, val, group)
	b.StopTimer()
	m := s.db.Metrics().Total()
	b.ReportMetric(float64(m.TableBytesFlushed+m.TableBytesCompacted)/float64(b.N), "table-B/put")
}

package wal

import (
	"fmt"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// BenchmarkSave measures persisting Readys of batch entries of 128 bytes
// with one fdatasync each (group commit of one Ready), on the real file
// system; ns/op and allocs/op are per entry.
func BenchmarkSave(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			w, err := Create(b.TempDir(), nil, Options{Logger: quiet()})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			ents := make([]pb.Entry, batch)
			data := make([]byte, 128)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			idx := uint64(1)
			for done := 0; done < b.N; done += batch {
				for i := range ents {
					ents[i] = pb.Entry{Index: idx, Term: 1, Data: data}
					idx++
				}
				if err := w.Save(pb.HardState{Term: 1, Commit: idx - 1}, ents, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSaveConcurrent measures group commit: many goroutines each save
// one entry with sync, and share fdatasyncs. ns/op is per entry.
func BenchmarkSaveConcurrent(b *testing.B) {
	w, err := Create(b.TempDir(), nil, Options{Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	data := make([]byte, 128)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb2 *testing.PB) {
		ent := []pb.Entry{{Index: 1, Term: 1, Data: data}}
		for pb2.Next() {
			if err := w.Save(pb.HardState{}, ent, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

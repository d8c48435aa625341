package snap

import (
	"fmt"
	"io"
	"testing"
)

var benchSizes = []int64{4 << 10, 1 << 20, 16 << 20}

// BenchmarkSave measures a durable save, fsyncs included, streaming from a
// generator so that only the snapshotter's own allocations count.
func BenchmarkSave(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := open(b, b.TempDir(), Options{MaxSnapshots: 2})
			meta := testMeta(1, 1)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				meta.Index++
				if err := s.SaveFrom(meta, newPatternReader(size)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoad measures choosing, validating and streaming the newest
// snapshot, which reads the file twice (validation, then the data).
func BenchmarkLoad(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := open(b, b.TempDir(), Options{})
			if err := s.SaveFrom(testMeta(1, 1), newPatternReader(size)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				_, r, err := s.LoadNewest()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

package logstore

import (
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/synod-db/synod/diskfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// countingFS counts the opens of WAL files for reading (not the
// preparation of the next segment, which runs in the background) and the
// bytes read from them.
type countingFS struct {
	diskfs.FS
	opens, bytesRead atomic.Int64
}

func (c *countingFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := c.FS.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	c.opens.Add(1)
	return countingFile{f, c}, nil
}

type countingFile struct {
	vfs.File
	c *countingFS
}

func (f countingFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.c.bytesRead.Add(int64(n))
	return n, err
}

func (f countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.c.bytesRead.Add(int64(n))
	return n, err
}

// TestTermNeverReadsTheDisk checks the invariant that keeps a lagging
// follower from stalling the leader: raft asks Term on its own goroutine
// for every append and rejection, and it must be answered from memory for
// every entry of the log, cached or not, before and after a restart, and
// across terms. Reading entries that left the cache must read about what
// was asked, not whole segments.
func TestTermNeverReadsTheDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	fs := &countingFS{FS: diskfs.Default}
	o := opts(64 << 10)
	o.WAL.FS = fs
	o.WAL.SegmentSize = 1 << 20
	snaps := &memSnaps{}
	s, _, err := Open(dir, snaps, nil, o)
	must(t, err)
	const valueSize = 10 << 10
	var all []pb.Entry
	for i := uint64(1); i <= 600; i++ {
		e := pb.Entry{Index: i, Term: 1 + i/100, Data: make([]byte, valueSize)}
		e.Data[0] = byte(i)
		all = append(all, e)
		must(t, s.Save(pb.HardState{Term: e.Term, Commit: i}, []pb.Entry{e}, i%50 == 0))
	}
	check := func(when string) {
		t.Helper()
		opens, read := fs.opens.Load(), fs.bytesRead.Load()
		for _, e := range all {
			if got, err := s.Term(e.Index); err != nil || got != e.Term {
				t.Fatalf("%s: Term(%d) = %d, %v; want %d", when, e.Index, got, err, e.Term)
			}
		}
		if d, r := fs.opens.Load()-opens, fs.bytesRead.Load()-read; d != 0 || r != 0 {
			t.Fatalf("%s: Term over the whole log opened %d WAL files and read %d bytes; it must answer from memory", when, d, r)
		}
		// The oldest entry left the cache long ago: reading it reads its
		// record, not the segment of several MB it sits in.
		got, err := s.Entries(1, 2, ^uint64(0))
		must(t, err)
		if len(got) != 1 || got[0].Data[0] != 1 {
			t.Fatalf("%s: Entries(1, 2) = %v", when, got)
		}
		if r := fs.bytesRead.Load() - read; r > 2*valueSize {
			t.Fatalf("%s: reading one entry of %d bytes read %d bytes of WAL files", when, valueSize, r)
		}
	}
	check("running")
	must(t, s.Close())
	s, _, err = Open(dir, snaps, nil, o)
	must(t, err)
	defer s.Close()
	s.mu.Lock()
	cached := s.cacheBytes
	s.mu.Unlock()
	if cached > o.CacheBytes+valueSize {
		t.Fatalf("after a restart the cache holds %d bytes, above its bound %d", cached, o.CacheBytes)
	}
	check("after a restart")
}

package mvcc

import (
	"errors"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fullFile fails writes and syncs with ENOSPC and records preallocations.
type fullFile struct {
	vfs.File
	prealloc [][2]int64
}

func (f *fullFile) Write(p []byte) (int, error)            { return 0, syscall.ENOSPC }
func (f *fullFile) WriteAt(p []byte, _ int64) (int, error) { return 0, syscall.ENOSPC }
func (f *fullFile) Sync() error                            { return syscall.ENOSPC }
func (f *fullFile) Preallocate(off, n int64) error {
	f.prealloc = append(f.prealloc, [2]int64{off, n})
	return nil
}

// TestDiskFSReportsNoSpaceAndCapsReserve checks the two jobs of the key
// space's file system wrapper: a write or sync failing with ENOSPC is
// reported with the file's name before the error goes on, other errors
// are not, and a file reserves at most a 64th of the file system ahead.
func TestDiskFSReportsNoSpaceAndCapsReserve(t *testing.T) {
	var reported []string
	fs := newNoSpaceFS(vfs.NewMem(), 64<<20, func(path string, err error) {
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("reported %v, not ENOSPC", err)
		}
		reported = append(reported, path)
	}).(*noSpaceFS)
	inner := &fullFile{}
	f := &diskFile{File: inner, fs: fs, path: "/db/000007.log"}
	if _, err := f.Write([]byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write: %v, want ENOSPC passed on", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync: %v, want ENOSPC passed on", err)
	}
	if len(reported) != 2 || reported[0] != "/db/000007.log" {
		t.Fatalf("reported %q, want the file twice", reported)
	}
	if err := fs.check("/db/x", syscall.EIO); !errors.Is(err, syscall.EIO) || len(reported) != 2 {
		t.Fatalf("EIO was reported as a full disk (%v, %q)", err, reported)
	}
	// 64 MiB file system: at most 1 MiB reserved per file.
	f.Preallocate(0, 8<<20)
	f.Preallocate(512<<10, 8<<20)
	f.Preallocate(1<<20, 8<<20)
	if want := [][2]int64{{0, 1 << 20}, {512 << 10, 512 << 10}}; len(inner.prealloc) != 2 || inner.prealloc[0] != want[0] || inner.prealloc[1] != want[1] {
		t.Fatalf("preallocations %v, want %v", inner.prealloc, want)
	}
}

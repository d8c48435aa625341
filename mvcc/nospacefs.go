package mvcc

import (
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// noSpaceFS is the key space's file system as Pebble sees it: it reports
// the first write that fails for lack of space to fn, with the file's
// name, before Pebble sees the error, and it caps how much of a file
// Pebble reserves ahead of writing it.
//
// Why the cap: Pebble reserves 110% of the memtable size for every log
// file it starts, and keeps several (queued memtables, recycled logs):
// 45 MiB of a 96 MiB disk before a single table was written. Reserving
// only the start of each file leaves the rest of a small disk to data;
// the reserve only saves allocations on write.
//
// Why the handler:
// Why: Pebble cannot carry on after some failed writes. A failed write or
// sync of its log panics inside its WAL rotation with its mutex released,
// and the deferred unlock then kills the process with "sync: unlock of
// unlocked mutex", which hides the cause; a failed flush is retried
// forever, silently, at full CPU (a member restarted on a full disk
// spun so). The server's fn logs one line naming the file and "no space
// left on device" and ends the process (see server.Config.Exit), which is
// safe: the raft log holds everything acknowledged, and Pebble recovers
// to its last synced state.
type noSpaceFS struct {
	vfs.FS
	fn          func(path string, err error)
	maxPrealloc int64
}

// newNoSpaceFS wraps fs, a file system of size bytes: fn (if not nil) hears
// of ENOSPC, and no file has more than a sixty-fourth of it reserved
// ahead.
func newNoSpaceFS(fs vfs.FS, size int64, fn func(path string, err error)) vfs.FS {
	return &noSpaceFS{FS: fs, fn: fn, maxPrealloc: size / 64}
}

func (fs *noSpaceFS) check(path string, err error) error {
	if err != nil && fs.fn != nil && vfs.IsNoSpaceError(err) {
		fs.fn(path, err)
	}
	return err
}

func (fs *noSpaceFS) wrap(path string, f vfs.File, err error) (vfs.File, error) {
	if err := fs.check(path, err); err != nil {
		return nil, err
	}
	return &diskFile{File: f, fs: fs, path: path}, nil
}

// Create implements vfs.FS.
func (fs *noSpaceFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

// OpenReadWrite implements vfs.FS.
func (fs *noSpaceFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

// ReuseForWrite implements vfs.FS.
func (fs *noSpaceFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

// Link implements vfs.FS.
func (fs *noSpaceFS) Link(oldname, newname string) error {
	return fs.check(newname, fs.FS.Link(oldname, newname))
}

// Rename implements vfs.FS.
func (fs *noSpaceFS) Rename(oldname, newname string) error {
	return fs.check(newname, fs.FS.Rename(oldname, newname))
}

// MkdirAll implements vfs.FS.
func (fs *noSpaceFS) MkdirAll(dir string, perm os.FileMode) error {
	return fs.check(dir, fs.FS.MkdirAll(dir, perm))
}

// Unwrap implements vfs.FS.
func (fs *noSpaceFS) Unwrap() vfs.FS { return fs.FS }

// diskFile checks every write-side result of a file but Preallocate,
// whose failure Pebble ignores (the writes may still fit), and caps that.
type diskFile struct {
	vfs.File
	fs   *noSpaceFS
	path string
}

func (f *diskFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.fs.check(f.path, err)
}

func (f *diskFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.fs.check(f.path, err)
}

func (f *diskFile) Preallocate(off, n int64) error {
	if off >= f.fs.maxPrealloc {
		return nil
	}
	return f.File.Preallocate(off, min(n, f.fs.maxPrealloc-off))
}

func (f *diskFile) Sync() error { return f.fs.check(f.path, f.File.Sync()) }

func (f *diskFile) SyncData() error { return f.fs.check(f.path, f.File.SyncData()) }

func (f *diskFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, f.fs.check(f.path, err)
}

// Package diskfs is the one file-system interface that every durable byte
// of a member goes through: the raft log (package wal), raft snapshots
// (package snap, including those received from a leader) and the key
// space (Pebble, via package mvcc). One interface means one place to
// substitute a disk: Default is the operating system's, and MemFS models
// what a power loss keeps, so that a crash test loses the log, the
// snapshot files and the key space at one instant, as a real power loss
// would.
//
// FS is Pebble's vfs.FS, which the key space needs anyway, plus the one
// operation the WAL needs that vfs.FS lacks: truncating a file.
package diskfs

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FS is a file system for a member's data.
type FS interface {
	vfs.FS
	// Truncate changes the size of the named file. Like a write, the new
	// size is durable once the file is synced.
	Truncate(name string, size int64) error
}

// Default is the operating system's file system.
var Default FS = osFS{FS: vfs.Default}

// ErrLocked is returned by Lock when another process (or another user in
// this one) holds the lock.
var ErrLocked = errors.New("the directory is locked by another process")

// osFS is vfs.Default with truncation, and with a lock that conflicts
// across processes and within one alike.
type osFS struct{ vfs.FS }

// Truncate implements FS.
func (osFS) Truncate(name string, size int64) error { return os.Truncate(name, size) }

// Unwrap implements vfs.FS.
func (fs osFS) Unwrap() vfs.FS { return fs.FS }

type flockCloser struct{ f *os.File }

func (l flockCloser) Close() error {
	// Closing the descriptor releases the flock.
	return l.f.Close()
}

// Lock implements vfs.FS with flock(2). Unlike the fcntl(2) lock of
// vfs.Default, a flock belongs to the open file, so that closing some
// other descriptor of the file does not release it, and the kernel still
// releases it when the process dies: a crash never leaves a stale lock.
func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s; stop the other synod using %s first", ErrLocked, name, filepath.Dir(name))
		}
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	return flockCloser{f}, nil
}

// SyncDir makes the creations, renames and removals in dir durable.
func SyncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// List returns the names of the entries of dir, sorted.
func List(fs vfs.FS, dir string) ([]string, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// Size returns the size of the file system holding dir (or its nearest
// existing parent), or the largest int64 when it is unknown (a file system
// in memory).
func Size(fs vfs.FS, dir string) int64 {
	for {
		du, err := fs.GetDiskUsage(dir)
		if err == nil && du.TotalBytes > 0 {
			return int64(min(du.TotalBytes, math.MaxInt64))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return math.MaxInt64
		}
		dir = parent
	}
}

// NoSync wraps fs so that no sync reaches the disk: files' Sync,
// SyncData and SyncTo, directory syncs included, return at once. It is
// etcd's --unsafe-no-fsync, for tests and throwaway clusters only: a
// power loss then loses acknowledged writes, and may leave a log that
// does not match the key space.
func NoSync(fs FS) FS { return noSyncFS{fs} }

type noSyncFS struct{ FS }

func (fs noSyncFS) Unwrap() vfs.FS { return fs.FS }

func (fs noSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return noSyncFile(fs.FS.Create(name, c))
}

func (fs noSyncFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return noSyncFile(fs.FS.Open(name, opts...))
}

func (fs noSyncFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return noSyncFile(fs.FS.OpenReadWrite(name, c, opts...))
}

func (fs noSyncFS) OpenDir(name string) (vfs.File, error) { return noSyncFile(fs.FS.OpenDir(name)) }

func (fs noSyncFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return noSyncFile(fs.FS.ReuseForWrite(oldname, newname, c))
}

func noSyncFile(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return unsyncedFile{f}, nil
}

// unsyncedFile is a file whose syncs do nothing.
type unsyncedFile struct{ vfs.File }

func (unsyncedFile) Sync() error                { return nil }
func (unsyncedFile) SyncData() error            { return nil }
func (unsyncedFile) SyncTo(int64) (bool, error) { return true, nil }

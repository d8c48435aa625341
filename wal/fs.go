package wal

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// FS is the file system the WAL writes to. The operating system's is OSFS;
// tests substitute one that loses unsynced writes to simulate power loss.
type FS interface {
	// OpenFile opens a file as os.OpenFile does.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Rename renames a file; it is durable once the directory is synced.
	Rename(oldpath, newpath string) error
	// Remove removes a file; it is durable once the directory is synced.
	Remove(name string) error
	// ReadDir lists the names of the entries of dir, sorted.
	ReadDir(dir string) ([]string, error)
	// MkdirAll creates dir and its parents.
	MkdirAll(dir string, perm os.FileMode) error
	// SyncDir makes creations, renames and removals in dir durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock on the named file (creating it), failing
	// at once if another process holds it.
	Lock(name string) (io.Closer, error)
}

// File is an open file of an FS.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Seeker
	io.Closer
	// Sync makes the file's data durable (fdatasync).
	Sync() error
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Size returns the file's size.
	Size() (int64, error)
	// Preallocate reserves size bytes on disk without changing the file's
	// size, so that later appends need no allocation; where the file
	// system cannot, it does nothing.
	Preallocate(size int64) error
}

// fsSize returns the size of the file system holding dir (or of its
// nearest existing parent), or the largest int64 when fs is not the
// operating system's or the size is unknown.
func fsSize(fs FS, dir string) int64 {
	if _, ok := fs.(OSFS); !ok {
		return math.MaxInt64
	}
	for {
		var st syscall.Statfs_t
		err := syscall.Statfs(dir, &st)
		if err == nil {
			return int64(st.Blocks) * int64(st.Bsize)
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, syscall.ENOENT) || parent == dir {
			return math.MaxInt64
		}
		dir = parent
	}
}

// OSFS is the operating system's file system.
type OSFS struct{}

// ErrLocked is returned when another process holds the WAL directory's lock.
var ErrLocked = errors.New("wal: directory is locked by another process")

type osFile struct{ *os.File }

func (f osFile) Sync() error { return syncData(f.File) }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (f osFile) Preallocate(size int64) error {
	// Mode 1 is FALLOC_FL_KEEP_SIZE: reserve blocks, leave the size alone.
	err := syscall.Fallocate(int(f.Fd()), 1, 0, size)
	if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EINTR) {
		return nil
	}
	return err
}

// syncData flushes a file's data with fdatasync, which skips metadata that
// reading the data back does not need.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Rename implements FS.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type flockCloser struct{ f *os.File }

func (l flockCloser) Close() error {
	// Closing the descriptor releases the flock.
	return l.f.Close()
}

// Lock implements FS with flock(2), which the kernel releases when the
// process dies, so a crash never leaves a stale lock.
func (OSFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s; stop the other synod using %s first", ErrLocked, name, filepath.Dir(name))
		}
		return nil, fmt.Errorf("wal: locking %s: %w", name, err)
	}
	return flockCloser{f}, nil
}

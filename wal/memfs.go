package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
)

// MemFS is an in-memory FS that models what a power loss keeps, for tests
// that crash the WAL (or a whole member) at random points and check what
// survives. The model of the disk:
//   - Each file (inode) has its current bytes and its synced bytes; File.Sync
//     makes the current bytes durable.
//   - After a power loss a file holds its synced bytes overwritten by a prefix
//     (cut at any byte) of what was written since, starting where the
//     unsynced writes start: the last write torn at any byte. Where the file
//     grew, the rest may read as zeros (its new size reached the disk, its
//     data did not), as preallocated blocks do.
//   - The directory has its current entries and its synced ones; SyncDir makes
//     creations, renames and removals durable. After a power loss the
//     directory is the synced entries, plus (in half of the crashes) a prefix
//     of the operations done since, in order, as a journaling file system may
//     commit them without being asked.
//   - Directories created by MkdirAll are durable at once.
//
// A crash can be taken at any moment with Crash, or armed to happen before
// the n-th mutating operation: the image is taken then and the file system
// "loses power": every later operation fails with errPowerLost, so nothing
// done afterwards can be mistaken for durable.

// errPowerLost is returned by every operation of a MemFS after its power loss.
var errPowerLost = errors.New("memfs: power lost")

// memInode is a file's contents.
type memInode struct {
	data   []byte
	synced []byte
	// dirtyFrom is the lowest offset changed since the last Sync, or -1.
	dirtyFrom int
	prealloc  int64
}

func (n *memInode) dirty(from int) {
	if n.dirtyFrom < 0 || from < n.dirtyFrom {
		n.dirtyFrom = from
	}
}

func (n *memInode) writeAt(p []byte, off int) {
	old := len(n.data)
	n.dirty(min(off, old))
	if end := off + len(p); end > old {
		n.data = append(n.data, make([]byte, end-old)...)
	}
	copy(n.data[off:], p)
}

func (n *memInode) truncate(size int) {
	old := len(n.data)
	n.dirty(min(size, old))
	if size <= old {
		n.data = n.data[:size]
	} else {
		n.data = append(n.data, make([]byte, size-old)...)
	}
}

// crashImage returns what a power loss leaves of the file.
func (n *memInode) crashImage(rng *rand.Rand) []byte {
	if n.dirtyFrom < 0 {
		return bytes.Clone(n.synced)
	}
	// dirtyFrom never exceeds the synced length: the first change after a
	// sync starts at or before the end of the file.
	from := n.dirtyFrom
	cut := from + rng.IntN(len(n.data)-from+1)
	img := append(bytes.Clone(n.synced[:from]), n.data[from:cut]...)
	if len(n.synced) > cut {
		// The torn write did not reach these bytes: they keep their old
		// contents.
		img = append(img, n.synced[cut:]...)
	} else if len(n.data) > cut && rng.IntN(2) == 0 {
		// The new size reached the disk, the data did not.
		img = append(img, make([]byte, 1+rng.IntN(len(n.data)-cut))...)
	}
	return img
}

// memDirOp is a directory operation not yet made durable by SyncDir.
type memDirOp struct {
	op       string // "create", "rename" or "remove"
	name, to string
	ino      *memInode
}

// MemFS implements FS in memory with the power-loss model above. Its
// methods are safe for concurrent use.
type MemFS struct {
	mu      sync.Mutex
	rng     *rand.Rand // for crashes taken by an armed trigger
	dirs    map[string]bool
	files   map[string]*memInode // what the running system sees
	durable map[string]*memInode // what the disk's directory holds
	pending []memDirOp           // since the last SyncDir, in order
	locks   map[string]bool

	// ops counts mutating operations; crashAt, when positive, is the
	// operation before which the power fails; crashIf, when set, is
	// asked before each mutating operation.
	ops     int
	crashAt int
	crashIf func(op, name string) bool
	// keepDirOps, when not negative, is how many pending directory
	// operations a crash keeps; negative means random.
	keepDirOps int

	dead    bool
	off     bool   // PowerOff: changes fail, reads still work
	image   *MemFS // what the power loss left
	crashOp string // the operation the power loss interrupted
}

// NewMemFS returns an empty MemFS; rng decides what crashes armed by the
// WAL's own tests keep.
func NewMemFS(rng *rand.Rand) *MemFS {
	return &MemFS{
		rng:        rng,
		dirs:       map[string]bool{"/": true},
		files:      map[string]*memInode{},
		durable:    map[string]*memInode{},
		locks:      map[string]bool{},
		keepDirOps: -1,
	}
}

// arm makes the power fail before the n-th mutating operation from now.
func (fs *MemFS) arm(n int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.crashAt = fs.ops + n
}

// disarm cancels an armed crash that has not happened.
func (fs *MemFS) disarm() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.crashAt = 0
}

// powerLost reports whether an armed crash happened, and its image.
func (fs *MemFS) powerLost() (bool, *MemFS) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.dead, fs.image
}

// step is called, with mu held, before each mutating operation.
func (fs *MemFS) step(op, name string) error {
	if fs.dead || fs.off {
		return errPowerLost
	}
	fs.ops++
	if (fs.crashAt > 0 && fs.ops >= fs.crashAt) || (fs.crashIf != nil && fs.crashIf(op, name)) {
		fs.image = fs.crashLocked(fs.rng)
		fs.crashOp = op + " " + filepath.Base(name)
		fs.dead = true
		return errPowerLost
	}
	return nil
}

// Crash returns the file system as a power loss now would leave it: what
// was synced, the last unsynced write torn at a random byte, and maybe some
// unsynced directory operations, in order. The receiver is unchanged.
func (fs *MemFS) Crash(rng *rand.Rand) *MemFS {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.crashLocked(rng)
}

// PowerOff returns what a power loss now leaves, as Crash does, and makes
// every later change to the receiver fail with an error, so that the
// program still running on it cannot make anything more durable (or
// acknowledge anything on the strength of it). Reads go on working, so
// that the program fails cleanly rather than on a missing file.
func (fs *MemFS) PowerOff(rng *rand.Rand) *MemFS {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.off = true
	return fs.crashLocked(rng)
}

func (fs *MemFS) crashLocked(rng *rand.Rand) *MemFS {
	names := maps.Clone(fs.durable)
	keep := 0
	switch {
	case fs.keepDirOps >= 0:
		keep = min(fs.keepDirOps, len(fs.pending))
	case rng.IntN(2) == 0:
		keep = rng.IntN(len(fs.pending) + 1)
	}
	for _, op := range fs.pending[:keep] {
		switch op.op {
		case "create":
			names[op.name] = op.ino
		case "rename":
			if ino, ok := names[op.name]; ok {
				delete(names, op.name)
				names[op.to] = ino
			}
		case "remove":
			delete(names, op.name)
		}
	}
	img := NewMemFS(rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
	img.dirs = maps.Clone(fs.dirs)
	sorted := slices.Sorted(maps.Keys(names))
	for _, name := range sorted {
		data := names[name].crashImage(rng)
		ino := &memInode{data: data, synced: bytes.Clone(data), dirtyFrom: -1}
		img.files[name] = ino
		img.durable[name] = ino
	}
	return img
}

// names lists the files of dir as the running system sees them.
func (fs *MemFS) names(dir string) []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []string
	for name := range fs.files {
		if filepath.Dir(name) == dir {
			out = append(out, filepath.Base(name))
		}
	}
	sort.Strings(out)
	return out
}

func notExist(op, name string) error {
	return &iofs.PathError{Op: op, Path: name, Err: iofs.ErrNotExist}
}

// OpenFile implements FS.
func (fs *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return nil, errPowerLost
	}
	name = filepath.Clean(name)
	ino, ok := fs.files[name]
	switch {
	case !ok:
		if flag&os.O_CREATE == 0 || !fs.dirs[filepath.Dir(name)] {
			return nil, notExist("open", name)
		}
		if err := fs.step("create", name); err != nil {
			return nil, err
		}
		ino = &memInode{dirtyFrom: -1}
		fs.files[name] = ino
		fs.pending = append(fs.pending, memDirOp{op: "create", name: name, ino: ino})
	case flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &iofs.PathError{Op: "open", Path: name, Err: iofs.ErrExist}
	case flag&os.O_TRUNC != 0:
		if err := fs.step("truncate", name); err != nil {
			return nil, err
		}
		ino.truncate(0)
	}
	return &memFile{fs: fs, ino: ino, name: name, writable: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

// Rename implements FS.
func (fs *MemFS) Rename(oldpath, newpath string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	oldpath, newpath = filepath.Clean(oldpath), filepath.Clean(newpath)
	if fs.dead {
		return errPowerLost
	}
	ino, ok := fs.files[oldpath]
	if !ok {
		return notExist("rename", oldpath)
	}
	if err := fs.step("rename", newpath); err != nil {
		return err
	}
	delete(fs.files, oldpath)
	fs.files[newpath] = ino
	fs.pending = append(fs.pending, memDirOp{op: "rename", name: oldpath, to: newpath})
	return nil
}

// Remove implements FS.
func (fs *MemFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if fs.dead {
		return errPowerLost
	}
	if _, ok := fs.files[name]; !ok {
		return notExist("remove", name)
	}
	if err := fs.step("remove", name); err != nil {
		return err
	}
	delete(fs.files, name)
	fs.pending = append(fs.pending, memDirOp{op: "remove", name: name})
	return nil
}

// ReadDir implements FS.
func (fs *MemFS) ReadDir(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	fs.mu.Lock()
	dead, exists := fs.dead, fs.dirs[dir]
	fs.mu.Unlock()
	if dead {
		return nil, errPowerLost
	}
	if !exists {
		return nil, notExist("readdir", dir)
	}
	return fs.names(dir), nil
}

// MkdirAll implements FS.
func (fs *MemFS) MkdirAll(dir string, perm os.FileMode) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return errPowerLost
	}
	for d := filepath.Clean(dir); !fs.dirs[d]; d = filepath.Dir(d) {
		fs.dirs[d] = true
	}
	return nil
}

// SyncDir implements FS.
func (fs *MemFS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir = filepath.Clean(dir)
	if err := fs.step("syncdir", dir); err != nil {
		return err
	}
	for name := range fs.durable {
		if filepath.Dir(name) == dir {
			delete(fs.durable, name)
		}
	}
	for name, ino := range fs.files {
		if filepath.Dir(name) == dir {
			fs.durable[name] = ino
		}
	}
	fs.pending = slices.DeleteFunc(fs.pending, func(op memDirOp) bool { return filepath.Dir(op.name) == dir })
	return nil
}

// Lock implements FS with an in-process lock table; a crash releases
// every lock, as the death of the process would.
func (fs *MemFS) Lock(name string) (io.Closer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return nil, errPowerLost
	}
	name = filepath.Clean(name)
	if fs.locks[name] {
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	fs.locks[name] = true
	return &memLock{fs: fs, name: name}, nil
}

type memLock struct {
	fs       *MemFS
	name     string
	released bool
}

func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if !l.released {
		l.released = true
		delete(l.fs.locks, l.name)
	}
	return nil
}

// memFile is an open file of a MemFS.
type memFile struct {
	fs       *MemFS
	ino      *memInode
	name     string
	pos      int64
	writable bool
	closed   bool
}

// check is called with the file system's lock held.
func (f *memFile) check() error {
	if f.closed {
		return os.ErrClosed
	}
	if f.fs.dead {
		return errPowerLost
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if f.pos >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[f.pos:])
	f.pos += int64(n)
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, fmt.Errorf("write %s: file not open for writing", f.name)
	}
	if err := f.fs.step("write", f.name); err != nil {
		return 0, err
	}
	f.ino.writeAt(p, int(f.pos))
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	switch whence {
	case io.SeekCurrent:
		offset += f.pos
	case io.SeekEnd:
		offset += int64(len(f.ino.data))
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek %s: negative offset", f.name)
	}
	f.pos = offset
	return offset, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	return nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if err := f.fs.step("sync", f.name); err != nil {
		return err
	}
	if n := f.ino; n.dirtyFrom >= 0 {
		// Only what changed is copied: dirtyFrom never exceeds either
		// length.
		n.synced = append(n.synced[:n.dirtyFrom], n.data[n.dirtyFrom:]...)
		n.dirtyFrom = -1
	}
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if err := f.fs.step("truncate", f.name); err != nil {
		return err
	}
	f.ino.truncate(int(size))
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Preallocate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if err := f.fs.step("preallocate", f.name); err != nil {
		return err
	}
	// Preallocated space is not part of the file: reads stop at its
	// size, and a crash that grows the file fills it with zeros.
	f.ino.prealloc = max(f.ino.prealloc, size)
	return nil
}

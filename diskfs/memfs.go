package diskfs

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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// MemFS is an in-memory FS that models what a power loss keeps, for tests
// that crash the WAL, the snapshot files or a whole member at random
// points and check what survives. The model of the disk:
//   - Each file (inode) has its current bytes and its synced bytes; File.Sync
//     makes the current bytes durable.
//   - After a power loss a file holds its synced bytes overwritten by a prefix
//     (cut at any byte) of what was written since, starting where the
//     unsynced writes start: the last write torn at any byte. Where the file
//     grew, the rest may read as zeros (its new size reached the disk, its
//     data did not), as preallocated blocks do.
//   - A directory has its current entries and its synced ones; syncing it
//     (SyncDir) makes creations, renames and removals in it durable. After a power loss the
//     directory is the synced entries, plus (in half of the crashes) a prefix
//     of the operations done since, in order, as a journaling file system may
//     commit them without being asked.
//   - Directories created by MkdirAll, removed by Remove or renamed, and
//     trees removed by RemoveAll, are so at once.
//
// A crash can be taken at any moment with Crash, or armed to happen before
// the n-th mutating operation: the image is taken then and the file system
// "loses power": every later operation fails with ErrPowerLost, so nothing
// done afterwards can be mistaken for durable.

// ErrPowerLost is returned by every operation of a MemFS after its power
// loss.
var ErrPowerLost = errors.New("diskfs: power lost")

var _ FS = (*MemFS)(nil)

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
// methods are safe for concurrent use; one mutex orders every change, so
// that a crash images all of its files at one instant.
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
	off     bool     // PowerOff: changes fail, reads still work
	offDirs []string // if not empty, PowerOff fails only changes under these
	image   *MemFS   // what the power loss left
	crashOp string   // the operation the power loss interrupted
}

// NewMemFS returns an empty MemFS; rng decides what crashes taken by Arm
// or CrashIf keep.
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

// Arm makes the power fail before the n-th mutating operation from now.
func (fs *MemFS) Arm(n int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.crashAt = fs.ops + n
}

// Disarm cancels an armed crash that has not happened.
func (fs *MemFS) Disarm() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.crashAt = 0
}

// PowerLost reports whether an armed crash happened, and its image.
func (fs *MemFS) PowerLost() (bool, *MemFS) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.dead, fs.image
}

// step is called, with mu held, before each mutating operation.
func (fs *MemFS) step(op, name string) error {
	if fs.dead || (fs.off && fs.failsAfterPowerOff(name)) {
		return ErrPowerLost
	}
	fs.ops++
	if (fs.crashAt > 0 && fs.ops >= fs.crashAt) || (fs.crashIf != nil && fs.crashIf(op, name)) {
		fs.image = fs.crashLocked(fs.rng)
		fs.crashOp = op + " " + filepath.Base(name)
		fs.dead = true
		return ErrPowerLost
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
//
// If dirs are given, only changes under them fail; the others go on, to a
// disk nobody will read. A member stopped by a power loss in its own
// process needs that: its raft log and snapshots must fail, for they are
// what it acknowledges on, while its key space engine (Pebble) panics on
// a failed sync instead of returning the error.
func (fs *MemFS) PowerOff(rng *rand.Rand, dirs ...string) *MemFS {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.off = true
	for _, d := range dirs {
		fs.offDirs = append(fs.offDirs, filepath.Clean(d))
	}
	return fs.crashLocked(rng)
}

// failsAfterPowerOff reports whether a change to name fails once the
// power is off.
func (fs *MemFS) failsAfterPowerOff(name string) bool {
	return len(fs.offDirs) == 0 || slices.ContainsFunc(fs.offDirs, func(d string) bool { return under(filepath.Clean(name), d) })
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

// CrashIf makes the power fail before the first mutating operation for
// which fn, asked with the operation ("create", "write", "sync",
// "syncdir", "rename", ...) and the path, returns true. fn is called with
// the file system's lock held and must not use it.
func (fs *MemFS) CrashIf(fn func(op, name string) bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.crashIf = fn
}

// KeepDirOps fixes how many of the directory operations not yet synced a
// crash keeps, in order; negative (the default) means a random number.
func (fs *MemFS) KeepDirOps(n int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.keepDirOps = n
}

// CrashOp names the operation the power loss interrupted, for failure
// messages.
func (fs *MemFS) CrashOp() string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.crashOp
}

// ReadFile returns the contents of the named file as the running system
// sees them.
func (fs *MemFS) ReadFile(name string) ([]byte, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ino, ok := fs.files[filepath.Clean(name)]
	if !ok {
		return nil, notExist("read", name)
	}
	return bytes.Clone(ino.data), nil
}

func notExist(op, name string) error {
	return &iofs.PathError{Op: op, Path: name, Err: iofs.ErrNotExist}
}

// under reports whether name is dir or inside it.
func under(name, dir string) bool {
	return name == dir || strings.HasPrefix(name, dir+string(filepath.Separator)) || dir == "/"
}

// openLocked opens an existing file, or creates it if create is set. The
// caller holds mu.
func (fs *MemFS) openLocked(name string, create, writable bool) (*memFile, error) {
	if fs.dead {
		return nil, ErrPowerLost
	}
	name = filepath.Clean(name)
	ino, ok := fs.files[name]
	if !ok {
		if !create || !fs.dirs[filepath.Dir(name)] {
			return nil, notExist("open", name)
		}
		if err := fs.createLocked(name); err != nil {
			return nil, err
		}
		ino = fs.files[name]
	}
	return &memFile{fs: fs, ino: ino, name: name, writable: writable}, nil
}

// createLocked gives name a new, empty inode. The caller holds mu.
func (fs *MemFS) createLocked(name string) error {
	if fs.dirs[name] {
		return &iofs.PathError{Op: "create", Path: name, Err: syscall.EISDIR}
	}
	if err := fs.step("create", name); err != nil {
		return err
	}
	ino := &memInode{dirtyFrom: -1}
	fs.files[name] = ino
	fs.pending = append(fs.pending, memDirOp{op: "create", name: name, ino: ino})
	return nil
}

// Create implements vfs.FS: an existing file is replaced by a new one.
func (fs *MemFS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return nil, ErrPowerLost
	}
	name = filepath.Clean(name)
	if !fs.dirs[filepath.Dir(name)] {
		return nil, notExist("create", name)
	}
	if err := fs.createLocked(name); err != nil {
		return nil, err
	}
	return &memFile{fs: fs, ino: fs.files[name], name: name, writable: true}, nil
}

// Open implements vfs.FS.
func (fs *MemFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.open(name, false, opts)
}

// OpenReadWrite implements vfs.FS.
func (fs *MemFS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.open(name, true, opts)
}

// open opens name for reading, or for reading and writing (creating it),
// and applies opts.
func (fs *MemFS) open(name string, write bool, opts []vfs.OpenOption) (vfs.File, error) {
	fs.mu.Lock()
	f, err := fs.openLocked(name, write, write)
	fs.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, o := range opts {
		o.Apply(f)
	}
	return f, nil
}

// OpenDir implements vfs.FS; syncing the returned file syncs the
// directory.
func (fs *MemFS) OpenDir(name string) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return nil, ErrPowerLost
	}
	name = filepath.Clean(name)
	if !fs.dirs[name] {
		return nil, notExist("open", name)
	}
	return &memFile{fs: fs, name: name, dir: true}, nil
}

// Link implements vfs.FS.
func (fs *MemFS) Link(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return ErrPowerLost
	}
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	ino, ok := fs.files[oldname]
	if !ok {
		return notExist("link", oldname)
	}
	if _, ok := fs.files[newname]; ok || fs.dirs[newname] {
		return &iofs.PathError{Op: "link", Path: newname, Err: iofs.ErrExist}
	}
	if err := fs.step("link", newname); err != nil {
		return err
	}
	fs.files[newname] = ino
	fs.pending = append(fs.pending, memDirOp{op: "create", name: newname, ino: ino})
	return nil
}

// Rename implements vfs.FS. Renaming a file is durable once its
// directory is synced; renaming a directory is durable at once.
func (fs *MemFS) Rename(oldpath, newpath string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.renameLocked(oldpath, newpath)
}

func (fs *MemFS) renameLocked(oldpath, newpath string) error {
	oldpath, newpath = filepath.Clean(oldpath), filepath.Clean(newpath)
	if fs.dead {
		return ErrPowerLost
	}
	if !fs.dirs[filepath.Dir(newpath)] {
		return notExist("rename", newpath)
	}
	if fs.dirs[oldpath] {
		return fs.renameDirLocked(oldpath, newpath)
	}
	ino, ok := fs.files[oldpath]
	if !ok {
		return notExist("rename", oldpath)
	}
	if fs.dirs[newpath] {
		return &iofs.PathError{Op: "rename", Path: newpath, Err: syscall.EISDIR}
	}
	if err := fs.step("rename", newpath); err != nil {
		return err
	}
	delete(fs.files, oldpath)
	fs.files[newpath] = ino
	fs.pending = append(fs.pending, memDirOp{op: "rename", name: oldpath, to: newpath})
	return nil
}

// renameDirLocked moves the tree at oldpath to newpath, in what the
// running system sees and in what the disk holds alike. The caller holds
// mu.
func (fs *MemFS) renameDirLocked(oldpath, newpath string) error {
	if _, ok := fs.files[newpath]; ok || fs.dirs[newpath] || under(newpath, oldpath) {
		return &iofs.PathError{Op: "rename", Path: newpath, Err: iofs.ErrExist}
	}
	if err := fs.step("rename", newpath); err != nil {
		return err
	}
	move := func(name string) string {
		if under(name, oldpath) {
			return newpath + strings.TrimPrefix(name, oldpath)
		}
		return name
	}
	for _, m := range []map[string]*memInode{fs.files, fs.durable} {
		for _, name := range slices.Collect(maps.Keys(m)) {
			if to := move(name); to != name {
				m[to] = m[name]
				delete(m, name)
			}
		}
	}
	for _, d := range slices.Collect(maps.Keys(fs.dirs)) {
		if to := move(d); to != d {
			delete(fs.dirs, d)
			fs.dirs[to] = true
		}
	}
	for i := range fs.pending {
		fs.pending[i].name = move(fs.pending[i].name)
		if fs.pending[i].to != "" {
			fs.pending[i].to = move(fs.pending[i].to)
		}
	}
	return nil
}

// ReuseForWrite implements vfs.FS: the file is renamed and opened for
// writing over its old contents.
func (fs *MemFS) ReuseForWrite(oldname, newname string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.renameLocked(oldname, newname); err != nil {
		return nil, err
	}
	return fs.openLocked(newname, false, true)
}

// Remove implements vfs.FS. Removing a file is durable once its directory
// is synced; removing an empty directory is durable at once.
func (fs *MemFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if fs.dead {
		return ErrPowerLost
	}
	if fs.dirs[name] {
		if len(fs.listLocked(name)) > 0 {
			return &iofs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
		}
		if err := fs.step("remove", name); err != nil {
			return err
		}
		delete(fs.dirs, name)
		return nil
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

// RemoveAll implements vfs.FS. Unlike Remove, it is durable at once, for
// the whole tree: a simplification the model can afford, since removed
// trees (a half-received snapshot directory) are never read again.
func (fs *MemFS) RemoveAll(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if err := fs.step("removeall", name); err != nil {
		return err
	}
	for _, m := range []map[string]*memInode{fs.files, fs.durable} {
		maps.DeleteFunc(m, func(n string, _ *memInode) bool { return under(n, name) })
	}
	maps.DeleteFunc(fs.dirs, func(d string, _ bool) bool { return under(d, name) && d != "/" })
	fs.pending = slices.DeleteFunc(fs.pending, func(op memDirOp) bool {
		return under(op.name, name) || (op.to != "" && under(op.to, name))
	})
	return nil
}

// MkdirAll implements vfs.FS; directories are durable at once.
func (fs *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return ErrPowerLost
	}
	for d := filepath.Clean(dir); !fs.dirs[d]; d = filepath.Dir(d) {
		if _, ok := fs.files[d]; ok {
			return &iofs.PathError{Op: "mkdir", Path: d, Err: syscall.ENOTDIR}
		}
		fs.dirs[d] = true
	}
	return nil
}

// listLocked lists the files and directories directly in dir, sorted.
func (fs *MemFS) listLocked(dir string) []string {
	var out []string
	for name := range fs.files {
		if filepath.Dir(name) == dir {
			out = append(out, filepath.Base(name))
		}
	}
	for d := range fs.dirs {
		if d != dir && filepath.Dir(d) == dir {
			out = append(out, filepath.Base(d))
		}
	}
	slices.Sort(out)
	return out
}

// List implements vfs.FS, sorted.
func (fs *MemFS) List(dir string) ([]string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir = filepath.Clean(dir)
	if fs.dead {
		return nil, ErrPowerLost
	}
	if !fs.dirs[dir] {
		return nil, notExist("readdir", dir)
	}
	return fs.listLocked(dir), nil
}

// Stat implements vfs.FS.
func (fs *MemFS) Stat(name string) (vfs.FileInfo, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if fs.dirs[name] {
		return memFileInfo{name: filepath.Base(name), dir: true}, nil
	}
	ino, ok := fs.files[name]
	if !ok {
		return nil, notExist("stat", name)
	}
	return memFileInfo{name: filepath.Base(name), size: int64(len(ino.data))}, nil
}

// Truncate implements FS.
func (fs *MemFS) Truncate(name string, size int64) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if fs.dead {
		return ErrPowerLost
	}
	ino, ok := fs.files[name]
	if !ok {
		return notExist("truncate", name)
	}
	if err := fs.step("truncate", name); err != nil {
		return err
	}
	ino.truncate(int(size))
	return nil
}

// PathBase implements vfs.FS.
func (*MemFS) PathBase(path string) string { return filepath.Base(path) }

// PathJoin implements vfs.FS.
func (*MemFS) PathJoin(elem ...string) string { return filepath.Join(elem...) }

// PathDir implements vfs.FS.
func (*MemFS) PathDir(path string) string { return filepath.Dir(path) }

// errNoDiskUsage says a MemFS has no size: callers take it as unbounded.
var errNoDiskUsage = errors.New("diskfs: a MemFS has no size")

// GetDiskUsage implements vfs.FS.
func (*MemFS) GetDiskUsage(string) (vfs.DiskUsage, error) { return vfs.DiskUsage{}, errNoDiskUsage }

// Unwrap implements vfs.FS.
func (*MemFS) Unwrap() vfs.FS { return nil }

// syncDirLocked makes the directory operations in dir durable. The
// caller holds mu.
func (fs *MemFS) syncDirLocked(dir string) error {
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

// Lock implements vfs.FS with an in-process lock table; a crash releases
// every lock, as the death of the process would.
func (fs *MemFS) Lock(name string) (io.Closer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.dead {
		return nil, ErrPowerLost
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

// memFileInfo describes a file or directory of a MemFS.
type memFileInfo struct {
	name string
	size int64
	dir  bool
}

func (fi memFileInfo) Name() string { return fi.name }
func (fi memFileInfo) Size() int64  { return fi.size }
func (fi memFileInfo) Mode() os.FileMode {
	if fi.dir {
		return os.ModeDir | 0o700
	}
	return 0o600
}
func (fi memFileInfo) ModTime() time.Time     { return time.Time{} }
func (fi memFileInfo) IsDir() bool            { return fi.dir }
func (fi memFileInfo) Sys() any               { return nil }
func (fi memFileInfo) DeviceID() vfs.DeviceID { return vfs.DeviceID{} }

// memFile is an open file (or, for syncing, directory) of a MemFS.
type memFile struct {
	fs       *MemFS
	ino      *memInode // nil for a directory
	name     string
	pos      int64
	writable bool
	dir      bool
	closed   bool
}

// check is called with the file system's lock held.
func (f *memFile) check() error {
	if f.closed {
		return os.ErrClosed
	}
	if f.fs.dead {
		return ErrPowerLost
	}
	return nil
}

// checkData is check for reading or writing data, which a directory has
// none of.
func (f *memFile) checkData() error {
	if f.dir {
		return &iofs.PathError{Op: "read", Path: f.name, Err: syscall.EISDIR}
	}
	return f.check()
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkData(); err != nil {
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
	if err := f.checkData(); err != nil {
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

// writeLocked writes p at off. The caller holds mu.
func (f *memFile) writeLocked(p []byte, off int64) error {
	if err := f.checkData(); err != nil {
		return err
	}
	if !f.writable {
		return fmt.Errorf("write %s: file not open for writing", f.name)
	}
	if err := f.fs.step("write", f.name); err != nil {
		return err
	}
	f.ino.writeAt(p, int(off))
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.writeLocked(p, f.pos); err != nil {
		return 0, err
	}
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.writeLocked(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
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

// Sync makes the file's data durable or, for a directory, the operations
// in it.
func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if f.dir {
		return f.fs.syncDirLocked(f.name)
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

// SyncData implements vfs.File as Sync.
func (f *memFile) SyncData() error { return f.Sync() }

// SyncTo implements vfs.File by syncing all of the file.
func (f *memFile) SyncTo(int64) (bool, error) {
	if f.dir {
		return false, nil
	}
	return true, f.Sync()
}

func (f *memFile) Stat() (vfs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.dir {
		return memFileInfo{name: filepath.Base(f.name), dir: true}, nil
	}
	return memFileInfo{name: filepath.Base(f.name), size: int64(len(f.ino.data))}, nil
}

// Preallocate implements vfs.File. Preallocated space is not part of the
// file: reads stop at its size, and a crash that grows the file fills it
// with zeros.
func (f *memFile) Preallocate(off, length int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.dir {
		return nil
	}
	if err := f.check(); err != nil {
		return err
	}
	if err := f.fs.step("preallocate", f.name); err != nil {
		return err
	}
	f.ino.prealloc = max(f.ino.prealloc, off+length)
	return nil
}

// Prefetch implements vfs.File; there is nothing to fetch.
func (*memFile) Prefetch(int64, int64) error { return nil }

// Fd implements vfs.File: a MemFS file has no descriptor.
func (*memFile) Fd() uintptr { return vfs.InvalidFd }

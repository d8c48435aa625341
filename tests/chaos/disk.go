package chaos

import (
	"io"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/wal"
)

// disk is the durable storage of an in-process member: its raft log on a
// wal.MemFS and its key space on a crashable pebble MemFS, both of which
// model a power loss (what was synced survives, unsynced writes are lost
// or torn). Snapshot files stay on the OS file system (see server.Disks).
//
// A crash must see both file systems at one instant, as a real power loss
// would: otherwise the key space could be imaged before a sync and the
// log after the truncation that sync allowed. Every write to either goes
// through a read lock of mu; PowerLoss takes the write lock, so no write
// is half done while the images are taken.
type disk struct {
	mu  sync.RWMutex
	wal *wal.MemFS
	kv  *vfs.MemFS
}

func newDisk(rng *rand.Rand) *disk {
	return &disk{wal: wal.NewMemFS(rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))), kv: vfs.NewCrashableMem()}
}

// Disks returns the file systems to start a member on.
func (d *disk) Disks() *server.Disks {
	return &server.Disks{WAL: lockedWAL{d}, KV: lockedKV{FS: d.kv, d: d}}
}

// PowerLoss returns the disk as a power loss now would leave it. The
// member still running on d can no longer change its raft log (so it
// cannot persist, let alone acknowledge, anything more: it stops on the
// error), and its key space writes go to a disk nobody will read.
func (d *disk) PowerLoss(rng *rand.Rand) *disk {
	d.mu.Lock()
	defer d.mu.Unlock()
	kvRNG := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	return &disk{
		wal: d.wal.PowerOff(rng),
		kv:  d.kv.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: kvRNG}),
	}
}

// lockedWAL is the disk's WAL file system with writes under the read lock.
type lockedWAL struct{ d *disk }

func (l lockedWAL) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	f, err := l.d.wal.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return lockedWALFile{File: f, d: l.d}, nil
}

func (l lockedWAL) Rename(oldpath, newpath string) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.d.wal.Rename(oldpath, newpath)
}

func (l lockedWAL) Remove(name string) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.d.wal.Remove(name)
}

func (l lockedWAL) ReadDir(dir string) ([]string, error) { return l.d.wal.ReadDir(dir) }

func (l lockedWAL) MkdirAll(dir string, perm os.FileMode) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.d.wal.MkdirAll(dir, perm)
}

func (l lockedWAL) SyncDir(dir string) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.d.wal.SyncDir(dir)
}

func (l lockedWAL) Lock(name string) (io.Closer, error) { return l.d.wal.Lock(name) }

type lockedWALFile struct {
	wal.File
	d *disk
}

func (f lockedWALFile) Write(p []byte) (int, error) {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.Write(p)
}

func (f lockedWALFile) Sync() error {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.Sync()
}

func (f lockedWALFile) Truncate(size int64) error {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.Truncate(size)
}

func (f lockedWALFile) Preallocate(size int64) error {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.Preallocate(size)
}

// lockedKV is the disk's key-space file system with every change under
// the read lock; reads go straight to the embedded MemFS.
type lockedKV struct {
	vfs.FS
	d *disk
}

// lockedOpen runs an operation that opens a file for writing.
func (l lockedKV) lockedOpen(open func() (vfs.File, error)) (vfs.File, error) {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	f, err := open()
	if err != nil {
		return nil, err
	}
	return lockedKVFile{File: f, d: l.d}, nil
}

func (l lockedKV) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return l.lockedOpen(func() (vfs.File, error) { return l.FS.Create(name, c) })
}

func (l lockedKV) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return l.lockedOpen(func() (vfs.File, error) { return l.FS.OpenReadWrite(name, c, opts...) })
}

func (l lockedKV) OpenDir(name string) (vfs.File, error) {
	return l.lockedOpen(func() (vfs.File, error) { return l.FS.OpenDir(name) })
}

func (l lockedKV) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return l.lockedOpen(func() (vfs.File, error) { return l.FS.ReuseForWrite(oldname, newname, c) })
}

func (l lockedKV) Link(oldname, newname string) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.FS.Link(oldname, newname)
}

func (l lockedKV) Remove(name string) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.FS.Remove(name)
}

func (l lockedKV) RemoveAll(name string) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.FS.RemoveAll(name)
}

func (l lockedKV) Rename(oldname, newname string) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.FS.Rename(oldname, newname)
}

func (l lockedKV) MkdirAll(dir string, perm os.FileMode) error {
	l.d.mu.RLock()
	defer l.d.mu.RUnlock()
	return l.FS.MkdirAll(dir, perm)
}

type lockedKVFile struct {
	vfs.File
	d *disk
}

func (f lockedKVFile) Write(p []byte) (int, error) {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.Write(p)
}

func (f lockedKVFile) WriteAt(p []byte, off int64) (int, error) {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.WriteAt(p, off)
}

func (f lockedKVFile) Sync() error {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.Sync()
}

func (f lockedKVFile) SyncData() error {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.SyncData()
}

func (f lockedKVFile) SyncTo(length int64) (bool, error) {
	f.d.mu.RLock()
	defer f.d.mu.RUnlock()
	return f.File.SyncTo(length)
}

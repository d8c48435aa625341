package snap

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/synod-db/synod/diskfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// DefaultMaxSnapshots is the number of snapshot files kept when
// Options.MaxSnapshots is zero, as etcd's --max-snapshots default.
const DefaultMaxSnapshots = 5

// Options configures a Snapshotter.
type Options struct {
	// MaxSnapshots is how many snapshot files to keep: after each Save, a
	// background purge removes the oldest beyond this count. Bounding it
	// bounds the disk space snapshots take; keeping more than one leaves
	// older snapshots to fall back to if the newest is damaged. Zero means
	// DefaultMaxSnapshots; a negative value keeps every file.
	MaxSnapshots int
	// Logger receives reports of corrupt files moved aside, purged files
	// and removed temporary files. nil means slog.Default(), so that such
	// events are never silently lost.
	Logger *slog.Logger
	// FS is the file system; nil means diskfs.Default.
	FS diskfs.FS
}

// FileInfo names one snapshot file, as listed by Snapshotter.List. Its
// contents have not been validated.
type FileInfo struct {
	// Term and Index are parsed from the file name.
	Term, Index uint64
	// Path is the file's path: the Snapshotter's directory joined with
	// FileName(Term, Index).
	Path string
}

// Snapshotter saves snapshots to and loads them from one directory. Its
// methods are safe for concurrent use. It runs one background goroutine
// (when MaxSnapshots > 0) that Close stops.
type Snapshotter struct {
	fs           diskfs.FS
	dir          string
	maxSnapshots int
	log          *slog.Logger

	// dirMu serializes the steps that choose, open, move aside or remove
	// snapshot files (loads and purges), so that a purge never removes a
	// file between a load listing it and opening it. Saves do not take
	// it: they only add files, atomically.
	dirMu sync.Mutex

	mu     sync.Mutex // guards closed and ops.Add
	closed bool
	ops    sync.WaitGroup // calls in progress; Close waits for them

	closeOnce sync.Once
	purgeC    chan struct{} // capacity 1: requests coalesce
	stop      chan struct{} // closed by Close
	bg        sync.WaitGroup
}

// New returns a Snapshotter for dir, creating the directory (mode 0700) if
// needed, and removes temporary files left by interrupted saves: they can
// never become valid snapshots and would otherwise waste up to a full
// snapshot's space per crash. The directory must not be shared with
// another Snapshotter, in this process or another.
func New(dir string, opts Options) (*Snapshotter, error) {
	if dir == "" {
		return nil, errors.New("snap: empty snapshot directory name; pass the directory that holds (or will hold) the *.snap files")
	}
	switch {
	case opts.MaxSnapshots == 0:
		opts.MaxSnapshots = DefaultMaxSnapshots
	case opts.MaxSnapshots < 0:
		// Keep everything: no purge.
		opts.MaxSnapshots = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.FS == nil {
		opts.FS = diskfs.Default
	}
	if err := makeDir(opts.FS, dir); err != nil {
		return nil, err
	}
	s := &Snapshotter{
		fs:           opts.FS,
		dir:          dir,
		maxSnapshots: opts.MaxSnapshots,
		log:          log,
		purgeC:       make(chan struct{}, 1),
		stop:         make(chan struct{}),
	}
	if err := s.removeTemps(); err != nil {
		return nil, err
	}
	if s.maxSnapshots > 0 {
		s.bg.Add(1)
		go s.purgeLoop()
	}
	return s, nil
}

// makeDir creates dir if it is missing and makes its creation durable.
func makeDir(fs diskfs.FS, dir string) error {
	st, err := fs.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return fmt.Errorf("snap: snapshot directory %s exists but is not a directory; move it away or choose another path", dir)
		}
		return nil
	}
	if !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("snap: stat snapshot directory %s: %w; check its permissions", dir, err)
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snap: create snapshot directory %s: %w; check the permissions of its parent", dir, err)
	}
	if err := syncDir(fs, filepath.Dir(filepath.Clean(dir))); err != nil {
		return fmt.Errorf("snap: created snapshot directory %s but %w; check the disk", dir, err)
	}
	return nil
}

// removeTemps removes *.snap.tmp files.
func (s *Snapshotter) removeTemps() error {
	names, err := diskfs.List(s.fs, s.dir)
	if err != nil {
		return fmt.Errorf("snap: list snapshot directory %s: %w; check its permissions", s.dir, err)
	}
	for _, name := range names {
		p := filepath.Join(s.dir, name)
		if !strings.HasSuffix(name, tmpSuffix) || !s.isFile(p) {
			continue
		}
		if err := s.fs.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("snap: remove temporary file %s left by an interrupted save: %w; remove it by hand", p, err)
		}
		s.log.Info("snap: removed temporary file of an interrupted save", "file", p)
	}
	return nil
}

// isFile reports whether path is a regular file.
func (s *Snapshotter) isFile(path string) bool {
	st, err := s.fs.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// Dir returns the snapshot directory.
func (s *Snapshotter) Dir() string { return s.dir }

// begin registers a call so that Close waits for it; it fails after Close.
func (s *Snapshotter) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w (directory %s)", ErrClosed, s.dir)
	}
	s.ops.Add(1)
	return nil
}

// Save writes snapshot sn durably; it is SaveFrom with the data in memory.
func (s *Snapshotter) Save(sn pb.Snapshot) error {
	return s.SaveFrom(sn.Metadata, bytes.NewReader(sn.Data))
}

// SaveFrom writes a snapshot file for meta whose data is read from data
// until io.EOF, streaming it through a fixed-size buffer so that snapshots
// of any size take constant memory. When it returns nil the file is
// complete, fsynced and durably named, so the caller may purge the WAL up
// to meta.Index. On error nothing was saved and no partial file remains.
// A snapshot with the same term and index replaces the existing file
// atomically. A snapshot with index 0 is refused: it is Raft's empty
// snapshot and carries no state. Each successful save requests a
// background purge.
func (s *Snapshotter) SaveFrom(meta pb.SnapshotMetadata, data io.Reader) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.Done()
	if meta.Index == 0 {
		return fmt.Errorf("snap: refusing to save a snapshot with index 0 (term %d) in %s: it is the empty snapshot, skip saving it", meta.Term, s.dir)
	}
	if err := writeFile(s.fs, s.dir, meta, data); err != nil {
		return err
	}
	if s.maxSnapshots > 0 {
		select {
		case s.purgeC <- struct{}{}:
		default: // a purge is already pending and will see this file
		}
	}
	return nil
}

// LoadNewest returns the metadata of the newest valid snapshot and a reader
// of its data. The file has been validated completely, both checksums
// included, before it returns; the reader streams the data again and
// reports a *CorruptError instead of io.EOF should the file have changed
// since. The caller must close the reader.
//
// Snapshots are ranked by (term, index), as their names sort. A file that
// fails validation is renamed to <name>.broken (never deleted), logged, and
// the next older one is tried. When none is left, the error wraps
// ErrNoSnapshot, and also ErrCorrupt and each file's *CorruptError if
// damaged files were moved aside. Errors that are not corruption (such as
// permission denied) are returned at once, without trying older files.
func (s *Snapshotter) LoadNewest() (pb.SnapshotMetadata, io.ReadCloser, error) {
	meta, r, err := s.loadNewest()
	if err != nil {
		return pb.SnapshotMetadata{}, nil, err
	}
	return meta, r, nil
}

func (s *Snapshotter) loadNewest() (pb.SnapshotMetadata, *dataReader, error) {
	var none pb.SnapshotMetadata
	if err := s.begin(); err != nil {
		return none, nil, err
	}
	defer s.ops.Done()
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	files, err := s.list()
	if err != nil {
		return none, nil, err
	}
	var corrupt []error
	for _, fi := range files {
		meta, r, err := openFile(s.fs, fi.Path)
		if err == nil {
			return meta, r, nil
		}
		if errors.Is(err, iofs.ErrNotExist) {
			continue // removed by someone else since the listing
		}
		if !errors.Is(err, ErrCorrupt) {
			return none, nil, err
		}
		s.moveAside(fi.Path, err)
		corrupt = append(corrupt, err)
	}
	if len(corrupt) > 0 {
		return none, nil, fmt.Errorf("%w in %s: %d snapshot file(s) found, all corrupt and moved aside to *%s; the member needs a snapshot from a healthy peer: %w",
			ErrNoSnapshot, s.dir, len(corrupt), brokenSuffix, errors.Join(corrupt...))
	}
	return none, nil, fmt.Errorf("%w in %s: there are no *%s files (normal for a new member, which starts from an empty state)", ErrNoSnapshot, s.dir, snapSuffix)
}

// Load returns the newest valid snapshot with its data in memory; see
// LoadNewest for how it is chosen. It suits small snapshots and tests;
// large ones should be streamed with LoadNewest.
func (s *Snapshotter) Load() (pb.Snapshot, error) {
	meta, r, err := s.loadNewest()
	if err != nil {
		return pb.Snapshot{}, err
	}
	defer r.Close()
	n := r.size()
	if n > math.MaxInt {
		return pb.Snapshot{}, fmt.Errorf("snap: the data of snapshot file %s is %d bytes, too large for memory on this platform; use LoadNewest to stream it", r.path, n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return pb.Snapshot{}, err
	}
	// io.ReadFull stops at the last byte; one more read yields the verdict
	// of the checksum that covers the bytes just read.
	if _, err := r.Read(nil); err != io.EOF {
		return pb.Snapshot{}, err
	}
	return pb.Snapshot{Data: data, Metadata: meta}, nil
}

// LoadAt returns the snapshot at term and index, validated like
// LoadNewest's, and a reader of its data that the caller must close. It
// serves callers that know which snapshot they need, such as a WAL that
// recorded the snapshots it depends on. A missing file yields an error
// wrapping ErrNoSnapshot; a damaged one is moved aside like in LoadNewest
// and yields its *CorruptError.
func (s *Snapshotter) LoadAt(term, index uint64) (pb.SnapshotMetadata, io.ReadCloser, error) {
	var none pb.SnapshotMetadata
	if err := s.begin(); err != nil {
		return none, nil, err
	}
	defer s.ops.Done()
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	path := filepath.Join(s.dir, FileName(term, index))
	meta, r, err := openFile(s.fs, path)
	switch {
	case err == nil:
		return meta, r, nil
	case errors.Is(err, iofs.ErrNotExist):
		return none, nil, fmt.Errorf("%w at term %d index %d in %s: %w", ErrNoSnapshot, term, index, s.dir, err)
	case errors.Is(err, ErrCorrupt):
		s.moveAside(path, err)
	}
	return none, nil, err
}

// List returns the snapshot files in the directory, newest first, without
// validating them. Temporary and .broken files are not listed.
func (s *Snapshotter) List() ([]FileInfo, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.Done()
	return s.list()
}

func (s *Snapshotter) list() ([]FileInfo, error) {
	names, err := diskfs.List(s.fs, s.dir)
	if err != nil {
		return nil, fmt.Errorf("snap: list snapshot directory %s: %w; check that it exists and is readable", s.dir, err)
	}
	var files []FileInfo
	for _, name := range names {
		term, index, ok := parseName(name)
		path := filepath.Join(s.dir, name)
		if !ok || !s.isFile(path) {
			continue
		}
		files = append(files, FileInfo{Term: term, Index: index, Path: path})
	}
	slices.SortFunc(files, func(a, b FileInfo) int {
		if c := cmp.Compare(b.Term, a.Term); c != 0 {
			return c
		}
		return cmp.Compare(b.Index, a.Index)
	})
	return files, nil
}

// moveAside renames a corrupt file to a .broken name that is not taken
// yet, so that no earlier evidence is overwritten, and logs it. If the
// rename fails the file stays and is skipped again by the next load.
func (s *Snapshotter) moveAside(path string, cause error) {
	dst := path + brokenSuffix
	for i := 1; ; i++ {
		if _, err := s.fs.Stat(dst); err != nil {
			break // free (or unknowable, in which case the rename tells)
		}
		dst = fmt.Sprintf("%s%s.%d", path, brokenSuffix, i)
	}
	if err := s.fs.Rename(path, dst); err != nil {
		s.log.Error("snap: corrupt snapshot skipped but could not be moved aside; it will be skipped again by the next load", "file", path, "err", cause, "rename_err", err)
		return
	}
	if err := syncDir(s.fs, s.dir); err != nil {
		s.log.Warn("snap: moved a corrupt snapshot aside but the rename may not be durable", "file", path, "err", err)
	}
	s.log.Warn("snap: corrupt snapshot moved aside; trying an older one", "file", path, "moved_to", dst, "err", cause)
}

// purgeLoop runs purges as Saves request them until Close.
func (s *Snapshotter) purgeLoop() {
	defer s.bg.Done()
	for {
		select {
		case <-s.purgeC:
			s.purge()
		case <-s.stop:
			// Close has waited for every Save, so a request still pending
			// is the last one; honour it so the count holds after Close.
			select {
			case <-s.purgeC:
				s.purge()
			default:
			}
			return
		}
	}
}

// purge removes the oldest snapshot files beyond maxSnapshots. Failures
// are logged and retried at the next purge; they never fail a Save, which
// has already made its snapshot durable.
func (s *Snapshotter) purge() {
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	files, err := s.list()
	if err != nil {
		s.log.Warn("snap: purge of old snapshots failed; retrying after the next save", "err", err)
		return
	}
	if len(files) <= s.maxSnapshots {
		return
	}
	for _, fi := range files[s.maxSnapshots:] {
		if err := s.fs.Remove(fi.Path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			s.log.Warn("snap: could not remove an old snapshot; retrying after the next save", "file", fi.Path, "err", err)
			continue
		}
		s.log.Info("snap: removed old snapshot", "file", fi.Path, "keep", s.maxSnapshots)
	}
}

// Close waits for calls in progress, stops the background purge after it
// has finished a purge already requested, and waits for it to exit. Later
// calls fail with ErrClosed; readers returned before stay usable until
// closed. Close is idempotent and always returns nil; the error result
// lets a Snapshotter be used as an io.Closer.
func (s *Snapshotter) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.ops.Wait()
		close(s.stop)
	})
	s.bg.Wait()
	return nil
}

package wal

import (
	"path/filepath"

	"github.com/synod-db/synod/diskfs"
)

// purgeLoop removes, in the background, segments that only hold entries
// covered by the newest snapshot, keeping at least MaxSegments files. It
// runs until Close.
func (w *WAL) purgeLoop() {
	for {
		select {
		case <-w.stop:
			return
		case <-w.purgeKick:
			w.purge()
		}
	}
}

// purge removes the removable segments, oldest first.
func (w *WAL) purge() {
	if w.opts.MaxSegments < 0 {
		return
	}
	w.mu.Lock()
	// Open(marker) starts at the last segment whose first index is at most
	// the snapshot index; everything before that one is covered.
	snapIndex := w.snapIndex // ReleaseTo changes it under mu
	keepFrom := 0
	for i, s := range w.segments {
		if s.first <= snapIndex {
			keepFrom = i
		}
	}
	n := min(keepFrom, len(w.segments)-w.opts.MaxSegments)
	victims := append([]segment(nil), w.segments[:max(n, 0)]...)
	w.mu.Unlock()
	if len(victims) == 0 {
		return
	}
	removed := 0
	for _, s := range victims {
		if err := w.fs.Remove(filepath.Join(w.dir, s.name)); err != nil {
			w.opts.Logger.Warn("wal: purging segment", "file", s.name, "err", err)
			break
		}
		removed++
	}
	if err := diskfs.SyncDir(w.fs, w.dir); err != nil {
		w.opts.Logger.Warn("wal: syncing directory after purge", "dir", w.dir, "err", err)
	}
	w.mu.Lock()
	w.segments = w.segments[removed:]
	w.mu.Unlock()
	w.opts.Logger.Info("wal: purged segments before the snapshot", "removed", removed, "snapshot", snapIndex)
}

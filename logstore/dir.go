package logstore

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/synod-db/synod/snap"
)

// OpenDir opens the store of a member's data directory: snapshots in
// dir/snap and the WAL in dir/wal. Close the Snapshotter after the Store.
func OpenDir(dir string, metadata []byte, snapOpts snap.Options, opts Options) (*Store, *snap.Snapshotter, []byte, error) {
	if snapOpts.Logger == nil {
		snapOpts.Logger = opts.Logger
	}
	snaps, err := snap.New(filepath.Join(dir, "snap"), snapOpts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("logstore: opening snapshots in %s: %w", dir, err)
	}
	if opts.IsNoSnapshot == nil {
		opts.IsNoSnapshot = func(err error) bool { return errors.Is(err, snap.ErrNoSnapshot) }
	}
	s, meta, err := Open(filepath.Join(dir, "wal"), snaps, metadata, opts)
	if err != nil {
		snaps.Close()
		return nil, nil, nil, err
	}
	return s, snaps, meta, nil
}

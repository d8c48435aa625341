// Package datadir knows the layout of a member's data directory. It is
// etcd's, so that operators find what they expect, with synod's key
// space where etcd keeps its bbolt file:
//
//	<data-dir>/member/wal            the raft log (or --wal-dir)
//	<data-dir>/member/snap           raft snapshots
//	<data-dir>/member/snap.incoming  snapshots received from the leader, not yet persisted
//	<data-dir>/member/kv             the key space (a Pebble database)
//
// Everything that opens or creates a data directory (the server at
// start-up, restore) takes its paths from here.
package datadir

import "path/filepath"

// Layout is the paths of one member's data directory.
type Layout struct {
	dataDir, walDir string
}

// New returns the layout of dataDir, with the WAL in walDir if that is
// not empty (etcd's --wal-dir, for a dedicated disk).
func New(dataDir, walDir string) Layout {
	if walDir == "" {
		walDir = filepath.Join(dataDir, "member", "wal")
	}
	return Layout{dataDir: dataDir, walDir: walDir}
}

// Member is the directory that holds everything but a separate WAL.
func (l Layout) Member() string { return filepath.Join(l.dataDir, "member") }

// WAL is the raft log's directory.
func (l Layout) WAL() string { return l.walDir }

// Snap is the raft snapshots' directory.
func (l Layout) Snap() string { return filepath.Join(l.Member(), "snap") }

// Incoming is where snapshots received from the leader wait until the raft
// loop persists them; it is emptied at start-up.
func (l Layout) Incoming() string { return filepath.Join(l.Member(), "snap.incoming") }

// KV is the key space's directory.
func (l Layout) KV() string { return filepath.Join(l.Member(), "kv") }

// Package mvcc is synod's multi-version key space: etcd's data model
// (revisions, per-key create/mod revision and version, ranges at any
// uncompacted revision, compaction) stored in one Pebble database.
//
// # Model
//
// The store has a global revision, 1 when empty. Every mutation — a Put, a
// DeleteRange that deletes something, or a whole write transaction
// (Store.Write) — is one new revision; each change inside it gets a
// sub-revision (0, 1, ...). Per key: CreateRevision is the revision of the
// put that created it, ModRevision the revision of its last change and
// Version counts puts since creation (1 on create); a delete resets it.
//
// # Storage layout
//
// All data lives in one Pebble DB, in three key spaces:
//
//	r<main 8B BE><sub 8B BE>               -> record   (history, in revision order)
//	k<escaped key>\x00\x01<main><sub>      -> record without its value (key index, per key by revision)
//	c<key>                                 -> <main><sub> record (the live version of each key;
//	                                          from 4 KiB, the record without its value, in the r space)
//	m/rev, m/compacted, m/consistent_index -> 8-byte big-endian metadata;
//	                                          m/rev then the logical size (see LogicalSize)
//	m/format                               -> 1: the c space exists; 2: it may refer to the r space
//	m/lease/<id 8B BE>                     -> lease record (format, TTL, remaining TTL)
//	m/app/<name>                           -> the server's metadata (members, alarms)
//
// A record is: flags (bit 0: tombstone, bit 1: value in the r space),
// create revision, version, lease (varints), key length (uvarint), key,
// value. The user key is escaped in the k space (0x00 becomes 0x00 0xff,
// terminated by 0x00 0x01), which keeps byte order and makes each key's
// versions one contiguous run.
//
// A put's value is stored twice: in the r space (history: hashing,
// compaction, watch replay) and in the c space (reads and writes at the
// current revision: one point lookup for a key, one seek and a step per
// key for a range). The k space holds the record without its value (bit
// 1 set) and serves reads at older revisions: a SeekLT to the key's
// newest version at or below the read revision, then a point lookup of
// that revision's r space record for the value. Keeping values out of
// the k space matters because its new entries land among all the old
// ones, so compactions rewrite it again and again as the history grows;
// the r space only grows at its end. (Stores written before kept values
// in the k space too; readers take both forms.) Because the key index
// lives in Pebble there is nothing to rebuild on Open.
//
// Reads of one key at the current revision first look in a small
// direct-mapped table of c space values read recently (hotreads.go),
// which a write group empties for the keys it wrote in the critical
// section that makes its writes visible, and Restore empties whole.
//
// # Durability and the consistent index
//
// Each write is applied as a raft entry: Store.Write, Put, DeleteRange and
// Compact take the entry's raft index and commit it as the consistent
// index in the same Pebble batch as the data. An entry whose index is not
// above the stored consistent index was already applied and is skipped, so
// replaying the WAL after a crash applies exactly the missing entries.
// Batches are committed with pebble.NoSync: the raft log in the WAL is
// already durable, and anything lost from Pebble's own log on a crash is at
// an index above the (equally lost) consistent index, so it is replayed.
// Only Restore commits with Sync. Index 0 means "not applied from raft": no
// check and no update.
//
// Range results: Count is the number of live keys in the range at the read
// revision, independent of Limit and, as in etcd, of the create/mod
// revision filters; More reports that Limit cut the (filtered) results.
// Sorting by key ascending (the default) is the storage order; any other
// order collects every matching key before sorting.
//
// # Compaction
//
// Compact(rev) deletes, in one batch, every version superseded at or
// before rev and any newest-at-rev version that is a deletion made before
// rev (a deletion at rev itself stays until the next compaction, so that
// the history of revision rev is complete for watchers); reads below
// rev return ErrCompacted, reads above the current revision ErrFutureRev.
// It scans the history records up to rev (the versions still kept from
// earlier compactions included), so its cost is proportional to the live
// keys plus the new history, and the batch holds every deletion.
//
// # Snapshots
//
// Snapshot streams a Pebble snapshot of the whole DB (data and metadata);
// Restore loads such a stream into a new directory, verifies its checksum
// and swaps it in by renaming (Open finishes a swap cut short by a crash).
// Directory renames are not fsynced yet.
package mvcc

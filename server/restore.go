package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/logstore"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/snap"
	"github.com/synod-db/synod/wal"
)

// RestoreConfig says how to build a member's data directory from a
// snapshot taken with the Maintenance Snapshot call (`snapshot save`).
type RestoreConfig struct {
	// SnapshotPath is the saved snapshot file.
	SnapshotPath string
	// SkipHashCheck accepts a file without the trailing SHA-256 (a copy
	// of a member's key space taken by other means).
	SkipHashCheck bool
	// Name, DataDir, WALDir, PeerURLs, InitialCluster and
	// InitialClusterToken are those the restored member will start with.
	Name, DataDir, WALDir string
	PeerURLs              []string
	InitialCluster        map[string][]string
	InitialClusterToken   string
}

// ErrDataDirExists is returned when a restore would overwrite data.
var ErrDataDirExists = errors.New("server: data directory already exists")

// Restore creates the data directory of one member of a new cluster whose
// key space is the snapshot's. Run it for every member, each with its own
// name and peer URLs and the same initial cluster and token; then start the
// members normally. The new cluster has new member and cluster IDs, so the
// restored members never talk to the old ones.
func Restore(rc RestoreConfig) (err error) {
	if rc.InitialClusterToken == "" {
		rc.InitialClusterToken = "etcd-cluster"
	}
	dirs := datadir.New(rc.DataDir, rc.WALDir)
	if _, err := os.Stat(rc.DataDir); err == nil {
		return fmt.Errorf("%w: %s; restore into a new directory", ErrDataDirExists, rc.DataDir)
	}
	urls, ok := rc.InitialCluster[rc.Name]
	if !ok || !sameURLs(urls, rc.PeerURLs) {
		return fmt.Errorf("%w: member %q with peer URLs %v is not in the initial cluster", errInvalidConfig, rc.Name, rc.PeerURLs)
	}
	data, err := os.ReadFile(rc.SnapshotPath)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if !rc.SkipHashCheck {
		if len(data) < sha256.Size {
			return fmt.Errorf("snapshot %s is too short to hold its SHA-256 trailer", rc.SnapshotPath)
		}
		body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
		if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
			return fmt.Errorf("snapshot %s fails its SHA-256 check: the file is damaged or incomplete (use --skip-hash-check only for a file without the trailer)", rc.SnapshotPath)
		}
		data = body
	}
	defer func() {
		if err != nil {
			os.RemoveAll(rc.DataDir)
		}
	}()
	if err := os.MkdirAll(dirs.Member(), 0o700); err != nil {
		return err
	}

	// The members of the new cluster, as a new cluster computes them.
	names := make([]string, 0, len(rc.InitialCluster))
	for n := range rc.InitialCluster {
		names = append(names, n)
	}
	slices.Sort(names)
	ms := newMembership()
	var ids []uint64
	for _, n := range names {
		m := Member{ID: MemberID(rc.InitialCluster[n], rc.InitialClusterToken, 0), Name: n, PeerURLs: rc.InitialCluster[n]}
		ms.add(m)
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	index := uint64(len(ids))
	meta := raftpb.SnapshotMetadata{Index: index, Term: 1, ConfState: raftpb.ConfState{Voters: ids}}

	kv, err := mvcc.Open(dirs.KV())
	if err != nil {
		return err
	}
	defer kv.Close()
	if err := kv.Restore(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("load snapshot %s: %w", rc.SnapshotPath, err)
	}
	if err := kv.SetMeta(0, metaMembers, ms.marshal()); err != nil {
		return err
	}
	if err := kv.SetMeta(0, metaAlarms, []byte("[]")); err != nil {
		return err
	}
	if err := kv.ResetConsistentIndex(index); err != nil {
		return err
	}

	snaps, err := snap.New(dirs.Snap(), snap.Options{})
	if err != nil {
		return err
	}
	defer snaps.Close()
	walMeta, _ := json.Marshal(walMetadata{MemberID: MemberID(urls, rc.InitialClusterToken, 0), ClusterID: ClusterID(ids)})
	logs, _, err := logstore.Open(dirs.WAL(), snaps, walMeta, logstore.Options{
		WAL: wal.Options{MaxSegments: -1},
	})
	if err != nil {
		return err
	}
	defer logs.Close()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(kv.Snapshot(pw)) }()
	err = logs.ApplySnapshot(meta, pr)
	pr.Close()
	if err != nil {
		return fmt.Errorf("write raft snapshot: %w", err)
	}
	return logs.Save(raftpb.HardState{Term: 1, Commit: index}, nil, true)
}

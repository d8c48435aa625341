package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"slices"
	"strings"

	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/logstore"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/transport"
	"github.com/synod-db/synod/snap"
	"github.com/synod-db/synod/wal"
)

// Start-up: New opens a member in named steps (open): storage, then how
// it boots (restart, new cluster or joining one), the raft log and the
// identity it records, the state derived from the key space with the
// applier on it, the transport, and raft. Start then runs it.

// walMetadata is recorded in the WAL when it is created, so that a
// restarted member knows who it is and a data directory from another
// cluster is refused.
type walMetadata struct {
	MemberID  uint64 `json:"memberID"`
	ClusterID uint64 `json:"clusterID"`
}

// Metadata names in the key space's database.
const (
	metaMembers = "members"
	metaAlarms  = "alarms"
)

// New opens (or creates) the member's data directory and prepares the
// member; Start runs it. peerLn is where peers connect (the transport
// serves it); it is closed by Stop.
func New(cfg Config, peerLn net.Listener) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		lg:         cfg.Logger.With("member", cfg.Name),
		members:    newMembership(),
		w:          newWaitRegistry(),
		proposals:  newProposalQueue(),
		leadChg:    make(chan struct{}),
		applyc:     make(chan applyJob, 64),
		readStatec: make(chan raft.ReadState, 64),
		readBatch:  newReadBatch(),
		readWake:   make(chan struct{}, 1),
		stopping:   make(chan struct{}),
		done:       make(chan struct{}),
		removed:    make(chan struct{}),
		ready:      make(chan struct{}),
	}
	if err := s.open(peerLn); err != nil {
		s.closeStorage()
		return nil, err
	}
	return s, nil
}

// open prepares the member in named steps; New closes what they opened
// if one fails.
func (s *Server) open(peerLn net.Listener) error {
	if err := s.openStorage(); err != nil {
		return err
	}
	boot, err := s.bootstrap()
	if err != nil {
		return err
	}
	if err := s.openLog(&boot); err != nil {
		return err
	}
	hs, err := s.openState()
	if err != nil {
		return err
	}
	if err := s.startTransport(); err != nil {
		return err
	}
	if err := s.startRaft(boot, hs); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.tr.Serve(peerLn); err != nil && !errors.Is(err, transport.ErrStopped) {
			s.lg.Error("peer listener failed", "err", err)
		}
	}()
	return nil
}

// openStorage creates the data directory if needed and opens the key
// space and the snapshot directory; it empties the directory of
// snapshots being received, which a crash may have left half written.
func (s *Server) openStorage() error {
	s.dirs = datadir.New(s.cfg.DataDir, s.cfg.WALDir)
	s.fs = s.cfg.FS
	if s.fs == nil {
		s.fs = diskfs.Default
	}
	if err := s.fs.MkdirAll(s.dirs.Member(), 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", s.dirs.Member(), err)
	}
	var err error
	s.kv, err = mvcc.OpenWithOptions(s.dirs.KV(), mvcc.Options{FS: s.fs, OnNoSpace: s.noSpace, Logger: s.lg.With("component", "kv")})
	if err != nil {
		return fmt.Errorf("open key space: %w", err)
	}
	if err := s.bootstrapDefrag(); err != nil {
		return err
	}
	maxSnaps := s.cfg.MaxSnapshots
	if maxSnaps == 0 {
		maxSnaps = -1
	}
	s.snaps, err = snap.New(s.dirs.Snap(), snap.Options{MaxSnapshots: maxSnaps, Logger: s.lg, FS: s.fs})
	if err != nil {
		return fmt.Errorf("open snapshot directory: %w", err)
	}
	if err := s.fs.RemoveAll(s.dirs.Incoming()); err != nil {
		return fmt.Errorf("clear %s: %w", s.dirs.Incoming(), err)
	}
	if err := s.fs.MkdirAll(s.dirs.Incoming(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.dirs.Incoming(), err)
	}
	return nil
}

// bootInfo is what bootstrapping decided: whether the member restarts
// from its WAL, and otherwise who it is and its first peers.
type bootInfo struct {
	restart bool
	meta    walMetadata
	peers   []raft.Peer // a new cluster's members, for raft.StartNode
}

// bootstrap decides how the member starts: from its WAL if it has one;
// else as a member of a new cluster (from the initial-cluster flags) or
// by joining a running one (asking its members who this member is).
func (s *Server) bootstrap() (bootInfo, error) {
	walExists, err := hasWAL(s.fs, s.cfg.WALDir)
	if err != nil {
		return bootInfo{}, err
	}
	b := bootInfo{restart: walExists}
	switch {
	case walExists:
	case s.cfg.InitialClusterState == "new":
		b.peers, b.meta, err = s.bootstrapNew()
	default:
		b.meta, err = s.bootstrapExisting()
	}
	return b, err
}

// openLog opens the raft log (creating it with b's metadata on first
// start) and takes the member's identity from it; a restarting member
// then reads its stored member list.
func (s *Server) openLog(b *bootInfo) error {
	metaBytes, _ := json.Marshal(b.meta)
	maxWALs := s.cfg.MaxWALs
	if maxWALs == 0 {
		maxWALs = -1
	}
	var recorded []byte
	var err error
	s.logs, recorded, err = logstore.Open(s.cfg.WALDir, s.snaps, metaBytes, logstore.Options{
		WAL:            wal.Options{MaxSegments: maxWALs, Logger: s.lg, FS: s.fs},
		CatchUpEntries: s.cfg.SnapshotCatchUpEntries,
		CatchUpBytes:   s.cfg.SnapshotCatchUpBytes,
		Logger:         s.lg,
	})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	if err := json.Unmarshal(recorded, &b.meta); err != nil || b.meta.MemberID == 0 {
		return fmt.Errorf("the WAL in %s has no valid member metadata (%v): the data directory was not written by synod", s.cfg.WALDir, err)
	}
	s.id, s.clusterID = b.meta.MemberID, b.meta.ClusterID
	s.initRequestIDs()
	if b.restart {
		return loadMembers(s.kv, s.members)
	}
	return nil
}

// openState brings the key space up to the newest snapshot, loads the
// state derived from it (alarms, leases, the watch hub) and builds the
// applier on it. It returns the raft log's hard state.
func (s *Server) openState() (raftpb.HardState, error) {
	if err := s.catchUpKV(); err != nil {
		return raftpb.HardState{}, err
	}
	var err error
	s.alarms, err = loadAlarms(s.kv)
	if err != nil {
		return raftpb.HardState{}, err
	}
	if err := s.openLeases(s.cfg.Lease); err != nil {
		return raftpb.HardState{}, err
	}
	s.applied = newAppliedWaiter(s.kv.ConsistentIndex())
	s.openWatchHub()
	hs, cs, err := s.logs.InitialState()
	if err != nil {
		return raftpb.HardState{}, err
	}
	sn, err := s.logs.Snapshot()
	if err != nil {
		return raftpb.HardState{}, err
	}
	s.ap = &applier{
		lg: s.lg, id: s.id, cfg: s.cfg,
		kv: s.kv, snaps: s.snaps, members: s.members, alarms: s.alarms, leases: s.leases,
		watch: s.watchHub, w: s.w, applied: s.applied, env: (*memberEnv)(s),
		confState: cs, snapIndex: sn.Metadata.Index,
	}
	s.term.Store(hs.Term)
	s.committed.Store(hs.Commit)
	return hs, nil
}

// startTransport creates the peer transport with a peer for every known
// member (a new cluster's before their conf changes are applied).
func (s *Server) startTransport() error {
	var err error
	s.tr, err = transport.New(transport.Config{
		ClusterID: s.clusterID, ID: s.id, Handler: (*peerHandler)(s), Logger: s.lg,
		OnRemoved: func() {
			s.lg.Warn("a peer says this member was removed from the cluster; stopping")
			s.removedOnce.Do(func() { close(s.removed) })
		},
	})
	if err != nil {
		return err
	}
	for _, m := range append(s.members.list(), s.initialPeers...) {
		if m.ID != s.id {
			if err := s.tr.AddPeer(m.ID, m.PeerURLs); err != nil {
				return fmt.Errorf("member %x: %w", m.ID, err)
			}
		}
	}
	return nil
}

// startRaft starts the raft node on the log: a new cluster's first
// member list, or what the log holds.
func (s *Server) startRaft(b bootInfo, hs raftpb.HardState) error {
	snapIndex := s.ap.snapIndex
	rc := &raft.Config{
		ID:                        s.id,
		ElectionTick:              s.cfg.electionTicks(),
		HeartbeatTick:             1,
		Storage:                   s.logs,
		Applied:                   snapIndex,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           512,
		MaxInflightBytes:          maxInflightBytes,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true,
		PreVote:                   s.cfg.PreVote,
		Logger:                    s.lg,
	}
	if s.cfg.LeaseReads {
		rc.ReadOnlyOption = raft.ReadOnlyLeaseBased
	}
	var err error
	if b.restart || len(b.peers) == 0 {
		s.node, err = raft.RestartNode(rc)
	} else {
		s.node, err = raft.StartNode(rc, b.peers)
	}
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.lg.Info("member opened", "id", fmt.Sprintf("%x", s.id), "cluster", fmt.Sprintf("%x", s.clusterID),
		"restart", b.restart, "applied", s.kv.ConsistentIndex(), "snapshot", snapIndex, "term", hs.Term, "commit", hs.Commit)
	return nil
}

// maxInflightBytes bounds the entries in flight to one follower. It is
// what bounds the leader's work for a follower that is catching up: each
// acknowledgement lets at most this much more be read, encoded and sent,
// however far behind the follower is, so the leader's heartbeats and the
// other members' appends never queue behind hundreds of MB. 16 MiB covers
// the bandwidth-delay product of a gigabit link at 100 ms.
const maxInflightBytes = 16 << 20

// hasWAL reports whether dir holds WAL segments.
func hasWAL(fs diskfs.FS, dir string) (bool, error) {
	names, err := fs.List(dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list WAL directory %s: %w", dir, err)
	}
	return slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, ".wal") }), nil
}

// bootstrapNew computes the members of a new cluster from the flags.
func (s *Server) bootstrapNew() ([]raft.Peer, walMetadata, error) {
	urls, ok := s.cfg.InitialCluster[s.cfg.Name]
	if !ok {
		return nil, walMetadata{}, fmt.Errorf("%w: member %q is not in the initial cluster; add %s=%s to it", errInvalidConfig, s.cfg.Name, s.cfg.Name, s.cfg.PeerURLs[0])
	}
	if !sameURLs(urls, s.cfg.PeerURLs) {
		return nil, walMetadata{}, fmt.Errorf("%w: the initial cluster gives member %q the peer URLs %v but it advertises %v; make them equal", errInvalidConfig, s.cfg.Name, urls, s.cfg.PeerURLs)
	}
	var peers []raft.Peer
	var ids []uint64
	names := make([]string, 0, len(s.cfg.InitialCluster))
	for name := range s.cfg.InitialCluster {
		names = append(names, name)
	}
	slices.Sort(names)
	seen := map[uint64]string{}
	for _, name := range names {
		u := s.cfg.InitialCluster[name]
		id := MemberID(u, s.cfg.InitialClusterToken, 0)
		if other, dup := seen[id]; dup {
			return nil, walMetadata{}, fmt.Errorf("%w: members %q and %q have the same peer URLs", errInvalidConfig, other, name)
		}
		seen[id] = name
		m := Member{ID: id, PeerURLs: slices.Clone(u)}
		if name == s.cfg.Name {
			m.Name = name
		}
		ctx, _ := json.Marshal(m)
		peers = append(peers, raft.Peer{ID: id, Context: ctx})
		ids = append(ids, id)
		s.initialPeers = append(s.initialPeers, m)
	}
	return peers, walMetadata{MemberID: MemberID(urls, s.cfg.InitialClusterToken, 0), ClusterID: ClusterID(ids)}, nil
}

// bootstrapExisting joins a running cluster: it asks the other members
// for the cluster ID and member list and finds itself in it by its peer
// URLs (the member was added with `member add` beforehand).
func (s *Server) bootstrapExisting() (walMetadata, error) {
	var urls []string
	for name, u := range s.cfg.InitialCluster {
		if name != s.cfg.Name {
			urls = append(urls, u...)
		}
	}
	if len(urls) == 0 {
		return walMetadata{}, fmt.Errorf("%w: joining an existing cluster needs the other members' peer URLs in the initial cluster", errInvalidConfig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	cid, info, err := transport.FetchCluster(ctx, urls, 0)
	if err != nil {
		return walMetadata{}, fmt.Errorf("join existing cluster via %v: %w", urls, err)
	}
	if err := s.members.load(info); err != nil {
		return walMetadata{}, err
	}
	for _, m := range s.members.list() {
		if sameURLs(m.PeerURLs, s.cfg.PeerURLs) {
			return walMetadata{MemberID: m.ID, ClusterID: cid}, nil
		}
	}
	return walMetadata{}, fmt.Errorf("no member of the cluster has the peer URLs %v: run `member add` with them first", s.cfg.PeerURLs)
}

func sameURLs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// catchUpKV restores the key space from the newest snapshot if it is
// behind it (a crash between persisting a received snapshot and loading
// it into the key space).
func (s *Server) catchUpKV() error {
	meta, rc, err := s.snaps.LoadNewest()
	if errors.Is(err, snap.ErrNoSnapshot) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load newest snapshot: %w", err)
	}
	defer rc.Close()
	if s.kv.ConsistentIndex() >= meta.Index {
		return nil
	}
	data := bufio.NewReader(rc)
	if _, err := data.Peek(1); errors.Is(err, io.EOF) {
		// A local snapshot (metadata only): the key space should have been
		// synced up to it before the log was compacted.
		return fmt.Errorf("the key space is at index %d but the raft log was compacted up to %d: entries between are lost; restore this member from another one", s.kv.ConsistentIndex(), meta.Index)
	}
	s.lg.Warn("key space is behind the newest snapshot; restoring it", "applied", s.kv.ConsistentIndex(), "snapshot", meta.Index)
	if err := s.kv.Restore(data); err != nil {
		return fmt.Errorf("restore key space from snapshot %d: %w", meta.Index, err)
	}
	return loadMembers(s.kv, s.members)
}

// loadMembers reads the member list stored in kv into members.
func loadMembers(kv *mvcc.Store, members *membership) error {
	b, err := kv.Meta(metaMembers)
	if err != nil || b == nil {
		return err
	}
	return members.load(b)
}

// bootstrapDefrag compacts the key space's files before the member
// starts when they hold at least BootstrapDefragThreshold bytes more
// than the data in use (etcd's --bootstrap-defrag-threshold-megabytes),
// so that a member restarted after a large deletion gives the disk back
// before it serves, not later under load.
func (s *Server) bootstrapDefrag() error {
	threshold := s.cfg.BootstrapDefragThreshold
	if threshold <= 0 {
		return nil
	}
	size, inUse := s.kv.DiskSize(), s.kv.LogicalSize()
	if size-inUse < threshold {
		s.lg.Info("Skipping defragmentation", "current-db-size-bytes", size, "current-db-size-in-use-bytes", inUse, "defrag-threshold-bytes", threshold)
		return nil
	}
	s.lg.Info("defragmenting the key space before start-up", "current-db-size-bytes", size, "current-db-size-in-use-bytes", inUse, "defrag-threshold-bytes", threshold)
	if err := s.kv.Defragment(context.Background()); err != nil {
		return fmt.Errorf("defragment at start-up: %w", err)
	}
	s.lg.Info("defragmented", "db-size-bytes", s.kv.DiskSize())
	return nil
}

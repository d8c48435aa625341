// Package server is a synod member: it drives a raft.Node, persists its
// log (package logstore), talks to peers (package server/transport),
// applies committed requests to the key space (package mvcc) on a
// goroutine of its own, and serves linearizable reads with batched
// ReadIndex rounds. The gRPC API (package api/v3rpc) calls its methods.
//
// Goroutines and what each owns:
//
//   - the raft loop: ticks the node and handles each Ready — sends the
//     messages that may go before the write, persists (one WAL group
//     commit), sends the rest, and hands committed entries to the apply
//     goroutine without waiting for it;
//   - the apply goroutine: the key space, the member list and the
//     applied index; it triggers snapshots, which stream in the
//     background;
//   - the propose loop: hands the queued requests to raft in batches;
//   - the read loop: one ReadIndex round at a time for all the reads that
//     arrived meanwhile;
//   - the lease loop: expires leases on the leader and checkpoints them;
//   - publish (until this member's name and client URLs are in the
//     cluster), hastenFirstElection (at start-up), the auto compaction
//     loop (when configured), and short-lived ones that propose an alarm,
//     look a peer up or take a snapshot; all stop with the member;
//   - the transport's goroutines (peer streams, snapshot streams).
package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/logstore"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/transport"
	"github.com/synod-db/synod/server/watch"
	"github.com/synod-db/synod/snap"
	"github.com/synod-db/synod/wal"
)

// Server is one running member.
type Server struct {
	cfg       Config
	lg        *slog.Logger
	id        uint64
	clusterID uint64

	kv      *mvcc.Store
	logs    *logstore.Store
	snaps   *snap.Snapshotter
	node    raft.Node
	tr      *transport.Transport
	members *membership
	// peerFinder looks up the address of senders the member list does not
	// know yet (see peerfind.go).
	peerFinder peerFinder
	forwarded  recentProposals // request IDs of proposals peers forwarded
	dirs       datadir.Layout  // where the member's files are

	w *waitRegistry
	// proposals queues requests for proposeLoop, which hands them to
	// raft in batches.
	proposals *proposalQueue
	applied   *appliedWaiter
	reqSeq    atomic.Uint64

	// Raft state published by the raft loop for everyone else.
	lead      atomic.Uint64
	term      atomic.Uint64
	committed atomic.Uint64
	leadMu    sync.Mutex
	leadChg   chan struct{} // closed and replaced on every leader change

	applyc     chan applyJob
	readStatec chan raft.ReadState
	readMu     sync.Mutex
	readBatch  *readBatch
	readWake   chan struct{}

	alarms   *alarmSet
	watchHub *watch.Hub
	leaseSt  *leaseState

	snapshotting atomic.Bool
	raisingAlarm atomic.Bool
	stopping     chan struct{}
	stopOnce     sync.Once
	done         chan struct{}
	wg           sync.WaitGroup
	removed      chan struct{} // closed when this member learns it was removed
	removedOnce  sync.Once

	// Owned by the apply goroutine.
	confState    raftpb.ConfState
	appliedTerm  uint64
	snapIndex    uint64
	logBytes     uint64   // entry bytes applied since the last snapshot
	initialPeers []Member // new cluster: transport peers before their conf changes apply
}

// Errors of the request path, mapped to etcd's by the API layer.
var (
	ErrStopped         = errors.New("server: server stopped")
	ErrTimeout         = errors.New("server: request timed out")
	ErrTimeoutLeader   = errors.New("server: request timed out, possibly due to previous leader failure")
	ErrLeaderChanged   = errors.New("server: leader changed")
	ErrNoLeader        = errors.New("server: no leader")
	ErrRequestTooLarge = errors.New("server: request is too large")
	ErrNoSpace         = errors.New("server: mvcc: database space exceeded")
	ErrNotLeader       = errors.New("server: not leader")
	ErrUnhealthy       = errors.New("server: unhealthy cluster")
	// ErrResultUnknown: the request was committed, but this member caught
	// up from a snapshot that already held its effect, so it cannot say
	// what the request returned.
	ErrResultUnknown = errors.New("server: request was committed but its result is unknown: this member caught up from a snapshot taken after it; read the keys to see its effect")
)

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
	}
	if err := s.open(peerLn); err != nil {
		s.closeStorage()
		return nil, err
	}
	return s, nil
}

func (s *Server) open(peerLn net.Listener) error {
	s.dirs = datadir.New(s.cfg.DataDir, s.cfg.WALDir)
	if err := os.MkdirAll(s.dirs.Member(), 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", s.dirs.Member(), err)
	}
	var err error
	var walFS wal.FS = wal.OSFS{}
	kvOpts := mvcc.Options{OnNoSpace: s.noSpace, Logger: s.lg.With("component", "kv")}
	if d := s.cfg.Disks; d != nil {
		walFS, kvOpts.FS = d.WAL, d.KV
	}
	s.kv, err = mvcc.OpenWithOptions(s.dirs.KV(), kvOpts)
	if err != nil {
		return fmt.Errorf("open key space: %w", err)
	}
	maxSnaps := s.cfg.MaxSnapshots
	if maxSnaps == 0 {
		maxSnaps = -1
	}
	s.snaps, err = snap.New(s.dirs.Snap(), snap.Options{MaxSnapshots: maxSnaps, Logger: s.lg})
	if err != nil {
		return fmt.Errorf("open snapshot directory: %w", err)
	}
	if err := os.RemoveAll(s.dirs.Incoming()); err != nil {
		return fmt.Errorf("clear %s: %w", s.dirs.Incoming(), err)
	}
	if err := os.MkdirAll(s.dirs.Incoming(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.dirs.Incoming(), err)
	}
	walExists, err := hasWAL(walFS, s.cfg.WALDir)
	if err != nil {
		return err
	}
	var peers []raft.Peer
	var meta walMetadata
	restart := walExists
	switch {
	case walExists:
	case s.cfg.InitialClusterState == "new":
		peers, meta, err = s.bootstrapNew()
	default:
		meta, err = s.bootstrapExisting()
	}
	if err != nil {
		return err
	}
	metaBytes, _ := json.Marshal(meta)
	maxWALs := s.cfg.MaxWALs
	if maxWALs == 0 {
		maxWALs = -1
	}
	var recorded []byte
	s.logs, recorded, err = logstore.Open(s.cfg.WALDir, s.snaps, metaBytes, logstore.Options{
		WAL:            wal.Options{MaxSegments: maxWALs, Logger: s.lg, FS: walFS},
		CatchUpEntries: s.cfg.SnapshotCatchUpEntries,
		CatchUpBytes:   s.cfg.SnapshotCatchUpBytes,
		Logger:         s.lg,
	})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	if err := json.Unmarshal(recorded, &meta); err != nil || meta.MemberID == 0 {
		return fmt.Errorf("the WAL in %s has no valid member metadata (%v): the data directory was not written by synod", s.cfg.WALDir, err)
	}
	s.id, s.clusterID = meta.MemberID, meta.ClusterID
	s.initRequestIDs()
	if restart {
		if b, err := s.kv.Meta(metaMembers); err != nil {
			return err
		} else if b != nil {
			if err := s.members.load(b); err != nil {
				return err
			}
		}
	}
	if err := s.catchUpKV(); err != nil {
		return err
	}
	s.alarms, err = loadAlarms(s.kv)
	if err != nil {
		return err
	}
	if err := s.openLeases(s.cfg.Lease); err != nil {
		return err
	}
	s.applied = newAppliedWaiter(s.kv.ConsistentIndex())
	s.openWatchHub()
	hs, cs, err := s.logs.InitialState()
	if err != nil {
		return err
	}
	s.confState = cs
	sn, err := s.logs.Snapshot()
	if err != nil {
		return err
	}
	s.snapIndex = sn.Metadata.Index
	s.term.Store(hs.Term)
	s.committed.Store(hs.Commit)

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
	rc := &raft.Config{
		ID:                        s.id,
		ElectionTick:              s.cfg.electionTicks(),
		HeartbeatTick:             1,
		Storage:                   s.logs,
		Applied:                   s.snapIndex,
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
	if restart || len(peers) == 0 {
		s.node, err = raft.RestartNode(rc)
	} else {
		s.node, err = raft.StartNode(rc, peers)
	}
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.lg.Info("member opened", "id", fmt.Sprintf("%x", s.id), "cluster", fmt.Sprintf("%x", s.clusterID),
		"restart", restart, "applied", s.kv.ConsistentIndex(), "snapshot", s.snapIndex, "term", hs.Term, "commit", hs.Commit)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.tr.Serve(peerLn); err != nil && !errors.Is(err, transport.ErrStopped) {
			s.lg.Error("peer listener failed", "err", err)
		}
	}()
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
func hasWAL(fs wal.FS, dir string) (bool, error) {
	names, err := fs.ReadDir(dir)
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
	return s.reloadMembers()
}

// reloadMembers reads the member list stored in the key space.
func (s *Server) reloadMembers() error {
	b, err := s.kv.Meta(metaMembers)
	if err != nil || b == nil {
		return err
	}
	return s.members.load(b)
}

// Start runs the member's goroutines.
func (s *Server) Start() {
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.raftLoop() }()
	go func() { defer s.wg.Done(); s.applyLoop() }()
	go func() { defer s.wg.Done(); s.readLoop() }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.proposeLoop() }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.hastenFirstElection() }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.publish() }()
	s.startLeases()
	if ac := s.cfg.AutoCompaction; ac.Period > 0 || ac.Revisions > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.compactLoop() }()
	}
}

// Stop stops the member: goroutines first, then the files. It is safe to
// call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.node.Stop()
		s.tr.Stop()
		s.wg.Wait()
		if s.watchHub != nil {
			s.watchHub.Close()
		}
		s.w.failAll(ErrStopped)
		s.readBatch.notify(ErrStopped)
		s.closeStorage()
		close(s.done)
	})
	<-s.done
}

// Done is closed once the member has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Removed is closed when the member learns it was removed from the cluster.
func (s *Server) Removed() <-chan struct{} { return s.removed }

func (s *Server) closeStorage() {
	if s.logs != nil {
		if err := s.logs.Close(); err != nil {
			s.lg.Error("close raft log", "err", err)
		}
	}
	if s.snaps != nil {
		s.snaps.Close()
	}
	if s.kv != nil {
		if err := s.kv.Close(); err != nil {
			s.lg.Error("close key space", "err", err)
		}
	}
}

// ID returns the member ID.
func (s *Server) ID() uint64 { return s.id }

// ClusterID returns the cluster ID.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// Leader returns the current leader's ID, 0 if none is known.
func (s *Server) Leader() uint64 { return s.lead.Load() }

// Term returns the current raft term.
func (s *Server) Term() uint64 { return s.term.Load() }

// AppliedIndex returns the index of the last applied entry.
func (s *Server) AppliedIndex() uint64 { return s.applied.applied.Load() }

// CommittedIndex returns the last commit index seen by this member.
func (s *Server) CommittedIndex() uint64 { return s.committed.Load() }

// KV returns the key space, for reads.
func (s *Server) KV() *mvcc.Store { return s.kv }

// Config returns the member's configuration (with defaults applied).
func (s *Server) Config() Config { return s.cfg }

// leaderChanged returns a channel closed at the next leader change.
func (s *Server) leaderChanged() <-chan struct{} {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	return s.leadChg
}

// nextRequestID returns a cluster-unique request ID: the member ID's low
// bits, then the start time, then a counter.
func (s *Server) nextRequestID() uint64 {
	return s.reqSeq.Add(1)
}

// initRequestIDs seeds the request counter so that IDs never repeat across
// restarts or collide between members.
func (s *Server) initRequestIDs() {
	prefix := (s.id & 0xffff) << 48
	ms := uint64(time.Now().UnixMilli()) & (1<<40 - 1)
	s.reqSeq.Store(prefix | ms<<8)
}

// peerHandler is the Server as the transport sees it.
type peerHandler Server

func (h *peerHandler) Process(ctx context.Context, m raftpb.Message) error {
	s := (*Server)(h)
	known, removed := s.members.lookup(m.From)
	if removed {
		return ErrIDRemoved
	}
	if !known {
		s.peerFinder.find(s, m.From)
	}
	if m.Type == raftpb.MsgProp && !s.forwarded.dropRepeats(&m) {
		return nil
	}
	return s.node.Step(ctx, m)
}

func (h *peerHandler) IsRemoved(id uint64) bool { return (*Server)(h).members.isRemoved(id) }

func (h *peerHandler) ReportUnreachable(id uint64) { (*Server)(h).node.ReportUnreachable(id) }

func (h *peerHandler) ReportSnapshot(id uint64, st raft.SnapshotStatus) {
	(*Server)(h).node.ReportSnapshot(id, st)
}

// OpenSnapshot streams the key space as it is now, which includes every
// entry up to meta.Index (and maybe more: applying is idempotent, so the
// receiver skips entries its restored key space already holds).
func (h *peerHandler) OpenSnapshot(meta raftpb.SnapshotMetadata) (io.ReadCloser, error) {
	s := (*Server)(h)
	pit, err := s.kv.OpenSnapshot()
	if err != nil {
		return nil, err
	}
	if pit.ConsistentIndex() < meta.Index {
		pit.Close()
		return nil, fmt.Errorf("key space at index %d is behind snapshot %d", pit.ConsistentIndex(), meta.Index)
	}
	pr, pw := io.Pipe()
	go func() {
		defer pit.Close()
		pw.CloseWithError(pit.Stream(pw))
	}()
	return pr, nil
}

func (h *peerHandler) ReceiveSnapshot(meta raftpb.SnapshotMetadata, data io.Reader) error {
	s := (*Server)(h)
	f, err := os.CreateTemp(s.dirs.Incoming(), "recv-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("receive snapshot %d: %w", meta.Index, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), s.incomingPath(meta))
}

func (h *peerHandler) ClusterInfo() []byte { return (*Server)(h).members.marshal() }

// incomingPath is where a received snapshot waits for its Ready.
func (s *Server) incomingPath(meta raftpb.SnapshotMetadata) string {
	return filepath.Join(s.dirs.Incoming(), fmt.Sprintf("%016x-%016x.data", meta.Term, meta.Index))
}

// u64 encodes an ID for a ReadIndex context.
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

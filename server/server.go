// Package server is a synod member: it drives a raft.Node, persists its
// log (package logstore), talks to peers (package server/transport),
// applies committed requests to the key space (package mvcc) on a
// goroutine of its own, and serves linearizable reads with batched
// ReadIndex rounds. The gRPC API (package api/v3rpc) calls its methods.
//
// Where things are:
//
//   - startup.go: New opens a member in named steps (storage, bootstrap
//     or restart, raft log, state, transport, raft);
//   - raftloop.go: the raft loop, which handles each Ready;
//   - applier.go: the state machine (applier), which applies committed
//     entries and alone writes the key space, the member list, the
//     alarms and the lease table; memberenv.go is what it asks of the
//     rest of the member; leaseapply.go and alarm.go its lease and alarm
//     requests;
//   - request.go, propose.go, wait.go: a request's way through raft and
//     back to its caller; reads.go: linearizable reads;
//   - lease.go: the leader's side of leases (expiry, checkpoints,
//     keep-alives); cluster.go, membership.go: membership changes;
//     maintenance.go, restore.go, compactor.go: the rest of the API.
//
// Goroutines and what each owns:
//
//   - the raft loop: ticks the node and handles each Ready — sends the
//     messages that may go before the write, persists (one WAL group
//     commit), sends the rest, and hands committed entries to the apply
//     goroutine without waiting for it;
//   - the apply goroutine: runs the applier, which owns the key space's
//     writes, the member list, the conf state, the applied index and
//     term, the alarms and the lease table; it triggers snapshots, which
//     are taken in the background;
//   - the propose loop: hands the queued requests to raft in batches;
//   - the read loop: one ReadIndex round at a time for all the reads that
//     arrived meanwhile;
//   - the lease loop: expires leases on the leader and checkpoints them;
//   - publish (until this member's name and client URLs are in the
//     cluster and a leader is known: ReadyNotify), hastenFirstElection (at start-up), the auto compaction
//     loop (when configured), and short-lived ones that propose an alarm,
//     look a peer up or take a snapshot; all stop with the member;
//   - the transport's goroutines (peer streams, snapshot streams).
package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/logstore"
	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/server/transport"
	"github.com/synod-db/synod/server/watch"
	"github.com/synod-db/synod/snap"
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
	fs         diskfs.FS       // what they are on

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

	// The state machine: ap applies committed entries and alone writes
	// the key space (kv), the member list, the alarms and the lease
	// table; the rest of the member reads them.
	ap       *applier
	alarms   *alarmSet
	watchHub *watch.Hub
	leases   *leaseState

	snapshotting atomic.Bool
	raisingAlarm atomic.Bool
	stopping     chan struct{}
	stopOnce     sync.Once
	done         chan struct{}
	wg           sync.WaitGroup
	removed      chan struct{} // closed when this member learns it was removed
	ready        chan struct{} // closed once published with a leader known (ReadyNotify)
	removedOnce  sync.Once

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

// Start runs the member's goroutines.
func (s *Server) Start() {
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.raftLoop() }()
	go func() { defer s.wg.Done(); s.applyLoop() }()
	go func() { defer s.wg.Done(); s.readLoop() }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.proposeLoop() }()
	if !s.cfg.SlowFirstElection {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.hastenFirstElection() }()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.publish() }()
	s.startLeases()
	if ac := s.cfg.AutoCompaction; ac.Period > 0 || ac.Revisions > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.compactLoop() }()
	}
	if s.cfg.CorruptCheckTime > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.corruptCheckLoop() }()
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
	// A name of its own: the transport may receive two snapshots at once.
	tmp := filepath.Join(s.dirs.Incoming(), fmt.Sprintf("recv-%d", recvSeq.Add(1)))
	f, err := s.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("receive snapshot %d: %w", meta.Index, err)
	}
	if _, err := io.Copy(f, data); err != nil {
		f.Close()
		s.fs.Remove(tmp)
		return fmt.Errorf("receive snapshot %d: %w", meta.Index, err)
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(tmp)
		return fmt.Errorf("receive snapshot %d: %w", meta.Index, err)
	}
	return s.fs.Rename(tmp, s.incomingPath(meta))
}

func (h *peerHandler) ClusterInfo() []byte { return (*Server)(h).members.marshal() }

// recvSeq numbers the files of snapshots being received.
var recvSeq atomic.Uint64

// incomingPath is where a received snapshot waits for its Ready.
func (s *Server) incomingPath(meta raftpb.SnapshotMetadata) string {
	return filepath.Join(s.dirs.Incoming(), fmt.Sprintf("%016x-%016x.data", meta.Term, meta.Index))
}

// u64 encodes an ID for a ReadIndex context.
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

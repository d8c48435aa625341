package server

import (
	"context"
	"crypto/sha256"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/raft"
)

// Version is the etcd release whose API synod implements, which it
// reports wherever etcd reports its own version (Status, /version,
// synod --version): clients and tools pick their behaviour by it.
const Version = "3.7.3"

// ClusterVersion is the cluster version etcd reports for Version: its
// major and minor release.
const ClusterVersion = "3.7.0"

// Status describes the member for the Maintenance.Status call.
type Status struct {
	Leader, RaftIndex, RaftTerm, AppliedIndex uint64
	DBSize                                    int64
	// DBSizeInUse is the logical size of the key space and its history,
	// which the space quota is compared with (mvcc.Store.LogicalSize),
	// plus the store's own records (mvcc.Store.SizeInUse).
	DBSizeInUse int64
	IsLearner   bool
	Errors      []string
}

// Status returns the member's status.
func (s *Server) Status() Status {
	st := s.node.Status()
	m, _ := s.members.get(s.id)
	out := Status{
		Leader:       st.Lead,
		RaftIndex:    st.Commit,
		RaftTerm:     st.Term,
		AppliedIndex: s.AppliedIndex(),
		DBSize:       s.kv.DiskSize(),
		IsLearner:    m.IsLearner,
	}
	if inUse, err := s.kv.SizeInUse(); err == nil {
		out.DBSizeInUse = inUse
	} else {
		out.DBSizeInUse = s.kv.LogicalSize()
	}
	for _, a := range s.alarms.list(pb.AlarmType_NONE) {
		out.Errors = append(out.Errors, "memberID:"+formatID(a.MemberID)+" alarm:"+a.Alarm.String())
	}
	return out
}

func formatID(id uint64) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b)
}

// MoveLeader hands leadership to transferee and waits until it leads.
// Only the leader can do it.
func (s *Server) MoveLeader(ctx context.Context, transferee uint64) error {
	lead := s.lead.Load()
	if lead != s.id {
		return ErrNotLeader
	}
	if lead == transferee {
		return nil
	}
	m, ok := s.members.get(transferee)
	if !ok {
		return ErrMemberNotFound
	}
	if m.IsLearner {
		return ErrLearnerNotReady
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	s.node.TransferLeadership(cctx, s.id, transferee)
	for s.lead.Load() != transferee {
		lc := s.leaderChanged()
		if s.lead.Load() == transferee {
			break
		}
		select {
		case <-lc:
		case <-time.After(s.cfg.HeartbeatInterval):
			if s.node.Status().LeadTransferee == raft.None && s.lead.Load() == s.id {
				// The transfer was aborted (it timed out in raft): ask again.
				s.node.TransferLeadership(cctx, s.id, transferee)
			}
		case <-cctx.Done():
			return s.timeoutError(ctx, cctx)
		case <-s.stopping:
			return ErrStopped
		}
	}
	return nil
}

// TransferLeadershipOnStop hands leadership to the most up-to-date voter
// before a graceful stop so clients see no election timeout.
func (s *Server) TransferLeadershipOnStop(ctx context.Context) {
	if s.lead.Load() != s.id {
		return
	}
	st := s.node.Status()
	var best uint64
	var bestMatch uint64
	for id, pr := range st.Progress {
		if id == s.id || pr.IsLearner {
			continue
		}
		if pr.Match >= bestMatch {
			best, bestMatch = id, pr.Match
		}
	}
	if best == 0 {
		return
	}
	if err := s.MoveLeader(ctx, best); err != nil {
		s.lg.Warn("leadership transfer before stopping failed", "err", err)
	}
}

// Snapshot streams the whole key space (a consistent copy) to w, padded
// to a multiple of 512 bytes, followed by the SHA-256 of everything before
// it, which etcd clients check.
func (s *Server) Snapshot(w io.Writer) error {
	pit, err := s.kv.OpenSnapshot()
	if err != nil {
		return err
	}
	defer pit.Close()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	if err := pit.Stream(cw); err != nil {
		return err
	}
	// etcd clients accept a snapshot only if the data before the digest
	// is a whole number of 512-byte pages (etcd's is a database file):
	// pad with zeros, which a restore ignores after the stream's end.
	if rem := cw.n % snapshotPage; rem != 0 {
		if _, err := cw.Write(make([]byte, snapshotPage-rem)); err != nil {
			return err
		}
	}
	_, err = w.Write(h.Sum(nil))
	return err
}

// snapshotPage is the alignment etcd clients expect of snapshot data.
const snapshotPage = 512

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// HashKV returns the hash of the key space at rev (0: current) and the
// compact revision, to compare members.
func (s *Server) HashKV(rev int64) (uint32, int64, int64, error) {
	if rev == 0 {
		rev = s.kv.Rev()
	}
	h, compacted, err := s.kv.HashByRev(rev)
	return h, compacted, rev, err
}

// Hash returns the hash of the whole store.
func (s *Server) Hash() (uint32, error) { return s.kv.Hash() }

// Defragment returns the space freed by compaction to the file system.
func (s *Server) Defragment(ctx context.Context) error { return s.kv.Defragment(ctx) }

// Alarm lists, raises or clears alarms through raft.
func (s *Server) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if r.Action == pb.AlarmRequest_GET {
		return &pb.AlarmResponse{Header: s.Header(), Alarms: s.alarms.list(r.Alarm)}, nil
	}
	out, err := proposeFor[*pb.AlarmResponse](ctx, s.propose, &pb.InternalRaftRequest{Alarm: r})
	if err != nil {
		return nil, err
	}
	out.Header = s.Header()
	return out, nil
}

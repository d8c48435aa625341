package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/synod-db/synod/internal/endpoint"
)

// ErrCorrupt refuses writes while the CORRUPT alarm is raised: a member's
// key space differs from the others' at the same revision, and writing
// on would spread whatever went wrong.
var ErrCorrupt = errors.New("server: corrupt cluster")

// corruptCheckLoop runs checkCorruption every CorruptCheckTime while this
// member leads (etcd's --corrupt-check-time).
func (s *Server) corruptCheckLoop() {
	t := time.NewTicker(s.cfg.CorruptCheckTime)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopping:
			return
		}
		if s.lead.Load() != s.id {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		if err := s.checkCorruption(ctx); err != nil {
			s.lg.Warn("corruption check", "err", err)
		}
		cancel()
	}
}

// checkCorruption compares every other member's HashKV (asked through
// its client URL) with the leader's, all at the lowest revision any of
// them is at. A member whose hash differs, after the same compaction,
// holds a different history: it gets the CORRUPT alarm. If the members
// that differ are a majority of those compared and agree among
// themselves, the leader is the odd one and gets it. A member compacted
// differently, or silent, is checked next time.
func (s *Server) checkCorruption(ctx context.Context) error {
	// Compare everyone at one revision, the lowest any member is at, so
	// that the members that differ from the leader can be compared with
	// each other too.
	var peers []Member
	at := s.kv.Rev()
	for _, m := range s.members.list() {
		if m.ID == s.id || len(m.ClientURLs) == 0 {
			continue
		}
		if rev, err := revisionOfPeer(ctx, m.ClientURLs[0]); err == nil {
			peers = append(peers, m)
			at = min(at, rev)
		}
	}
	var differ []uint64
	var others []peerAnswer
	compared := 0
	for _, m := range peers {
		a, ok := s.comparePeer(ctx, m, at)
		if !ok {
			continue
		}
		compared++
		if a.hash != a.own {
			differ = append(differ, m.ID)
			others = append(others, a)
		}
	}
	if len(differ) == 0 {
		return nil
	}
	corrupt := differ
	agree := true
	for _, o := range others[1:] {
		agree = agree && o.rev == others[0].rev && o.hash == others[0].hash
	}
	if agree && len(differ)*2 > compared {
		corrupt = []uint64{s.id}
	}
	for _, id := range corrupt {
		s.lg.Error("found data inconsistency with peers", "member", formatID(id), "compared-members", compared, "differing-members", len(differ))
		req := &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT}
		if _, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: req}); err != nil {
			return fmt.Errorf("raise CORRUPT for %s: %w", formatID(id), err)
		}
	}
	return nil
}

// CheckInitialHash compares this member's HashKV at its revision with
// every other member's at the same revision, before it serves (etcd's
// InitialCorruptCheck feature gate): a member restarted on data that
// went bad while it was down must not serve it. Members that cannot
// answer at that revision (behind, compacted past it, down) are skipped.
func (s *Server) CheckInitialHash(ctx context.Context) error {
	cur := s.kv.Rev()
	for _, m := range s.members.list() {
		if m.ID == s.id || len(m.ClientURLs) == 0 {
			continue
		}
		a, ok := s.comparePeer(ctx, m, cur)
		if ok && a.hash != a.own {
			s.lg.Error("found data inconsistency with peers", "member", formatID(m.ID), "revision", a.rev, "local-hash", a.own, "peer-hash", a.hash)
			return fmt.Errorf("initial corruption check: found data inconsistency with peers: member %s hashes revision %d to %d, this member to %d; restore this member from a snapshot of a healthy one", formatID(m.ID), a.rev, a.hash, a.own)
		}
	}
	s.lg.Info("initial corruption checking passed; no corruption", "revision", cur)
	return nil
}

// peerAnswer is a member's hash at a revision, beside this member's own.
type peerAnswer struct {
	rev       int64
	hash, own uint32
}

// comparePeer gets m's HashKV at revision cur, or at m's own revision if
// m is behind, and this member's at the same revision. ok is false when
// they cannot be compared: m did not answer, or the two compacted
// differently (a hash covers what compaction kept).
func (s *Server) comparePeer(ctx context.Context, m Member, cur int64) (peerAnswer, bool) {
	h, err := hashOfPeer(ctx, m.ClientURLs[0], cur)
	if errors.Is(err, rpctypes.ErrGRPCFutureRev) {
		h, err = hashOfPeer(ctx, m.ClientURLs[0], 0)
	}
	if err != nil {
		s.lg.Debug("corruption check: no hash from a member", "member", formatID(m.ID), "err", err)
		return peerAnswer{}, false
	}
	if h.HashRevision > cur {
		return peerAnswer{}, false // it moved past cur meanwhile
	}
	own, compacted, err := s.kv.HashByRev(h.HashRevision)
	// -1, etcd's "never compacted", is the store's 0.
	if err != nil || compacted != max(h.CompactRevision, 0) {
		return peerAnswer{}, false
	}
	return peerAnswer{rev: h.HashRevision, hash: h.Hash, own: own}, true
}

// hashOfPeer asks a member for its HashKV at rev, through its client URL.
func hashOfPeer(ctx context.Context, clientURL string, rev int64) (resp *pb.HashKVResponse, err error) {
	err = withPeer(ctx, clientURL, func(c pb.MaintenanceClient) error {
		resp, err = c.HashKV(ctx, &pb.HashKVRequest{Revision: rev})
		return err
	})
	return resp, err
}

// revisionOfPeer asks a member for its current revision.
func revisionOfPeer(ctx context.Context, clientURL string) (rev int64, err error) {
	err = withPeer(ctx, clientURL, func(c pb.MaintenanceClient) error {
		st, err := c.Status(ctx, &pb.StatusRequest{})
		if err == nil {
			rev = st.GetHeader().GetRevision()
		}
		return err
	})
	return rev, err
}

// withPeer calls do with a Maintenance client of the member at clientURL.
func withPeer(ctx context.Context, clientURL string, do func(pb.MaintenanceClient) error) error {
	addr, err := endpoint.Parse(clientURL)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return endpoint.Dial(ctx, &net.Dialer{}, addr)
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	return do(pb.NewMaintenanceClient(conn))
}

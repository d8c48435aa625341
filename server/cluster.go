package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"

	"github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// IsLearner reports whether this member is a learner, which serves only
// serializable reads and status, as in etcd.
func (s *Server) IsLearner() bool {
	m, ok := s.members.get(s.id)
	return ok && m.IsLearner
}

// Members returns the member list as of the applied index.
func (s *Server) Members() []Member { return s.members.list() }

// MemberAdd adds a member (a learner if isLearner) with the given peer
// URLs and returns it with the new member list. The new member is then
// started with --initial-cluster-state existing.
func (s *Server) MemberAdd(ctx context.Context, peerURLs []string, isLearner bool) (Member, []Member, error) {
	if len(peerURLs) == 0 {
		return Member{}, nil, fmt.Errorf("%w: no peer URL given", ErrInvalidPeerURL)
	}
	for _, u := range peerURLs {
		if err := checkURL(u); err != nil {
			return Member{}, nil, err
		}
	}
	m := Member{ID: MemberID(peerURLs, s.cfg.InitialClusterToken, time.Now().UnixNano()), PeerURLs: slices.Clone(peerURLs), IsLearner: isLearner}
	if err := s.members.validateAdd(m); err != nil {
		return Member{}, nil, err
	}
	if err := s.checkStartedForAdd(isLearner); err != nil {
		return Member{}, nil, err
	}
	typ := raftpb.ConfChangeAddNode
	if isLearner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	members, err := s.proposeConfChange(ctx, typ, m)
	return m, members, err
}

// MemberRemove removes a member.
func (s *Server) MemberRemove(ctx context.Context, id uint64) ([]Member, error) {
	m, ok := s.members.get(id)
	if !ok {
		return nil, ErrMemberNotFound
	}
	if !m.IsLearner {
		if err := s.checkStartedForRemove(id); err != nil {
			return nil, err
		}
	}
	return s.proposeConfChange(ctx, raftpb.ConfChangeRemoveNode, Member{ID: id})
}

// MemberUpdate changes a member's peer URLs.
func (s *Server) MemberUpdate(ctx context.Context, id uint64, peerURLs []string) ([]Member, error) {
	m, ok := s.members.get(id)
	if !ok {
		return nil, ErrMemberNotFound
	}
	for _, u := range peerURLs {
		if err := checkURL(u); err != nil {
			return nil, err
		}
	}
	for _, other := range s.members.list() {
		if other.ID != id && slices.ContainsFunc(other.PeerURLs, func(u string) bool { return slices.Contains(peerURLs, u) }) {
			return nil, ErrPeerURLExists
		}
	}
	m.PeerURLs = slices.Clone(peerURLs)
	return s.proposeConfChange(ctx, raftpb.ConfChangeUpdateNode, m)
}

// MemberPromote makes a learner a voter once it has caught up with the
// leader (its log within 90% of the leader's, as etcd requires).
func (s *Server) MemberPromote(ctx context.Context, id uint64) ([]Member, error) {
	m, ok := s.members.get(id)
	if !ok {
		return nil, ErrMemberNotFound
	}
	if !m.IsLearner {
		return nil, ErrMemberNotLearner
	}
	if s.lead.Load() != s.id {
		return nil, ErrNotLeader
	}
	st := s.node.Status()
	pr, ok := st.Progress[id]
	if !ok || !learnerReady(pr, st.Commit) {
		return nil, ErrLearnerNotReady
	}
	m.IsLearner = false
	return s.proposeConfChange(ctx, raftpb.ConfChangeAddNode, m)
}

// learnerReady says whether a learner's log is close enough to the
// leader's to count as a voter without hurting availability.
func learnerReady(pr tracker.Progress, commit uint64) bool {
	return pr.Match > 0 && float64(pr.Match) >= 0.9*float64(commit)
}

// checkStartedForAdd refuses to add a member, a learner included, when
// this member is not connected to a quorum of the voters counted with
// the new member as down: a member of the current quorum is down, and
// the change (whose entry needs a quorum too) would push the cluster
// nearer to losing it; unless the check is off
// (--strict-reconfig-check=false). As in etcd, a voter is refused with
// ErrNotEnoughStarted and a learner with ErrUnhealthy.
func (s *Server) checkStartedForAdd(isLearner bool) error {
	if s.cfg.SkipReconfigCheck {
		return nil
	}
	voters := s.voters()
	if len(voters) == 1 && s.activeVoters(voters) == 1 {
		// A lone member may take a second member, though two voters
		// cannot commit until the second starts: it is how a cluster
		// restored from one member's backup grows again, as etcd
		// documents.
		return nil
	}
	if s.activeVoters(voters) < (len(voters)+1)/2+1 {
		if isLearner {
			return ErrUnhealthy
		}
		return ErrNotEnoughStarted
	}
	return nil
}

// checkStartedForRemove refuses to remove a voter when the remaining
// started members would not form a quorum.
func (s *Server) checkStartedForRemove(id uint64) error {
	if s.cfg.SkipReconfigCheck {
		return nil
	}
	voters := slices.DeleteFunc(s.voters(), func(x uint64) bool { return x == id })
	active := s.activeVoters(voters)
	if active < len(voters)/2+1 {
		return ErrNotEnoughStarted
	}
	return nil
}

func (s *Server) voters() []uint64 {
	var out []uint64
	for _, m := range s.members.list() {
		if !m.IsLearner {
			out = append(out, m.ID)
		}
	}
	return out
}

// activeVoters counts this member plus the peers the transport has been
// connected to for a while.
// PeerActive reports whether this member has a working stream to member
// id. Membership changes count only such members as started, so a member
// just stopped still counts until its stream breaks: tests and operators
// can wait for that before asking for a change.
func (s *Server) PeerActive(id uint64) bool { return !s.PeerActiveSince(id).IsZero() }

// PeerActiveSince is when this member's stream to member id came up;
// zero if it is down. Membership changes count a member as started once
// its stream has been up a heartbeat interval.
func (s *Server) PeerActiveSince(id uint64) time.Time { return s.tr.ActiveSince(id) }

func (s *Server) activeVoters(ids []uint64) int {
	n := 0
	for _, id := range ids {
		if id == s.id {
			n++
			continue
		}
		if since := s.tr.ActiveSince(id); !since.IsZero() && time.Since(since) >= s.cfg.HeartbeatInterval {
			n++
		}
	}
	return n
}

// proposeConfChange replicates a membership change and waits for it.
func (s *Server) proposeConfChange(ctx context.Context, typ raftpb.ConfChangeType, m Member) ([]Member, error) {
	mctx, _ := json.Marshal(m)
	id := s.nextRequestID()
	cc := raftpb.ConfChange{Type: typ, NodeID: m.ID, Context: mctx, ID: id}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.waitLeader(ctx, cctx); err != nil {
		return nil, err
	}
	ch := s.w.register(id)
	if err := s.node.ProposeConfChange(cctx, cc); err != nil {
		s.w.cancel(id)
		return nil, s.timeoutError(ctx, cctx)
	}
	s.w.proposed(id, s.term.Load())
	select {
	case res := <-ch:
		if res.err != nil {
			return nil, res.err
		}
		out, ok := res.resp.(confChangeResult)
		if !ok {
			return nil, fmt.Errorf("%w (the apply step answered with %T)", ErrResultUnknown, res.resp)
		}
		return out.members, nil
	case <-cctx.Done():
		s.w.cancel(id)
		return nil, s.timeoutError(ctx, cctx)
	case <-s.stopping:
		return nil, ErrStopped
	}
}

// publish records this member's name and client URLs in the cluster (via
// raft), retrying until it succeeds, so that MemberList shows where
// clients reach it; then, once a leader is known, it makes the member
// ready (ReadyNotify).
func (s *Server) publish() {
	if !s.publishAttributes() {
		return
	}
	for s.Leader() == 0 {
		select {
		case <-s.leaderChanged():
		case <-s.stopping:
			return
		}
	}
	close(s.ready)
}

// ReadyNotify returns a channel closed once the member is published in
// the cluster and knows a leader: a client served after that sees the
// member in MemberList and a leader in Status, as after etcd's "ready to
// serve client requests".
func (s *Server) ReadyNotify() <-chan struct{} { return s.ready }

// publishAttributes proposes this member's attributes until they are
// applied; it reports false if the member stopped first.
func (s *Server) publishAttributes() bool {
	req := &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        s.id,
		MemberAttributes: &membershippb.Attributes{Name: s.cfg.Name, ClientUrls: s.cfg.ClientURLs},
	}}
	for {
		if m, ok := s.members.get(s.id); ok && m.Name == s.cfg.Name && slices.Equal(m.ClientURLs, s.cfg.ClientURLs) {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		_, err := s.propose(ctx, req)
		cancel()
		if err == nil {
			if _, ok := s.members.get(s.id); ok {
				return true
			}
		}
		select {
		case <-time.After(s.cfg.HeartbeatInterval * 5):
		case <-s.stopping:
			return false
		}
	}
}

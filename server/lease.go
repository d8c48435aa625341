package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/server/kvapply"
)

// Leases, as the server runs them:
//
//   - Grants, revocations and checkpoints are raft entries. Applying one
//     changes the lessor's table (package lease) and the lease record in
//     the key space's database in the same Pebble batch as the consistent
//     index, so each is applied exactly once and survives restarts and
//     snapshots; a revocation deletes the lease's keys in that same batch,
//     as one revision.
//   - Which keys belong to which lease follows the applied writes
//     (leaseTrack) and is rebuilt from the live keys when the store is
//     opened or replaced by a snapshot.
//   - Only the leader counts time. The lease loop promotes the lessor once
//     this member leads and has applied everything committed before (so
//     the table is complete), giving every lease its TTL plus two election
//     timeouts; it then proposes a revocation for each lease whose deadline
//     passes (after confirming leadership with a ReadIndex round) and, if
//     configured, checkpoints remaining TTLs. Keep-alives are answered by
//     the leader only (the API layer forwards them from followers).

// LeaseConfig tunes the leases of a member. It is Config.Lease.
type LeaseConfig struct {
	// CheckpointInterval, if positive, makes the leader record every
	// lease's remaining TTL through raft this often, so that after a
	// restart or a leader change a lease resumes its countdown instead of
	// starting over from its whole TTL (etcd's lease checkpointing). Zero
	// disables it: a restart then gives every lease its full TTL again.
	CheckpointInterval time.Duration
	// Now is the clock leases count time with; nil is time.Now. Tests
	// give the members of a cluster one fake clock, so that a lease's
	// countdown moves when the test says rather than with the wall.
	Now func() time.Time
}

// ErrStaleExpiry answers an expiry revocation that a deposed leader
// proposed, or one about an earlier grant of the lease ID: it is not
// applied. Only the server's own lease loop sees it. The apply step
// returns it refused (kvapply.Refuse), as every member refuses it: it is
// not a storage failure.
var ErrStaleExpiry = errors.New("server: lease expiry decided by a deposed leader or about an earlier grant; ignored")

// Bounds of the leader's expiry work.
const (
	maxRevokesPerRound     = 500  // leases revoked per expiry check
	revokeConcurrency      = 16   // revocations in flight at once
	maxCheckpointsPerEntry = 1000 // checkpoints per raft entry
)

// leaseState is a member's lease state.
type leaseState struct {
	les     *lease.Lessor
	checker kvapply.LeaseChecker // les.Exists, made once
	cfg     LeaseConfig

	mu         sync.Mutex
	primaryChg chan struct{} // closed and replaced at every promotion or demotion
}

// openLeases loads the lease table from the key space. open calls it once
// the key space is final (after catchUpKV), before anything is applied.
func (s *Server) openLeases(cfg LeaseConfig) error {
	les := lease.New(lease.Config{RevokeRetry: s.cfg.RequestTimeout, Now: cfg.Now})
	ls := &leaseState{les: les, checker: kvapply.LeaseCheckerFunc(les.Exists), cfg: cfg, primaryChg: make(chan struct{})}
	if err := ls.load(s.kv, s.lg); err != nil {
		return err
	}
	s.leases = ls
	return nil
}

// startLeases runs the lease loop (Start calls it).
func (s *Server) startLeases() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.leaseLoop(s.leases)
	}()
}

// primaryChanged returns a channel closed at the next promotion or
// demotion of the lessor.
func (ls *leaseState) primaryChanged() <-chan struct{} {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.primaryChg
}

// setPrimary promotes (with extend) or demotes the lessor and wakes those
// waiting for it.
func (ls *leaseState) setPrimary(on bool, extend time.Duration) {
	if on {
		ls.les.Promote(extend)
	} else {
		ls.les.Demote()
	}
	ls.mu.Lock()
	close(ls.primaryChg)
	ls.primaryChg = make(chan struct{})
	ls.mu.Unlock()
}

// leaseLoop follows this member's leadership: while it leads, its lessor
// is primary and expires leases.
func (s *Server) leaseLoop(ls *leaseState) {
	for {
		lc := s.leaderChanged()
		if s.Leader() == s.id {
			s.leadLeases(ls, lc)
			if ls.les.Primary() {
				ls.setPrimary(false, 0)
				s.lg.Info("lessor demoted")
			}
		}
		select {
		case <-lc:
		case <-s.stopping:
			return
		}
	}
}

// leaseExtend is how much longer than its TTL a lease lives after a
// leader change: the previous leader may have renewed it until it noticed
// it was deposed, up to about an election timeout after the new leader
// was elected; two election timeouts cover that with room to spare.
func (s *Server) leaseExtend() time.Duration { return 2 * s.cfg.ElectionTimeout }

// leaseCheckEvery is how often the leader looks for expired leases.
func (s *Server) leaseCheckEvery() time.Duration {
	return min(500*time.Millisecond, s.cfg.ElectionTimeout/2)
}

// leadLeases is the leader's lease duty, until lc is closed (leadership
// changed) or the member stops.
func (s *Server) leadLeases(ls *leaseState, lc <-chan struct{}) {
	// Apply everything committed before this term first: a grant, a
	// revocation or a checkpoint reset made under the previous leader
	// must be in the table before deadlines are set from it. A
	// linearizable read waits for exactly that.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		err := s.LinearizableRead(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-lc:
			return
		case <-s.stopping:
			return
		case <-time.After(s.cfg.HeartbeatInterval):
		}
	}
	select {
	case <-lc:
		return
	default:
	}
	// The term this member leads in, read after the read above made sure
	// the raft loop had published it. Expiries carry it: if leadership
	// has already moved on, they are refused when applied.
	term := s.node.Status().Term
	ls.setPrimary(true, s.leaseExtend())
	s.lg.Info("lessor promoted", "leases", ls.les.Len(), "extend", s.leaseExtend())
	check := time.NewTicker(s.leaseCheckEvery())
	defer check.Stop()
	var cpc <-chan time.Time
	if iv := ls.cfg.CheckpointInterval; iv > 0 {
		cp := time.NewTicker(iv)
		defer cp.Stop()
		cpc = cp.C
	}
	for {
		select {
		case <-lc:
			return
		case <-s.stopping:
			return
		case <-check.C:
			s.revokeExpired(ls, term)
		case <-cpc:
			s.checkpointLeases(ls)
		}
	}
}

// revokeExpired proposes the revocation of the leases whose deadline
// passed, after a ReadIndex round has confirmed that this member still
// leads: a leader deposed without knowing it must not revoke leases whose
// renewals now go to its successor.
func (s *Server) revokeExpired(ls *leaseState, term uint64) {
	exps := ls.les.Expired(maxRevokesPerRound)
	if len(exps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.LinearizableRead(ctx); err != nil {
		s.lg.Warn("not revoking expired leases: leadership not confirmed", "leases", len(exps), "err", err)
		return // Expired reports them again after RevokeRetry
	}
	sem := make(chan struct{}, revokeConcurrency)
	var wg sync.WaitGroup
	for _, exp := range exps {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req := &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: exp.ID}}
			_, err := s.proposeEntry(ctx, req, &expiry{term: term, grantIndex: exp.GrantIndex})
			if err != nil && !errors.Is(err, lease.ErrLeaseNotFound) && !errors.Is(err, ErrStopped) && !errors.Is(err, ErrStaleExpiry) {
				s.lg.Warn("revoke expired lease", "lease", fmt.Sprintf("%016x", exp.ID), "err", err)
			}
		}()
	}
	wg.Wait()
}

// checkpointLeases proposes the remaining TTL of every lease whose
// countdown moved since its last checkpoint.
func (s *Server) checkpointLeases(ls *leaseState) {
	cps := ls.les.Checkpoints()
	for len(cps) > 0 {
		n := min(len(cps), maxCheckpointsPerEntry)
		req := &pb.LeaseCheckpointRequest{Checkpoints: make([]*pb.LeaseCheckpoint, n)}
		for i, cp := range cps[:n] {
			req.Checkpoints[i] = &pb.LeaseCheckpoint{ID: cp.ID, Remaining_TTL: cp.RemainingTTL}
		}
		cps = cps[n:]
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		_, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: req})
		cancel()
		if err != nil {
			s.lg.Warn("checkpoint leases", "leases", n, "err", err)
			return
		}
	}
}

// newLeaseID picks an ID for a grant that asked for none. It comes from
// the request ID generator (member bits, start time, counter), so members
// do not collide; a collision with an existing lease fails the grant at
// apply time, and LeaseGrant then retries with another.
func (s *Server) newLeaseID() int64 {
	for {
		if id := int64(s.nextRequestID() & math.MaxInt64); id != 0 {
			return id
		}
	}
}

// LeaseGrant grants a lease through raft. A TTL below the cluster's
// minimum (lease.MinTTL of the election timeout) is raised to it here, at
// proposal time, so that every member applies the same TTL; ID 0 asks the
// server to pick one.
func (s *Server) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > lease.MaxTTL {
		return nil, lease.ErrTTLTooLarge
	}
	req := &pb.LeaseGrantRequest{ID: r.ID, TTL: max(r.TTL, lease.MinTTL(s.cfg.ElectionTimeout))}
	pick := r.ID == 0
	for attempt := 0; ; attempt++ {
		if pick {
			req.ID = s.newLeaseID()
		}
		out, err := proposeFor[*pb.LeaseGrantResponse](ctx, s.proposeWrite, &pb.InternalRaftRequest{LeaseGrant: req})
		if pick && attempt < 3 && errors.Is(err, lease.ErrLeaseExists) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.fillHeader(&out.Header, out.Header.GetRevision())
		return out, nil
	}
}

// LeaseRevoke revokes a lease through raft, deleting its keys.
func (s *Server) LeaseRevoke(ctx context.Context, id int64) (*pb.LeaseRevokeResponse, error) {
	out, err := proposeFor[*pb.LeaseRevokeResponse](ctx, s.propose, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}})
	if err != nil {
		return nil, err
	}
	s.fillHeader(&out.Header, out.Header.GetRevision())
	return out, nil
}

// LeaseRenew renews a lease and returns its TTL. Only the leader renews:
// elsewhere it returns ErrNotLeader (the API layer forwards the keep-alive
// to the leader). A lease that does not exist, or expired and is being
// revoked, gives lease.ErrLeaseNotFound.
func (s *Server) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	ls := s.leases
	caughtUp := false
	for {
		if s.lead.Load() != s.id {
			if err := s.awaitPrimary(ctx, ls); err != nil {
				return 0, err
			}
		}
		ttl, reset, err := ls.les.Renew(id)
		switch {
		case errors.Is(err, lease.ErrNotPrimary):
			if err := s.awaitPrimary(ctx, ls); err != nil {
				return 0, err
			}
			continue
		case errors.Is(err, lease.ErrLeaseNotFound) && !caughtUp:
			// Granted but not applied here yet?
			caughtUp = true
			if err := s.awaitApplied(ctx); err != nil {
				return 0, err
			}
			continue
		case err != nil:
			return 0, err
		}
		if reset {
			// The renewal restarts the countdown: the checkpoint taken
			// before it must not shorten the lease after a leader change.
			cp := &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: id}}}
			if _, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: cp}); err != nil {
				return 0, err
			}
		}
		return ttl, nil
	}
}

// LeaseTimeToLive describes a lease. Only the leader knows how long a
// lease has left: elsewhere it returns ErrNotLeader (the API layer asks
// the leader). An unknown lease is answered with TTL -1, as etcd does.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	ls := s.leases
	caughtUp := false
	for {
		if err := s.awaitPrimary(ctx, ls); err != nil {
			return nil, err
		}
		st, err := ls.les.TimeToLive(r.ID, r.Keys)
		switch {
		case errors.Is(err, lease.ErrNotPrimary):
			continue
		case errors.Is(err, lease.ErrLeaseNotFound) && !caughtUp:
			caughtUp = true
			if err := s.awaitApplied(ctx); err != nil {
				return nil, err
			}
			continue
		case errors.Is(err, lease.ErrLeaseNotFound):
			return &pb.LeaseTimeToLiveResponse{Header: s.Header(), ID: r.ID, TTL: -1}, nil
		case err != nil:
			return nil, err
		}
		return &pb.LeaseTimeToLiveResponse{Header: s.Header(), ID: r.ID, TTL: st.TTL, GrantedTTL: st.GrantedTTL, Keys: st.Keys}, nil
	}
}

// LeaseLeases lists the IDs of every lease, after a linearizable read so
// that a lease granted (or revoked) before the call is (or is not) listed
// whichever member answers.
func (s *Server) LeaseLeases(ctx context.Context) (*pb.LeaseLeasesResponse, error) {
	ls := s.leases
	if err := s.LinearizableRead(ctx); err != nil {
		return nil, err
	}
	ids := ls.les.Leases()
	out := &pb.LeaseLeasesResponse{Header: s.Header(), Leases: make([]*pb.LeaseStatus, len(ids))}
	for i, id := range ids {
		out.Leases[i] = &pb.LeaseStatus{ID: id}
	}
	return out, nil
}

// awaitPrimary returns once this member leads with a promoted lessor; it
// returns ErrNotLeader at once if another member leads, and waits for an
// election or a promotion in progress (bounded by the request timeout).
func (s *Server) awaitPrimary(ctx context.Context, ls *leaseState) error {
	var timeout <-chan time.Time
	for {
		lc, pc := s.leaderChanged(), ls.primaryChanged()
		lead := s.lead.Load()
		switch {
		case lead != 0 && lead != s.id:
			return ErrNotLeader
		case lead == s.id && ls.les.Primary():
			return nil
		}
		if timeout == nil {
			t := time.NewTimer(s.cfg.RequestTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-lc:
		case <-pc:
		case <-timeout:
			if s.lead.Load() == 0 {
				return ErrNoLeader
			}
			return ErrTimeout
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopping:
			return ErrStopped
		}
	}
}

// awaitApplied waits until this member has applied what it knows to be
// committed.
func (s *Server) awaitApplied(ctx context.Context) error {
	idx := s.CommittedIndex()
	if s.AppliedIndex() >= idx {
		return nil
	}
	t := time.NewTimer(s.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case <-s.applied.wait(idx):
		return nil
	case <-t.C:
		return ErrTimeout
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopping:
		return ErrStopped
	}
}

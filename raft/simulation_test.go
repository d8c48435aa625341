package raft_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/synod-db/synod/raft"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/rafttest"
)

// TestSimulation runs many seeded random executions of 3- and 5-member
// clusters under partitions, crashes (at any stage of handling a Ready),
// message loss, duplication, delay and reordering, membership changes and
// leadership transfers, and checks the safety invariants after every step
// and liveness once the faults stop.
//
// SYNOD_SIM_RUNS sets the number of seeds (default: a CI-sized number),
// SYNOD_SIM_FIRST the first of them (default 1); SYNOD_SIM_SEED replays a
// single seed.
func TestSimulation(t *testing.T) {
	runs := 200
	if testing.Short() {
		runs = 24
	}
	if s := os.Getenv("SYNOD_SIM_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SYNOD_SIM_RUNS=%q: %v", s, err)
		}
		runs = n
	}
	seeds := make([]uint64, 0, runs)
	if s := os.Getenv("SYNOD_SIM_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SYNOD_SIM_SEED=%q: %v", s, err)
		}
		seeds = append(seeds, seed)
	} else {
		first := uint64(1)
		if s := os.Getenv("SYNOD_SIM_FIRST"); s != "" {
			f, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("SYNOD_SIM_FIRST=%q: %v", s, err)
			}
			first = f
		}
		for i := 0; i < runs; i++ {
			seeds = append(seeds, first+uint64(i))
		}
	}
	var total simStats
	for _, seed := range seeds {
		stats, err := runSimulation(seed, 3000)
		total.add(stats)
		if err != nil {
			t.Fatalf("simulation seed %d failed: %v\nreplay: SYNOD_SIM_SEED=%d go test ./raft/ -run TestSimulation -v", seed, err, seed)
		}
	}
	t.Logf("simulation: %d runs, %s", len(seeds), total)
	if total.committed == 0 || total.reads == 0 || total.leaders == 0 {
		t.Fatalf("simulation exercised too little: %s", total)
	}
}

type simStats struct {
	steps, proposals, committed, reads, leaders, crashes, partitions, confChanges, transfers, snapshots, dropped int
}

func (s *simStats) add(o simStats) {
	s.steps += o.steps
	s.proposals += o.proposals
	s.committed += o.committed
	s.reads += o.reads
	s.leaders += o.leaders
	s.crashes += o.crashes
	s.partitions += o.partitions
	s.confChanges += o.confChanges
	s.transfers += o.transfers
	s.snapshots += o.snapshots
	s.dropped += o.dropped
}

func (s simStats) String() string {
	return fmt.Sprintf("steps=%d proposals=%d committed-indexes=%d reads-checked=%d leaders=%d crashes=%d partitions=%d conf-changes=%d transfers=%d snapshots-installed=%d msgs-dropped=%d",
		s.steps, s.proposals, s.committed, s.reads, s.leaders, s.crashes, s.partitions, s.confChanges, s.transfers, s.snapshots, s.dropped)
}

// sim is one execution and its checker.
type sim struct {
	seed  uint64
	rng   *rand.Rand
	c     *rafttest.Cluster
	stats simStats

	// leaders maps a term to the one member that led it.
	leaders map[uint64]uint64
	// hashes maps a log index to the state hash after applying it; every
	// member applying that index must reach the same hash.
	hashes map[uint64]uint64
	// committedTerms maps a log index to the term of the entry applied
	// there (hence committed).
	committedTerms map[uint64]uint64
	// maxCommit is the highest commit index any member ever reported.
	maxCommit uint64
	// reads maps a pending read's context to the lowest index a correct
	// answer may carry: every index committed when it was issued.
	reads  map[string]uint64
	nextOp int
	nextID uint64
	lease  bool
	calm   bool
	// crashRate is the chance of a crash at each stage of handling a Ready.
	crashRate float64
	failure   error
}

func (s *sim) fail(format string, args ...any) {
	if s.failure == nil {
		s.failure = fmt.Errorf(format, args...)
	}
}

func runSimulation(seed uint64, steps int) (simStats, error) {
	return runSimulationWith(seed, steps, nil)
}

// runSimulationWith runs one simulation; extra, if set, is an additional
// check run after every step.
func runSimulationWith(seed uint64, steps int, extra func(*sim) error) (simStats, error) {
	rng := rand.New(rand.NewPCG(seed, 42))
	size := 3
	if seed%2 == 0 {
		size = 5
	}
	opts := rafttest.Options{
		Seed:        seed,
		PreVote:     rng.IntN(2) == 0,
		CheckQuorum: rng.IntN(2) == 0,
	}
	if opts.CheckQuorum && rng.IntN(2) == 0 {
		opts.ReadOnly = raft.ReadOnlyLeaseBased
	}
	voters := make([]uint64, size)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	c, err := rafttest.New(opts, voters, nil)
	if err != nil {
		return simStats{}, err
	}
	s := &sim{
		seed: seed, rng: rng, c: c,
		leaders: map[uint64]uint64{}, hashes: map[uint64]uint64{}, reads: map[string]uint64{},
		committedTerms: map[uint64]uint64{},
		nextID:         uint64(size + 1), lease: opts.ReadOnly == raft.ReadOnlyLeaseBased,
		crashRate: []float64{0.0003, 0.003}[rng.IntN(2)],
	}
	c.Hooks = rafttest.Hooks{
		Ready: func(id uint64, rd raft.Ready) {
			s.maxCommit = max(s.maxCommit, rd.HardState.Commit)
		},
		Applied: func(id uint64, e pb.Entry, hash uint64) {
			s.checkHash(id, e.Index, hash)
			s.committedTerms[e.Index] = e.Term
		},
		SnapshotApplied: func(id uint64, meta pb.SnapshotMetadata, hash uint64) {
			s.stats.snapshots++
			s.checkHash(id, meta.Index, hash)
		},
		Crash: func(id uint64, stage rafttest.Stage) bool {
			if !s.calm && rng.Float64() < s.crashRate {
				s.stats.crashes++
				return true
			}
			return false
		},
	}
	for i := 0; i < steps && s.failure == nil; i++ {
		s.stats.steps++
		// Faults come in waves: every 600 steps, 200 calm ones let the
		// cluster make progress, so that later faults hit a busy log.
		calm := i%600 >= 400
		s.calm = calm
		if i%600 == 400 {
			c.Net.Heal()
		}
		if err := s.step(calm); err != nil {
			return s.stats, fmt.Errorf("step %d: %w", i, err)
		}
		s.checkLeaders()
		s.checkReads()
		if extra != nil && s.failure == nil {
			if err := extra(s); err != nil {
				s.fail("step %d: %v", i, err)
			}
		}
	}
	if s.failure == nil {
		if err := s.checkLiveness(); err != nil {
			return s.stats, err
		}
	}
	s.stats.committed = len(s.hashes)
	s.stats.dropped = c.Net.Dropped
	return s.stats, s.failure
}

func (s *sim) checkHash(id, index, hash uint64) {
	if want, ok := s.hashes[index]; ok && want != hash {
		s.fail("state machine safety: member %d has state %x at index %d, others %x", id, hash, index, want)
	}
	s.hashes[index] = hash
}

// runningLeaders returns the running members that believe they lead,
// with their term, in ID order. Several can, in different terms.
func runningLeaders(c *rafttest.Cluster) []leaderKey {
	var out []leaderKey
	for _, id := range c.IDs() {
		m := c.Member(id)
		if m.Node == nil {
			continue
		}
		if st := m.Node.BasicStatus(); st.RaftState == raft.StateLeader {
			out = append(out, leaderKey{id: id, term: st.Term})
		}
	}
	return out
}

// leaderKey names the leader of one term.
type leaderKey struct{ id, term uint64 }

func (s *sim) checkLeaders() {
	for _, l := range runningLeaders(s.c) {
		if other, ok := s.leaders[l.term]; ok && other != l.id {
			s.fail("election safety: members %d and %d both lead term %d", other, l.id, l.term)
		} else if !ok {
			s.leaders[l.term] = l.id
			s.stats.leaders++
		}
	}
}

func (s *sim) checkReads() {
	for _, id := range s.c.IDs() {
		m := s.c.Member(id)
		for _, rs := range m.ReadStates {
			low, ok := s.reads[string(rs.RequestCtx)]
			if !ok {
				s.fail("read index: member %d got an answer to unknown read %q", id, rs.RequestCtx)
				continue
			}
			if rs.Index < low {
				s.fail("linearizability: read %q answered at index %d on member %d, but index %d was committed before it was issued",
					rs.RequestCtx, rs.Index, id, low)
			}
			if rs.Index > s.maxCommit {
				s.fail("read index: read %q answered at index %d beyond any commit index (%d)", rs.RequestCtx, rs.Index, s.maxCommit)
			}
			s.stats.reads++
		}
		m.ReadStates = nil
	}
}

func (s *sim) alive() []uint64 {
	var ids []uint64
	for _, id := range s.c.IDs() {
		if s.c.Alive(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func (s *sim) pick(ids []uint64) (uint64, bool) {
	if len(ids) == 0 {
		return 0, false
	}
	return ids[s.rng.IntN(len(ids))], true
}

// step performs one random action; a calm step injects no new fault.
func (s *sim) step(calm bool) error {
	c := s.c
	r := s.rng.IntN(100)
	if calm && r >= 85 && r < 90 {
		r = 0
	}
	switch {
	case r < 15:
		// Time passes at the same rate for every member (lease reads
		// assume bounded drift).
		c.TickAll()
	case r < 45:
		_, err := c.ProcessAll()
		return err
	case r < 70:
		c.DeliverRound()
	case r < 80:
		if id, ok := s.pick(s.alive()); ok {
			s.nextOp++
			s.stats.proposals++
			err := c.Propose(id, []byte(fmt.Sprintf("p%d", s.nextOp)))
			if err != nil && !errors.Is(err, raft.ErrProposalDropped) {
				return err
			}
		}
	case r < 85:
		if id, ok := s.pick(s.alive()); ok {
			s.nextOp++
			ctx := fmt.Sprintf("r%d", s.nextOp)
			s.reads[ctx] = s.maxCommit
			c.ReadIndex(id, []byte(ctx))
		}
	case r < 88:
		s.changeNetwork()
	case r < 90:
		s.crashOrRestart()
	case r < 92:
		if id, ok := s.pick(s.alive()); ok {
			return c.Compact(id, uint64(s.rng.IntN(5)))
		}
	case r < 94:
		return s.changeMembership()
	case r < 95:
		if lead := c.Leader(); lead != 0 {
			voters := c.Member(lead).ConfState.Voters
			if target, ok := s.pick(voters); ok && target != lead {
				s.stats.transfers++
				c.TransferLeader(lead, target)
			}
		}
	}
	return nil
}

func (s *sim) changeNetwork() {
	c, ids := s.c, s.c.IDs()
	switch s.rng.IntN(5) {
	case 0:
		c.Net.Heal()
	case 1:
		s.stats.partitions++
		shuffled := slices.Clone(ids)
		s.rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		k := 1 + s.rng.IntN(len(shuffled)-1)
		c.Net.Partition(shuffled[:k], shuffled[k:])
	case 2:
		if lead := c.Leader(); lead != 0 {
			s.stats.partitions++
			c.Net.Isolate(lead, ids)
		}
	case 3:
		c.Net.Faults = rafttest.Faults{
			Drop:      s.rng.Float64() * 0.2,
			Duplicate: s.rng.Float64() * 0.1,
			MaxDelay:  s.rng.IntN(4),
			Reorder:   s.rng.IntN(2) == 0,
		}
	case 4:
		c.Net.Faults = rafttest.Faults{}
	}
}

func (s *sim) crashOrRestart() {
	var down []uint64
	for _, id := range s.c.IDs() {
		if !s.c.Alive(id) {
			down = append(down, id)
		}
	}
	if len(down) > 0 && s.rng.IntN(2) == 0 {
		id, _ := s.pick(down)
		if err := s.c.Restart(id); err != nil {
			s.fail("restart of member %d: %v", id, err)
		}
		return
	}
	if id, ok := s.pick(s.alive()); ok {
		s.stats.crashes++
		s.c.Crash(id)
	}
}

// changeMembership proposes a random change valid for the leader's
// current configuration: add a learner, promote one, remove a voter (never
// below three), or swap a voter for a learner through a joint configuration.
func (s *sim) changeMembership() error {
	c := s.c
	lead := c.Leader()
	if lead == 0 {
		return nil
	}
	cs := c.Member(lead).ConfState
	if len(cs.VotersOutgoing) > 0 {
		return nil
	}
	var cc pb.ConfChangeI
	switch s.rng.IntN(4) {
	case 0:
		if len(c.IDs()) >= 9 || len(cs.Learners) > 1 {
			return nil
		}
		id := s.nextID
		s.nextID++
		if err := c.AddMember(id); err != nil {
			return err
		}
		cc = pb.ConfChange{Type: pb.ConfChangeAddLearnerNode, NodeID: id}
	case 1:
		id, ok := s.pick(cs.Learners)
		if !ok || len(cs.Voters) >= 7 {
			return nil
		}
		cc = pb.ConfChange{Type: pb.ConfChangeAddNode, NodeID: id}
	case 2:
		id, ok := s.pick(cs.Voters)
		if !ok || len(cs.Voters) <= 3 {
			return nil
		}
		cc = pb.ConfChange{Type: pb.ConfChangeRemoveNode, NodeID: id}
	case 3:
		learner, ok1 := s.pick(cs.Learners)
		voter, ok2 := s.pick(cs.Voters)
		if !ok1 || !ok2 {
			return nil
		}
		cc = pb.ConfChangeV2{Changes: []pb.ConfChangeSingle{
			{Type: pb.ConfChangeAddNode, NodeID: learner},
			{Type: pb.ConfChangeAddLearnerNode, NodeID: voter},
		}}
	}
	s.stats.confChanges++
	if err := c.ProposeConfChange(lead, cc); err != nil && !errors.Is(err, raft.ErrProposalDropped) {
		return err
	}
	return nil
}

// checkLiveness stops every fault and requires that, within a bounded
// number of ticks, a leader is elected and a new proposal is applied by
// every member of its configuration, all reaching the same state.
func (s *sim) checkLiveness() error {
	c := s.c
	c.Net.Heal()
	c.Hooks.Crash = nil
	for _, id := range c.IDs() {
		if !c.Alive(id) {
			if err := c.Restart(id); err != nil {
				return err
			}
		}
	}
	marker := []byte(fmt.Sprintf("final-%d", s.seed))
	proposedAt := -100
	const maxTicks = 1000
	for tick := 0; tick < maxTicks; tick++ {
		c.TickAll()
		if err := c.Stabilize(); err != nil {
			return err
		}
		s.checkLeaders()
		s.checkReads()
		if s.failure != nil {
			return s.failure
		}
		lead := c.Leader()
		if lead == 0 {
			continue
		}
		members := c.Member(lead).Node.Status().Config
		inConfig := func(id uint64) bool {
			_, v := members.Voters.IDs()[id]
			_, l := members.Learners[id]
			return v || l
		}
		// Members removed from the configuration may not know it; stop them
		// so that they cannot disrupt the cluster (Raft thesis §4.2.3).
		for _, id := range c.IDs() {
			switch {
			case !inConfig(id) && c.Alive(id):
				c.Crash(id)
			case inConfig(id) && !c.Alive(id):
				if err := c.Restart(id); err != nil {
					return err
				}
			}
		}
		if tick >= proposedAt+100 {
			// (Re)propose: an earlier attempt may have been lost with a
			// leader that was deposed before replicating it.
			if err := c.Propose(lead, marker); err == nil {
				proposedAt = tick
			}
			continue
		}
		done := true
		var hash, index uint64
		for _, id := range c.IDs() {
			if !inConfig(id) {
				continue
			}
			m := c.Member(id)
			if len(m.Data) == 0 || string(m.Data[len(m.Data)-1]) != string(marker) {
				done = false
				break
			}
			if index == 0 {
				hash, index = m.Hash, m.AppliedIndex
			} else if m.AppliedIndex == index && m.Hash != hash {
				return fmt.Errorf("convergence: members disagree on the state at index %d", index)
			}
		}
		if done {
			return s.checkReadLiveness(lead)
		}
	}
	return fmt.Errorf("liveness: no leader committed a proposal within %d ticks after healing (leader %d)", maxTicks, c.Leader())
}

// checkReadLiveness requires that, on a healed cluster, a read issued on
// the leader is answered within a few ticks (whatever the read mode).
func (s *sim) checkReadLiveness(lead uint64) error {
	ctx := fmt.Sprintf("final-read-%d", s.seed)
	s.reads[ctx] = s.maxCommit
	s.c.ReadIndex(lead, []byte(ctx))
	for tick := 0; tick < 30; tick++ {
		if err := s.c.Stabilize(); err != nil {
			return err
		}
		for _, rs := range s.c.Member(lead).ReadStates {
			if string(rs.RequestCtx) == ctx {
				s.checkReads()
				return s.failure
			}
		}
		s.c.TickAll()
	}
	return fmt.Errorf("liveness: a read on leader %d was not answered on a healed cluster", lead)
}

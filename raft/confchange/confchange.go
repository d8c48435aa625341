// Package confchange computes membership configurations: it takes the
// configuration in force and a list of changes and returns the next
// configuration with its progress map, or an error if the changes are not
// allowed. It never modifies its input, so a refused change leaves the
// tracker untouched.
//
// Two kinds of transition exist. A simple change alters at most one voter
// and can be applied directly, because any majority of the old voters
// overlaps any majority of the new ones. Larger changes go through a joint
// configuration in which decisions need a majority of both the old
// (outgoing) and the new (incoming) voters, and which is left by a second
// change (Raft thesis §4.3).
package confchange

import (
	"errors"
	"fmt"

	"github.com/synod-db/synod/raft/quorum"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// Changer computes configuration changes against a tracker. LastIndex is the
// leader's last log index, used to initialize the progress of new members.
type Changer struct {
	Tracker   tracker.ProgressTracker
	LastIndex uint64
}

// ErrJoint is wrapped when a change needs a non-joint configuration but the
// current one is joint, and ErrNotJoint in the opposite case.
var (
	ErrJoint    = errors.New("confchange: configuration is joint")
	ErrNotJoint = errors.New("confchange: configuration is not joint")
)

// EnterJoint moves to a joint configuration whose outgoing half is the
// current voters and whose incoming half is the current voters with ccs
// applied. With autoLeave the leader leaves it by itself once applied.
func (c Changer) EnterJoint(autoLeave bool, ccs ...pb.ConfChangeSingle) (tracker.Config, tracker.ProgressMap, error) {
	cfg, prs, err := c.snapshot()
	if err != nil {
		return fail(err)
	}
	if cfg.Joint() {
		return fail(fmt.Errorf("%w: leave it before entering a new one", ErrJoint))
	}
	if len(cfg.Voters[0]) == 0 {
		return fail(errors.New("confchange: cannot enter a joint configuration from one without voters; add voters with a simple change first"))
	}
	cfg.Voters[1] = quorum.MajorityConfig{}
	for id := range cfg.Voters[0] {
		cfg.Voters[1][id] = struct{}{}
	}
	if err := c.apply(&cfg, prs, ccs...); err != nil {
		return fail(err)
	}
	cfg.AutoLeave = autoLeave
	return checkAndReturn(cfg, prs)
}

// LeaveJoint leaves the joint configuration: the incoming half alone
// decides, LearnersNext become learners, and members in neither half are
// dropped.
func (c Changer) LeaveJoint() (tracker.Config, tracker.ProgressMap, error) {
	cfg, prs, err := c.snapshot()
	if err != nil {
		return fail(err)
	}
	if !cfg.Joint() {
		return fail(fmt.Errorf("%w: nothing to leave", ErrNotJoint))
	}
	for id := range cfg.LearnersNext {
		if cfg.Learners == nil {
			cfg.Learners = map[uint64]struct{}{}
		}
		cfg.Learners[id] = struct{}{}
		prs[id].IsLearner = true
	}
	cfg.LearnersNext = nil
	for id := range cfg.Voters[1] {
		_, isVoter := cfg.Voters[0][id]
		_, isLearner := cfg.Learners[id]
		if !isVoter && !isLearner {
			delete(prs, id)
		}
	}
	cfg.Voters[1] = nil
	cfg.AutoLeave = false
	return checkAndReturn(cfg, prs)
}

// Simple applies ccs directly. It refuses to touch more than one voter,
// since that could create two disjoint majorities.
func (c Changer) Simple(ccs ...pb.ConfChangeSingle) (tracker.Config, tracker.ProgressMap, error) {
	cfg, prs, err := c.snapshot()
	if err != nil {
		return fail(err)
	}
	if cfg.Joint() {
		return fail(fmt.Errorf("%w: a simple change cannot be applied to a joint configuration", ErrJoint))
	}
	if err := c.apply(&cfg, prs, ccs...); err != nil {
		return fail(err)
	}
	if n := symDiff(c.Tracker.Voters[0], cfg.Voters[0]); n > 1 {
		return fail(fmt.Errorf("confchange: a simple change may add or remove one voter, these change %d; use a joint configuration (ConfChangeV2)", n))
	}
	return checkAndReturn(cfg, prs)
}

func fail(err error) (tracker.Config, tracker.ProgressMap, error) {
	return tracker.Config{}, nil, err
}

func checkAndReturn(cfg tracker.Config, prs tracker.ProgressMap) (tracker.Config, tracker.ProgressMap, error) {
	if err := checkInvariants(cfg, prs); err != nil {
		return fail(err)
	}
	return cfg, prs, nil
}

// apply applies the changes to the incoming half of cfg.
func (c Changer) apply(cfg *tracker.Config, prs tracker.ProgressMap, ccs ...pb.ConfChangeSingle) error {
	for _, cc := range ccs {
		if cc.NodeID == 0 {
			// ID 0 means "no node"; such changes are ignored.
			continue
		}
		switch cc.Type {
		case pb.ConfChangeAddNode:
			c.makeVoter(cfg, prs, cc.NodeID)
		case pb.ConfChangeAddLearnerNode:
			c.makeLearner(cfg, prs, cc.NodeID)
		case pb.ConfChangeRemoveNode:
			c.remove(cfg, prs, cc.NodeID)
		case pb.ConfChangeUpdateNode:
		default:
			return fmt.Errorf("confchange: unknown change type %s", cc.Type)
		}
	}
	if len(cfg.Voters[0]) == 0 {
		return errors.New("confchange: the change removes all voters; keep at least one")
	}
	return nil
}

func (c Changer) makeVoter(cfg *tracker.Config, prs tracker.ProgressMap, id uint64) {
	pr := prs[id]
	if pr == nil {
		c.initProgress(cfg, prs, id, false)
		return
	}
	pr.IsLearner = false
	delete(cfg.Learners, id)
	delete(cfg.LearnersNext, id)
	cfg.Voters[0][id] = struct{}{}
}

func (c Changer) makeLearner(cfg *tracker.Config, prs tracker.ProgressMap, id uint64) {
	pr := prs[id]
	if pr == nil {
		c.initProgress(cfg, prs, id, true)
		return
	}
	if pr.IsLearner {
		return
	}
	// Remove as a voter first, then add back as a learner; if it is still
	// an outgoing voter it cannot be a learner yet and waits in LearnersNext.
	c.remove(cfg, prs, id)
	prs[id] = pr
	if _, outgoing := cfg.Voters[1][id]; outgoing {
		if cfg.LearnersNext == nil {
			cfg.LearnersNext = map[uint64]struct{}{}
		}
		cfg.LearnersNext[id] = struct{}{}
		return
	}
	pr.IsLearner = true
	if cfg.Learners == nil {
		cfg.Learners = map[uint64]struct{}{}
	}
	cfg.Learners[id] = struct{}{}
}

func (c Changer) remove(cfg *tracker.Config, prs tracker.ProgressMap, id uint64) {
	if _, ok := prs[id]; !ok {
		return
	}
	delete(cfg.Voters[0], id)
	delete(cfg.Learners, id)
	delete(cfg.LearnersNext, id)
	// An outgoing voter keeps its progress until the joint configuration is
	// left, since it still counts there.
	if _, outgoing := cfg.Voters[1][id]; !outgoing {
		delete(prs, id)
	}
}

func (c Changer) initProgress(cfg *tracker.Config, prs tracker.ProgressMap, id uint64, learner bool) {
	if learner {
		if cfg.Learners == nil {
			cfg.Learners = map[uint64]struct{}{}
		}
		cfg.Learners[id] = struct{}{}
	} else {
		cfg.Voters[0][id] = struct{}{}
	}
	prs[id] = &tracker.Progress{
		// The new member's log is unknown: probe from the end of ours and
		// let rejections walk back.
		Next:      c.LastIndex + 1,
		Match:     0,
		Inflights: tracker.NewInflights(c.Tracker.MaxInflight, c.Tracker.MaxInflightBytes),
		IsLearner: learner,
		// Count a new member as active so that check-quorum does not depose
		// the leader before the member has had a chance to answer.
		RecentActive: true,
	}
}

// snapshot copies the tracker's configuration and progress so that changes
// never touch the live values, and checks the input's invariants.
func (c Changer) snapshot() (tracker.Config, tracker.ProgressMap, error) {
	if c.Tracker.Voters[0] == nil {
		return tracker.Config{}, nil, errors.New("confchange: tracker has no voter set (was it initialized with MakeProgressTracker?)")
	}
	cfg, prs := c.Tracker.Config.Clone(), c.Tracker.Progress.Clone()
	if err := checkInvariants(cfg, prs); err != nil {
		return tracker.Config{}, nil, err
	}
	return cfg, prs, nil
}

func checkInvariants(cfg tracker.Config, prs tracker.ProgressMap) error {
	for _, ids := range []map[uint64]struct{}{cfg.Voters[0], cfg.Voters[1], cfg.Learners, cfg.LearnersNext} {
		for id := range ids {
			if _, ok := prs[id]; !ok {
				return fmt.Errorf("confchange: no progress for member %d", id)
			}
		}
	}
	for id := range cfg.LearnersNext {
		if _, ok := cfg.Voters[1][id]; !ok {
			return fmt.Errorf("confchange: %d is in LearnersNext but not an outgoing voter", id)
		}
		if prs[id].IsLearner {
			return fmt.Errorf("confchange: %d is in LearnersNext but already a learner", id)
		}
	}
	for id := range cfg.Learners {
		if _, ok := cfg.Voters[0][id]; ok {
			return fmt.Errorf("confchange: %d is both learner and incoming voter", id)
		}
		if _, ok := cfg.Voters[1][id]; ok {
			return fmt.Errorf("confchange: %d is both learner and outgoing voter", id)
		}
		if !prs[id].IsLearner {
			return fmt.Errorf("confchange: learner %d has a voter's progress", id)
		}
	}
	if !cfg.Joint() {
		if len(cfg.LearnersNext) > 0 {
			return errors.New("confchange: LearnersNext is set outside a joint configuration")
		}
		if cfg.AutoLeave {
			return errors.New("confchange: AutoLeave is set outside a joint configuration")
		}
	}
	return nil
}

func symDiff(a, b map[uint64]struct{}) int {
	n := 0
	for id := range a {
		if _, ok := b[id]; !ok {
			n++
		}
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			n++
		}
	}
	return n
}

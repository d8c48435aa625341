package raft

// Membership: applying configuration changes and leadership transfer.

import (
	"github.com/synod-db/synod/raft/confchange"
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// applyConfChange applies a committed conf change to the tracker.
func (r *raft) applyConfChange(cc pb.ConfChangeV2) (pb.ConfState, error) {
	changer := confchange.Changer{Tracker: r.trk, LastIndex: r.raftLog.lastIndex()}
	var cfg tracker.Config
	var prs tracker.ProgressMap
	var err error
	if cc.LeaveJoint() {
		cfg, prs, err = changer.LeaveJoint()
	} else if autoLeave, ok := cc.EnterJoint(); ok {
		cfg, prs, err = changer.EnterJoint(autoLeave, cc.Changes...)
	} else {
		cfg, prs, err = changer.Simple(cc.Changes...)
	}
	if err != nil {
		return r.trk.ConfState(), err
	}
	return r.switchToConfig(cfg, prs), nil
}

// switchToConfig installs a configuration and reacts to it: a leader that is
// no longer a voter steps down, commitment may advance (fewer voters), and
// new members are probed.
func (r *raft) switchToConfig(cfg tracker.Config, prs tracker.ProgressMap) pb.ConfState {
	r.trk.SetConfig(cfg, prs)
	r.logger.Info("raft: switched configuration", "config", r.trk.Config.String())
	cs := r.trk.ConfState()
	pr, ok := r.trk.Progress[r.id]
	r.isLearner = ok && pr.IsLearner
	if r.state != StateLeader {
		return cs
	}
	if !r.trk.IsVoter(r.id) {
		// A leader removed from (or demoted out of) the voters stops leading
		// once the change is applied; the remaining voters elect a new one.
		r.logger.Info("raft: leader is no longer a voter; stepping down")
		r.becomeFollower(r.Term, None)
		return cs
	}
	if len(cs.Voters) == 0 {
		return cs
	}
	if r.maybeCommit() {
		r.bcastAppend()
	} else {
		r.trk.Visit(func(id uint64, _ *tracker.Progress) {
			if id != r.id {
				r.maybeSendAppend(id, false)
			}
		})
	}
	if r.leadTransferee != None && !r.trk.IsVoter(r.leadTransferee) {
		r.abortLeaderTransfer()
	}
	return cs
}

// sendTimeoutNow tells the transferee to campaign at once.
func (r *raft) sendTimeoutNow(to uint64) {
	// The transferee's forced campaign ignores follower leases.
	r.leaseRevoked = true
	r.send(pb.Message{To: to, Type: pb.MsgTimeoutNow})
}

// abortLeaderTransfer forgets a pending leadership transfer.
func (r *raft) abortLeaderTransfer() { r.leadTransferee = None }

package raft

import (
	"fmt"

	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// BasicStatus is a member's state without the per-member progress.
type BasicStatus struct {
	ID uint64
	pb.HardState
	SoftState
	Applied        uint64
	LeadTransferee uint64
}

// Status is a member's state, with the progress of every member when it is
// the leader.
type Status struct {
	BasicStatus
	Config   tracker.Config
	Progress map[uint64]tracker.Progress
}

func getBasicStatus(r *raft) BasicStatus {
	return BasicStatus{
		ID:             r.id,
		HardState:      r.hardState(),
		SoftState:      r.softState(),
		Applied:        r.raftLog.applied,
		LeadTransferee: r.leadTransferee,
	}
}

func getStatus(r *raft) Status {
	s := Status{BasicStatus: getBasicStatus(r), Config: r.trk.Config.Clone()}
	if r.state == StateLeader {
		s.Progress = make(map[uint64]tracker.Progress, len(r.trk.Progress))
		r.trk.Visit(func(id uint64, pr *tracker.Progress) {
			c := *pr
			c.Inflights = pr.Inflights.Clone()
			s.Progress[id] = c
		})
	}
	return s
}

func (s Status) String() string {
	return fmt.Sprintf("id=%d term=%d vote=%d commit=%d applied=%d lead=%d state=%s config=%s",
		s.ID, s.Term, s.Vote, s.Commit, s.Applied, s.Lead, s.RaftState, s.Config.String())
}

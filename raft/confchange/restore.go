package confchange

import (
	pb "github.com/synod-db/synod/raft/raftpb"
	"github.com/synod-db/synod/raft/tracker"
)

// Restore rebuilds the configuration described by cs (from a snapshot or
// the storage's initial state) on top of the empty tracker in chg, going
// through the same validated transitions a live cluster would. Members are
// initialized with chg.LastIndex.
func Restore(chg Changer, cs pb.ConfState) (tracker.Config, tracker.ProgressMap, error) {
	var simple []pb.ConfChangeSingle
	var joint []pb.ConfChangeSingle
	if len(cs.VotersOutgoing) == 0 {
		// Not joint: add every voter and learner, one simple change each.
		for _, id := range cs.Voters {
			simple = append(simple, pb.ConfChangeSingle{Type: pb.ConfChangeAddNode, NodeID: id})
		}
		for _, id := range cs.Learners {
			simple = append(simple, pb.ConfChangeSingle{Type: pb.ConfChangeAddLearnerNode, NodeID: id})
		}
	} else {
		// Joint: first build the outgoing voters as a plain configuration,
		// then enter the joint one that turns it into the incoming voters,
		// learners and learners-next.
		for _, id := range cs.VotersOutgoing {
			simple = append(simple, pb.ConfChangeSingle{Type: pb.ConfChangeAddNode, NodeID: id})
			joint = append(joint, pb.ConfChangeSingle{Type: pb.ConfChangeRemoveNode, NodeID: id})
		}
		for _, id := range cs.Voters {
			joint = append(joint, pb.ConfChangeSingle{Type: pb.ConfChangeAddNode, NodeID: id})
		}
		for _, id := range cs.Learners {
			joint = append(joint, pb.ConfChangeSingle{Type: pb.ConfChangeAddLearnerNode, NodeID: id})
		}
		for _, id := range cs.LearnersNext {
			joint = append(joint, pb.ConfChangeSingle{Type: pb.ConfChangeAddLearnerNode, NodeID: id})
		}
	}
	for _, cc := range simple {
		cfg, prs, err := chg.Simple(cc)
		if err != nil {
			return cfg, prs, err
		}
		chg.Tracker.SetConfig(cfg, prs)
	}
	if len(joint) > 0 {
		cfg, prs, err := chg.EnterJoint(cs.AutoLeave, joint...)
		if err != nil {
			return cfg, prs, err
		}
		chg.Tracker.SetConfig(cfg, prs)
	}
	return chg.Tracker.Config, chg.Tracker.Progress, nil
}

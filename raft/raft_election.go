package raft

// Elections: when a member may campaign, pre-vote and vote rounds, and
// counting the answers.

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/synod-db/synod/raft/quorum"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// hup starts an election of kind t unless that is not allowed now.
func (r *raft) hup(t []byte) {
	if r.state == StateLeader {
		r.logger.Debug("raft: ignoring MsgHup: already leader")
		return
	}
	if !r.promotable() {
		r.logger.Warn("raft: not promotable (learner, removed, or installing a snapshot); not campaigning")
		return
	}
	if r.hasUnappliedConfChanges() {
		r.logger.Warn("raft: not campaigning: committed conf changes are not yet applied")
		return
	}
	r.campaign(t)
}

// hasUnappliedConfChanges reports whether a committed conf change is not
// yet applied: campaigning then could use a configuration about to change.
//
// The application may have compacted some of the entries raft still
// counts as unapplied: raft learns of applied entries when a Ready is
// advanced, and an application that applies while it persists (as synod's
// member does) may apply them, snapshot and compact the log before that.
// Only applied entries are ever compacted (a snapshot holds applied
// state), so their conf changes are applied too: the scan starts at the
// first entry the log still holds.
func (r *raft) hasUnappliedConfChanges() bool {
	if r.raftLog.applied >= r.raftLog.committed {
		return false
	}
	lo, hi := r.raftLog.applied+1, r.raftLog.committed+1
	for lo < hi {
		ents, err := r.raftLog.slice(lo, hi, r.maxMsgSize)
		if errors.Is(err, ErrCompacted) {
			if first := r.raftLog.firstIndex(); first > lo {
				lo = first
				continue
			}
		}
		if err != nil {
			panic(fmt.Sprintf("raft: scanning unapplied entries [%d, %d): %v", lo, hi, err))
		}
		for i := range ents {
			if ents[i].Type != pb.EntryNormal {
				return true
			}
		}
		lo += uint64(len(ents))
	}
	return false
}

// campaign starts a pre-election or an election (t says which, and
// whether it is forced by a leadership transfer) and asks every voter.
func (r *raft) campaign(t []byte) {
	var term uint64
	var voteMsg pb.MessageType
	if bytes.Equal(t, campaignPreElection) {
		r.becomePreCandidate()
		voteMsg = pb.MsgPreVote
		// Ask for the term we would enter, without entering it.
		term = r.Term + 1
	} else {
		r.becomeCandidate()
		voteMsg = pb.MsgVote
		term = r.Term
	}
	if _, _, res := r.poll(r.id, pb.VoteResponseType(voteMsg), true); res == quorum.VoteWon {
		// A single-voter configuration wins by itself.
		if bytes.Equal(t, campaignPreElection) {
			r.campaign(campaignElection)
		} else {
			r.becomeLeader()
		}
		return
	}
	var ctx []byte
	if bytes.Equal(t, campaignTransfer) {
		ctx = t
	}
	lastIndex, lastTerm := r.raftLog.lastIndex(), r.raftLog.lastTerm()
	for _, id := range r.trk.VoterNodes() {
		if id == r.id {
			continue
		}
		r.send(pb.Message{To: id, Term: term, Type: voteMsg, Index: lastIndex, LogTerm: lastTerm, Context: ctx})
	}
}

// poll records a vote and returns the tally.
func (r *raft) poll(id uint64, t pb.MessageType, granted bool) (int, int, quorum.VoteResult) {
	r.trk.RecordVote(id, granted)
	return r.trk.TallyVotes()
}

// promotable reports whether this member may campaign: it is a voter, and
// no snapshot is being installed.
func (r *raft) promotable() bool {
	pr := r.trk.Progress[r.id]
	return pr != nil && !pr.IsLearner && !r.raftLog.hasNextOrInProgressSnapshot()
}

// pastElectionTimeout reports whether the randomized timeout has elapsed.
func (r *raft) pastElectionTimeout() bool {
	return r.electionElapsed >= r.randomizedElectionTimeout
}

// resetRandomizedElectionTimeout draws the next election timeout in
// [electionTimeout, 2*electionTimeout).
func (r *raft) resetRandomizedElectionTimeout() {
	r.randomizedElectionTimeout = r.electionTimeout + r.rng.IntN(r.electionTimeout)
}

// stepCandidate serves both candidates and pre-candidates.
func stepCandidate(r *raft, m pb.Message) error {
	myVoteResp := pb.MsgVoteResp
	if r.state == StatePreCandidate {
		myVoteResp = pb.MsgPreVoteResp
	}
	switch m.Type {
	case pb.MsgProp:
		return ErrProposalDropped
	case pb.MsgApp:
		r.becomeFollower(m.Term, m.From)
		r.handleAppendEntries(m)
	case pb.MsgHeartbeat:
		r.becomeFollower(m.Term, m.From)
		r.handleHeartbeat(m)
	case pb.MsgSnap:
		r.becomeFollower(m.Term, m.From)
		r.handleSnapshot(m)
	case myVoteResp:
		granted, rejected, res := r.poll(m.From, m.Type, !m.Reject)
		r.logger.Debug("raft: vote tally", "granted", granted, "rejected", rejected, "type", m.Type)
		switch res {
		case quorum.VoteWon:
			if r.state == StatePreCandidate {
				r.campaign(campaignElection)
			} else {
				r.becomeLeader()
				r.bcastAppend()
			}
		case quorum.VoteLost:
			// Stay at this term: a pre-candidate never entered a new one and
			// a candidate has persisted its vote.
			r.becomeFollower(r.Term, None)
		}
	case pb.MsgTimeoutNow:
		r.logger.Debug("raft: ignoring MsgTimeoutNow as candidate", "from", m.From)
	}
	return nil
}

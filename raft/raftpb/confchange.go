package raftpb

import (
	"fmt"
	"strconv"
	"strings"
)

// ConfChangeType is the kind of one membership change.
type ConfChangeType uint8

// The membership change kinds.
const (
	ConfChangeAddNode ConfChangeType = iota
	ConfChangeRemoveNode
	ConfChangeUpdateNode
	ConfChangeAddLearnerNode
	confChangeTypeCount
)

var confChangeTypeNames = [...]string{"AddNode", "RemoveNode", "UpdateNode", "AddLearnerNode"}

func (t ConfChangeType) String() string {
	if t < confChangeTypeCount {
		return confChangeTypeNames[t]
	}
	return fmt.Sprintf("ConfChangeType(%d)", uint8(t))
}

// ConfChangeTransition says how a ConfChangeV2 moves the cluster to its new
// configuration.
type ConfChangeTransition uint8

// The transitions.
const (
	// ConfChangeTransitionAuto uses a simple change when the change allows it
	// (at most one voter added or removed) and a joint configuration that is
	// left automatically otherwise.
	ConfChangeTransitionAuto ConfChangeTransition = iota
	// ConfChangeTransitionJointImplicit always enters a joint configuration
	// and leaves it automatically.
	ConfChangeTransitionJointImplicit
	// ConfChangeTransitionJointExplicit enters a joint configuration that the
	// application leaves by proposing an empty ConfChangeV2.
	ConfChangeTransitionJointExplicit
	confChangeTransitionCount
)

// ConfChangeSingle is one change inside a ConfChangeV2.
type ConfChangeSingle struct {
	Type   ConfChangeType
	NodeID uint64
}

// ConfChange is the single-change form kept for familiarity; it is
// equivalent to a ConfChangeV2 with one change and the auto transition.
type ConfChange struct {
	Type    ConfChangeType
	NodeID  uint64
	Context []byte
	// ID is opaque to raft; applications use it to match a proposal with its
	// result.
	ID uint64
}

// ConfChangeV2 is a set of membership changes applied together.
// A ConfChangeV2 with no changes leaves the current joint configuration.
type ConfChangeV2 struct {
	Transition ConfChangeTransition
	Changes    []ConfChangeSingle
	Context    []byte
}

// ConfChangeI is implemented by both conf change forms so that APIs accept
// either.
type ConfChangeI interface {
	AsV2() ConfChangeV2
	// AsV1 returns the single-change form and true if the change has one.
	AsV1() (ConfChange, bool)
}

// AsV2 converts cc to the general form.
func (cc ConfChange) AsV2() ConfChangeV2 {
	return ConfChangeV2{
		Changes: []ConfChangeSingle{{Type: cc.Type, NodeID: cc.NodeID}},
		Context: cc.Context,
	}
}

// AsV1 returns cc itself.
func (cc ConfChange) AsV1() (ConfChange, bool) { return cc, true }

// AsV2 returns cc itself.
func (cc ConfChangeV2) AsV2() ConfChangeV2 { return cc }

// AsV1 reports false: a ConfChangeV2 has no single-change form in general.
func (cc ConfChangeV2) AsV1() (ConfChange, bool) { return ConfChange{}, false }

// EnterJoint reports whether cc must go through a joint configuration, and
// whether that configuration is left automatically. A simple change (at most
// one voter touched, auto transition) does not need one.
func (cc ConfChangeV2) EnterJoint() (autoLeave bool, ok bool) {
	if cc.Transition != ConfChangeTransitionAuto || len(cc.Changes) > 1 {
		switch cc.Transition {
		case ConfChangeTransitionAuto, ConfChangeTransitionJointImplicit:
			autoLeave = true
		case ConfChangeTransitionJointExplicit:
		default:
			return false, false
		}
		return autoLeave, true
	}
	return false, false
}

// LeaveJoint reports whether cc is the empty change that leaves a joint
// configuration.
func (cc ConfChangeV2) LeaveJoint() bool {
	return cc.Transition == ConfChangeTransitionAuto && len(cc.Changes) == 0 && len(cc.Context) == 0
}

// ToEntry encodes cc into a log entry of the matching type, so that the
// application can append conf changes through the same path as data.
func ToEntry(cc ConfChangeI) Entry {
	if v1, ok := cc.AsV1(); ok {
		return Entry{Type: EntryConfChange, Data: MarshalConfChange(v1)}
	}
	return Entry{Type: EntryConfChangeV2, Data: MarshalConfChangeV2(cc.AsV2())}
}

// ConfChangeFromEntry decodes the conf change carried by e.
func ConfChangeFromEntry(e Entry) (ConfChangeI, error) {
	switch e.Type {
	case EntryConfChange:
		cc, err := UnmarshalConfChange(e.Data)
		if err != nil {
			return nil, err
		}
		return cc, nil
	case EntryConfChangeV2:
		cc, err := UnmarshalConfChangeV2(e.Data)
		if err != nil {
			return nil, err
		}
		return cc, nil
	}
	return nil, fmt.Errorf("raftpb: entry %d has type %s, not a conf change", e.Index, e.Type)
}

// ConfChangesFromString parses a space-separated list such as
// "v1 l2 r3 u4" (add voter 1, add learner 2, remove 3, update 4). Tests and
// tools use it to write configurations tersely.
func ConfChangesFromString(s string) ([]ConfChangeSingle, error) {
	var ccs []ConfChangeSingle
	for _, tok := range strings.Fields(s) {
		if len(tok) < 2 {
			return nil, fmt.Errorf("raftpb: unknown conf change token %q: want v<id>, l<id>, r<id> or u<id>", tok)
		}
		var cc ConfChangeSingle
		switch tok[0] {
		case 'v':
			cc.Type = ConfChangeAddNode
		case 'l':
			cc.Type = ConfChangeAddLearnerNode
		case 'r':
			cc.Type = ConfChangeRemoveNode
		case 'u':
			cc.Type = ConfChangeUpdateNode
		default:
			return nil, fmt.Errorf("raftpb: unknown conf change token %q: want v<id>, l<id>, r<id> or u<id>", tok)
		}
		id, err := strconv.ParseUint(tok[1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("raftpb: conf change token %q: %w", tok, err)
		}
		cc.NodeID = id
		ccs = append(ccs, cc)
	}
	return ccs, nil
}

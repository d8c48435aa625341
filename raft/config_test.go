package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// validConfig returns a config that passes validation; tests break one
// field at a time.
func validConfig() Config {
	return Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: NewMemoryStorage(), Logger: discardLogger()}
}

// TestConfigValidateErrors checks that every invalid config is refused with
// an error that wraps ErrInvalidConfig and names the offending field.
func TestConfigValidateErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		field  string
	}{
		{"zero ID", func(c *Config) { c.ID = 0 }, "ID"},
		{"zero HeartbeatTick", func(c *Config) { c.HeartbeatTick = 0 }, "HeartbeatTick"},
		{"negative HeartbeatTick", func(c *Config) { c.HeartbeatTick = -3 }, "HeartbeatTick"},
		{"ElectionTick equal to HeartbeatTick", func(c *Config) { c.ElectionTick, c.HeartbeatTick = 5, 5 }, "ElectionTick"},
		{"ElectionTick below HeartbeatTick", func(c *Config) { c.ElectionTick, c.HeartbeatTick = 2, 5 }, "ElectionTick"},
		{"zero ElectionTick", func(c *Config) { c.ElectionTick = 0 }, "ElectionTick"},
		{"nil Storage", func(c *Config) { c.Storage = nil }, "Storage"},
		{"negative MaxInflightMsgs", func(c *Config) { c.MaxInflightMsgs = -1 }, "MaxInflightMsgs"},
		{"MaxInflightBytes below explicit MaxSizePerMsg", func(c *Config) { c.MaxSizePerMsg, c.MaxInflightBytes = 4096, 4095 }, "MaxInflightBytes"},
		{"MaxInflightBytes below default MaxSizePerMsg", func(c *Config) { c.MaxInflightBytes = DefaultMaxSizePerMsg - 1 }, "MaxInflightBytes"},
		{"ReadOnlyLeaseBased without CheckQuorum", func(c *Config) { c.ReadOnlyOption = ReadOnlyLeaseBased }, "CheckQuorum"},
		{"unknown ReadOnlyOption", func(c *Config) { c.ReadOnlyOption = ReadOnlyLeaseBased + 5 }, "ReadOnlyOption"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			err := c.validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("validate() = %v, want an error wrapping ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
			// NewRawNode refuses the same config the same way.
			c2 := validConfig()
			tt.modify(&c2)
			if rn, err := NewRawNode(&c2); rn != nil || !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewRawNode = (%v, %v), want (nil, ErrInvalidConfig)", rn, err)
			}
		})
	}
}

// TestConfigValidateAcceptsBoundaries checks that the limits of each rule
// are accepted: MaxInflightBytes equal to MaxSizePerMsg, lease-based reads
// with CheckQuorum, ElectionTick one above HeartbeatTick.
func TestConfigValidateAcceptsBoundaries(t *testing.T) {
	for name, modify := range map[string]func(*Config){
		"MaxInflightBytes equal to MaxSizePerMsg": func(c *Config) { c.MaxSizePerMsg, c.MaxInflightBytes = 4096, 4096 },
		"lease-based reads with CheckQuorum":      func(c *Config) { c.ReadOnlyOption, c.CheckQuorum = ReadOnlyLeaseBased, true },
		"ElectionTick just above HeartbeatTick":   func(c *Config) { c.ElectionTick, c.HeartbeatTick = 4, 3 },
		"ReadOnlySafe":                            func(c *Config) { c.ReadOnlyOption = ReadOnlySafe },
	} {
		c := validConfig()
		modify(&c)
		if err := c.validate(); err != nil {
			t.Errorf("%s: validate() = %v, want nil", name, err)
		}
	}
}

// TestConfigValidateDefaults checks that validation fills zero optional
// fields with their documented defaults and leaves explicit values alone.
func TestConfigValidateDefaults(t *testing.T) {
	c := validConfig()
	c.ID, c.Logger = 7, nil
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxSizePerMsg != DefaultMaxSizePerMsg {
		t.Errorf("MaxSizePerMsg = %d, want %d", c.MaxSizePerMsg, DefaultMaxSizePerMsg)
	}
	if c.MaxCommittedSizePerReady != DefaultMaxSizePerMsg {
		t.Errorf("MaxCommittedSizePerReady = %d, want MaxSizePerMsg %d", c.MaxCommittedSizePerReady, DefaultMaxSizePerMsg)
	}
	if c.MaxInflightMsgs != DefaultMaxInflightMsgs {
		t.Errorf("MaxInflightMsgs = %d, want %d", c.MaxInflightMsgs, DefaultMaxInflightMsgs)
	}
	if c.MaxUncommittedEntriesSize != noLimit {
		t.Errorf("MaxUncommittedEntriesSize = %d, want no limit", c.MaxUncommittedEntriesSize)
	}
	if c.RandSeed != 7 {
		t.Errorf("RandSeed = %d, want the ID 7", c.RandSeed)
	}
	if c.Logger != slog.Default() {
		t.Error("Logger is not slog.Default()")
	}

	logger := discardLogger()
	explicit := Config{
		ID: 2, ElectionTick: 10, HeartbeatTick: 2, Storage: NewMemoryStorage(),
		MaxSizePerMsg: 500, MaxCommittedSizePerReady: 300, MaxUncommittedEntriesSize: 1000,
		MaxInflightMsgs: 3, MaxInflightBytes: 1500, RandSeed: 99, Logger: logger,
	}
	if err := explicit.validate(); err != nil {
		t.Fatal(err)
	}
	if explicit.MaxSizePerMsg != 500 || explicit.MaxCommittedSizePerReady != 300 || explicit.MaxUncommittedEntriesSize != 1000 ||
		explicit.MaxInflightMsgs != 3 || explicit.MaxInflightBytes != 1500 || explicit.RandSeed != 99 || explicit.Logger != logger {
		t.Errorf("explicit values changed by validate: %+v", explicit)
	}

	// MaxCommittedSizePerReady follows an explicit MaxSizePerMsg.
	c = validConfig()
	c.MaxSizePerMsg = 2048
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxCommittedSizePerReady != 2048 {
		t.Errorf("MaxCommittedSizePerReady = %d, want MaxSizePerMsg 2048", c.MaxCommittedSizePerReady)
	}
}

// storageForRestart returns storage as a restarting member of a
// single-member cluster finds it: a snapshot at 2 (term 1), entries 3..4 of
// term 2, and hs.
func storageForRestart(t *testing.T, hs pb.HardState) *MemoryStorage {
	t.Helper()
	st := NewMemoryStorage()
	snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 2, Term: 1, ConfState: pb.ConfState{Voters: []uint64{1}}}}
	if err := st.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if err := st.Append(entriesFrom(3, 2, 2)); err != nil {
		t.Fatal(err)
	}
	if err := st.SetHardState(hs); err != nil {
		t.Fatal(err)
	}
	return st
}

// newRawNodeNoPanic calls NewRawNode, turning a panic into a test failure
// so that the remaining cases still run.
func newRawNodeNoPanic(t *testing.T, c *Config) (rn *RawNode, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("NewRawNode panicked: %v", p)
			rn, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return NewRawNode(c)
}

// TestNewRawNodeRefusesInconsistentState checks that NewRawNode returns an
// error (and does not panic) when Config.Applied lies outside the stored
// log (beyond its end, or below the stored snapshot) or the stored
// HardState.Commit lies outside it (corrupt storage), and
// that a consistent restart succeeds with the stored state.
func TestNewRawNodeRefusesInconsistentState(t *testing.T) {
	tests := []struct {
		name    string
		hs      pb.HardState
		applied uint64
		errHas  string
	}{
		{"Applied beyond the last index", pb.HardState{Term: 2, Vote: 1, Commit: 4}, 5, "Applied"},
		{"stored commit beyond the last index", pb.HardState{Term: 2, Vote: 1, Commit: 9}, 0, "commit"},
		{"stored commit below the snapshot", pb.HardState{Term: 2, Vote: 1, Commit: 1}, 0, "commit"},
		// The entries between Applied and the snapshot are gone; this used
		// to panic in raftLog.appliedTo.
		{"Applied below the stored snapshot", pb.HardState{Term: 2, Vote: 1, Commit: 3}, 1, "Applied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.Storage = storageForRestart(t, tt.hs)
			c.Applied = tt.applied
			rn, err := newRawNodeNoPanic(t, &c)
			if err == nil || rn != nil {
				t.Fatalf("NewRawNode = (%v, %v), want an error", rn, err)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("error %q does not mention %q", err, tt.errHas)
			}
		})
	}

	c := validConfig()
	c.Storage = storageForRestart(t, pb.HardState{Term: 2, Vote: 1, Commit: 3})
	c.Applied = 4
	rn, err := newRawNodeNoPanic(t, &c)
	if err != nil {
		t.Fatalf("consistent restart: %v", err)
	}
	st := rn.BasicStatus()
	// Applied implies committed, even if the commit index write was lost.
	if st.Term != 2 || st.Vote != 1 || st.Commit != 4 || st.Applied != 4 || st.RaftState != StateFollower {
		t.Errorf("restarted status %+v, want term 2 vote 1 commit 4 applied 4 follower", st)
	}
}

// TestStateTypeString checks that every role prints its name and an
// unknown one prints its number.
func TestStateTypeString(t *testing.T) {
	for s, want := range map[StateType]string{
		StateFollower:     "StateFollower",
		StateCandidate:    "StateCandidate",
		StateLeader:       "StateLeader",
		StatePreCandidate: "StatePreCandidate",
		StateType(9):      "StateType(9)",
	} {
		if got := s.String(); got != want {
			t.Errorf("StateType(%d).String() = %q, want %q", uint8(s), got, want)
		}
		if got := fmt.Sprint(s); got != want {
			t.Errorf("fmt.Sprint(StateType(%d)) = %q, want %q", uint8(s), got, want)
		}
	}
}

// TestStatusString checks that Status prints the member's identity, hard
// state, applied index, leader, role and configuration.
func TestStatusString(t *testing.T) {
	r, _ := newTestRaft(t, 1, []uint64{1, 2, 3})
	electLeader(t, r, 2)
	s := (&RawNode{raft: r}).Status()
	got := s.String()
	for _, want := range []string{
		"id=1",
		fmt.Sprintf("term=%d", r.Term),
		"vote=1",
		fmt.Sprintf("commit=%d", r.raftLog.committed),
		"applied=1",
		"lead=1",
		"state=StateLeader",
		"voters=(1 2 3)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Status.String() = %q, missing %q", got, want)
		}
	}
	if len(s.Progress) != 3 {
		t.Errorf("leader status has progress for %d members, want 3", len(s.Progress))
	}

	follower, _ := newTestRaft(t, 2, []uint64{1, 2, 3})
	fs := (&RawNode{raft: follower}).Status()
	if got := fs.String(); !strings.Contains(got, "id=2") || !strings.Contains(got, "state=StateFollower") || !strings.Contains(got, "lead=0") {
		t.Errorf("follower Status.String() = %q, want id=2, lead=0 and state=StateFollower", got)
	}
	if fs.Progress != nil {
		t.Errorf("follower status carries progress: %v", fs.Progress)
	}
}

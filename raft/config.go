package raft

import (
	"errors"
	"fmt"
	"log/slog"
)

// None is the ID of no member: no leader known, no vote cast.
const None uint64 = 0

// Defaults applied by Config validation to zero fields.
const (
	// DefaultMaxSizePerMsg bounds the payload of one append message.
	DefaultMaxSizePerMsg = 1 << 20
	// DefaultMaxInflightMsgs bounds the appends in flight to one follower.
	DefaultMaxInflightMsgs = 256
)

// Config parameterizes a raft member. Zero values of optional fields take
// the defaults documented on each field.
type Config struct {
	// ID identifies this member; it must not be zero.
	ID uint64

	// ElectionTick is the number of ticks a follower waits without hearing
	// from a leader before campaigning; the actual timeout is randomized in
	// [ElectionTick, 2*ElectionTick) so that members rarely campaign at
	// once. It must be greater than HeartbeatTick (10x is usual).
	ElectionTick int
	// HeartbeatTick is the number of ticks between leader heartbeats.
	HeartbeatTick int

	// Storage is the durable log. raft reads it; the application writes it.
	Storage Storage
	// Applied is the last index the application has applied, when
	// restarting. raft does not hand out entries up to it again.
	Applied uint64

	// MaxSizePerMsg bounds the payload of entries in one append message
	// (at least one entry is always sent). Zero means DefaultMaxSizePerMsg.
	MaxSizePerMsg uint64
	// MaxCommittedSizePerReady bounds the payload of committed entries in
	// one Ready. Zero means MaxSizePerMsg.
	MaxCommittedSizePerReady uint64
	// MaxUncommittedEntriesSize bounds the payload of the leader's
	// uncommitted log; proposals beyond it fail with ErrProposalDropped so
	// that a leader cut off from its quorum cannot grow without bound.
	// Zero means no limit.
	MaxUncommittedEntriesSize uint64
	// MaxInflightMsgs bounds the append messages in flight to one follower
	// (pipelining window). Zero means DefaultMaxInflightMsgs.
	MaxInflightMsgs int
	// MaxInflightBytes bounds the payload in flight to one follower. Zero
	// means no byte limit; otherwise it must be at least MaxSizePerMsg.
	MaxInflightBytes uint64

	// CheckQuorum makes a leader step down when it has not heard from a
	// quorum within an election timeout, and makes followers that heard
	// from a leader recently ignore vote requests (leader lease).
	CheckQuorum bool
	// PreVote runs a pre-election (Raft thesis §9.6) before incrementing the
	// term, so that a member rejoining from a partition cannot depose a
	// healthy leader.
	PreVote bool
	// ReadOnlyOption selects how ReadIndex requests are confirmed;
	// ReadOnlyLeaseBased requires CheckQuorum.
	ReadOnlyOption ReadOnlyOption
	// DisableProposalForwarding makes followers drop proposals instead of
	// forwarding them to the leader.
	DisableProposalForwarding bool

	// RandSeed seeds the randomized election timeout. Zero means use ID, so
	// that runs are reproducible; a simulation passes its own seed.
	RandSeed uint64

	// Logger receives the member's log lines. Nil means slog.Default().
	Logger *slog.Logger
}

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("raft: invalid config")

func (c *Config) validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.ID == None {
		return invalid("ID must not be zero (0 means 'no member')")
	}
	if c.HeartbeatTick <= 0 {
		return invalid("HeartbeatTick is %d; it must be greater than zero", c.HeartbeatTick)
	}
	if c.ElectionTick <= c.HeartbeatTick {
		return invalid("ElectionTick (%d) must be greater than HeartbeatTick (%d); 10x is usual", c.ElectionTick, c.HeartbeatTick)
	}
	if c.Storage == nil {
		return invalid("Storage is nil; use NewMemoryStorage or a durable implementation")
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = DefaultMaxSizePerMsg
	}
	if c.MaxCommittedSizePerReady == 0 {
		c.MaxCommittedSizePerReady = c.MaxSizePerMsg
	}
	if c.MaxUncommittedEntriesSize == 0 {
		c.MaxUncommittedEntriesSize = noLimit
	}
	if c.MaxInflightMsgs < 0 {
		return invalid("MaxInflightMsgs is %d; it must not be negative", c.MaxInflightMsgs)
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxInflightBytes != 0 && c.MaxInflightBytes < c.MaxSizePerMsg {
		return invalid("MaxInflightBytes (%d) must be at least MaxSizePerMsg (%d), or zero for no limit", c.MaxInflightBytes, c.MaxSizePerMsg)
	}
	if c.ReadOnlyOption == ReadOnlyLeaseBased && !c.CheckQuorum {
		return invalid("ReadOnlyLeaseBased needs CheckQuorum: without it a deposed leader could serve stale reads")
	}
	if c.ReadOnlyOption > ReadOnlyLeaseBased {
		return invalid("unknown ReadOnlyOption %d", c.ReadOnlyOption)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RandSeed == 0 {
		c.RandSeed = c.ID
	}
	return nil
}

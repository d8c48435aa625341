package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/internal/endpoint"
	"github.com/synod-db/synod/server/watch"
)

// Config is everything a member needs to start. cmd/synod fills it from
// etcd-compatible flags; tests fill it directly.
type Config struct {
	// Name is this member's name in InitialCluster.
	Name string
	// DataDir holds the WAL, the snapshots and the key space.
	DataDir string
	// WALDir, if set, puts the WAL elsewhere (a dedicated disk).
	WALDir string

	// SnapshotCount is the number of applied entries between snapshots
	// (after which the raft log before the snapshot is compacted).
	SnapshotCount uint64
	// SnapshotCatchUpEntries is how many entries are kept in the log
	// behind a snapshot so that slightly lagging followers catch up from
	// the log, not with a whole snapshot.
	SnapshotCatchUpEntries uint64
	// SnapshotLogBytes also takes a snapshot once this many bytes of
	// entries were applied since the last one, and SnapshotCatchUpBytes
	// bounds the entries kept behind a snapshot by their bytes too: with
	// large values, 10,000 entries are gigabytes of log to keep on disk
	// and to replay to a follower, where the key space they built may be
	// far smaller. etcd bounds them by count only.
	SnapshotLogBytes, SnapshotCatchUpBytes uint64
	// MaxSnapshots and MaxWALs bound the files kept (0 keeps all).
	MaxSnapshots, MaxWALs int

	// HeartbeatInterval is the raft tick; ElectionTimeout is a multiple of it.
	HeartbeatInterval, ElectionTimeout time.Duration
	// PreVote enables the pre-vote phase (on by default in cmd/synod).
	PreVote bool
	// LeaseReads serves linearizable reads from the leader's lease
	// (check-quorum) instead of a heartbeat round per batch.
	LeaseReads bool

	// PeerURLs are this member's advertised peer URLs; ClientURLs its
	// advertised client URLs.
	PeerURLs, ClientURLs []string
	// InitialCluster maps names to peer URLs (for a new member only).
	InitialCluster map[string][]string
	// InitialClusterState is "new" or "existing".
	InitialClusterState string
	// InitialClusterToken separates clusters built from the same URLs.
	InitialClusterToken string
	// SkipReconfigCheck accepts membership changes that would leave the
	// started members short of a quorum (etcd's
	// --strict-reconfig-check=false).
	SkipReconfigCheck bool
	// MaxLearners bounds the learners of the cluster (0: default 1, as
	// etcd's --max-learners). Every member checks it when it applies an
	// addition, so give all members the same value.
	MaxLearners int
	// SlowFirstElection waits a whole election timeout before a
	// starting member's first election, instead of hastening it (etcd's
	// --initial-election-tick-advance=false).
	SlowFirstElection bool

	// QuotaBackendBytes raises the NOSPACE alarm when the key space and
	// its history (mvcc.Store.LogicalSize: what users stored, not the
	// engine's files) grow past it (0: default 2 GiB; negative: no quota).
	QuotaBackendBytes int64
	// MaxTxnOps bounds the operations of one Txn.
	MaxTxnOps int
	// MaxRequestBytes bounds a client request.
	MaxRequestBytes int

	// AutoCompaction compacts old history automatically.
	AutoCompaction AutoCompaction

	// Lease tunes leases (checkpointing).
	Lease LeaseConfig

	// Watch tunes the watch hub (zero fields take its defaults).
	Watch watch.Options

	// RequestTimeout bounds how long a write waits for its result; zero
	// means 5s plus two election timeouts, as etcd.
	RequestTimeout time.Duration

	// Logger receives the member's logs; nil means slog.Default().
	Logger *slog.Logger

	// Exit ends the process after a failure the member cannot stop
	// cleanly from: the disk under the key space filled up (the storage
	// engine cannot go on after a failed write). nil means os.Exit.
	Exit func(code int)

	// FS, if set, holds every file of the member (the raft log, the
	// snapshots, those being received, the key space) instead of the
	// operating system's file system. Crash tests pass a diskfs.MemFS,
	// which loses the unsynced writes of all of them at one instant, to
	// check that everything acknowledged survives a power loss.
	FS diskfs.FS

	// BootstrapDefragThreshold, if positive, is how many bytes of the
	// key space's files beyond the data in use make the member compact
	// them before it starts (etcd's
	// --bootstrap-defrag-threshold-megabytes, in bytes).
	BootstrapDefragThreshold int64

	// InitialCorruptCheck makes embed compare the member's data with its
	// peers' before it serves, and refuse to start if they differ
	// (etcd's InitialCorruptCheck feature gate; Server.CheckInitialHash).
	InitialCorruptCheck bool

	// CorruptCheckTime, if positive, is how often the leader compares
	// its key space's hash with the other members' (etcd's
	// --corrupt-check-time); a member that differs gets the CORRUPT
	// alarm, which stops writes.
	CorruptCheckTime time.Duration

	// WarnApplyDuration is how long applying a batch of entries may take
	// before it is logged as slow (etcd's --warning-apply-duration;
	// 0: DefaultWarnApplyDuration).
	WarnApplyDuration time.Duration
}

// DefaultWarnApplyDuration is etcd's default --warning-apply-duration.
const DefaultWarnApplyDuration = 100 * time.Millisecond

// Defaults used when a Config field is zero.
const (
	DefaultSnapshotCount          = 10000
	DefaultSnapshotCatchUpEntries = 5000
	// DefaultMaxLearners is etcd's --max-learners default.
	DefaultMaxLearners          = 1
	DefaultSnapshotLogBytes     = 512 << 20
	DefaultSnapshotCatchUpBytes = 128 << 20
	DefaultHeartbeatInterval    = 100 * time.Millisecond
	DefaultElectionTimeout      = 1000 * time.Millisecond
	DefaultQuotaBackendBytes    = 2 << 30
	DefaultMaxTxnOps            = 128
	DefaultMaxRequestBytes      = 1536 * 1024
)

// errInvalidConfig marks configuration errors.
var errInvalidConfig = errors.New("invalid configuration")

// withDefaults returns a copy with zero fields defaulted and checks it.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s", errInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Name == "" {
		return bad("member name is empty")
	}
	if c.DataDir == "" {
		return bad("data directory is empty")
	}
	if c.WALDir == "" {
		c.WALDir = datadir.New(c.DataDir, "").WAL()
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = min(DefaultSnapshotCatchUpEntries, c.SnapshotCount)
	}
	if c.SnapshotLogBytes == 0 {
		c.SnapshotLogBytes = DefaultSnapshotLogBytes
	}
	if c.SnapshotCatchUpBytes == 0 {
		c.SnapshotCatchUpBytes = DefaultSnapshotCatchUpBytes
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.HeartbeatInterval < time.Millisecond {
		return bad("heartbeat interval %v is below 1ms", c.HeartbeatInterval)
	}
	if c.ElectionTimeout < 5*c.HeartbeatInterval {
		return bad("election timeout %v must be at least 5 times the heartbeat interval %v", c.ElectionTimeout, c.HeartbeatInterval)
	}
	if c.ElectionTimeout > 50*time.Second {
		return bad("election timeout %v is above the 50s maximum", c.ElectionTimeout)
	}
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if c.MaxLearners == 0 {
		c.MaxLearners = DefaultMaxLearners
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.MaxTxnOps < 0 {
		return bad("max txn ops %d is negative", c.MaxTxnOps)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxRequestBytes < 0 {
		return bad("max request bytes %d is negative", c.MaxRequestBytes)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5*time.Second + 2*c.ElectionTimeout
	}
	switch c.InitialClusterState {
	case "":
		c.InitialClusterState = "new"
	case "new", "existing":
	default:
		return bad("initial cluster state %q: want new or existing", c.InitialClusterState)
	}
	if c.InitialClusterToken == "" {
		c.InitialClusterToken = "etcd-cluster"
	}
	if len(c.PeerURLs) == 0 {
		return bad("no advertised peer URL")
	}
	for _, u := range c.PeerURLs {
		if err := checkURL(u); err != nil {
			return bad("%v", err)
		}
	}
	for _, u := range c.ClientURLs {
		// Clients dial what they are given; etcd takes any port here.
		if _, err := endpoint.ParseAny(u); err != nil {
			return bad("advertised client URL: %v", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.WarnApplyDuration <= 0 {
		c.WarnApplyDuration = DefaultWarnApplyDuration
	}
	if c.Exit == nil {
		c.Exit = os.Exit
	}
	return c, nil
}

// electionTicks is the election timeout in heartbeat ticks.
func (c *Config) electionTicks() int {
	return int(c.ElectionTimeout / c.HeartbeatInterval)
}

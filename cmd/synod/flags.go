package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/synod-db/synod/api/v3rpc"
	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/server/watch"
)

// optionalURLs is a comma-separated list of URLs that may be empty.
type optionalURLs []string

func (u *optionalURLs) String() string { return strings.Join(*u, ",") }

func (u *optionalURLs) Set(s string) error {
	*u = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*u = append(*u, p)
		}
	}
	return nil
}

// urlsFlag is a comma-separated list of URLs.
type urlsFlag []string

func (u *urlsFlag) String() string { return strings.Join(*u, ",") }

func (u *urlsFlag) Set(s string) error {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("empty URL list")
	}
	*u = out
	return nil
}

// options are the values of the command-line flags.
type options struct {
	name, dataDir, walDir, configFile           string
	snapshotCount                               uint64
	heartbeatMS, electionMS                     uint
	listenPeer, listenClient                    urlsFlag
	listenClientHTTP, listenMetrics             optionalURLs
	hostWhitelist, cors                         optionalURLs
	unsafeNoFsync, gateway                      bool
	reusePort, reuseAddress                     bool
	warnApply, warnUnary, corruptCheck          time.Duration
	bootstrapDefragMB                           uint
	discoveryEndpoints                          optionalURLs
	discoveryToken                              string
	discoveryDialTimeout                        time.Duration
	advertisePeer, advertiseClient              urlsFlag
	initialCluster, initialState, initialToken  string
	maxSnapshots, maxWALs                       uint
	quotaBytes                                  int64
	maxTxnOps                                   uint
	maxRequestBytes                             uint
	autoCompactionMode, autoCompactionRetention string
	preVote, enablePprof, leaseReads            bool
	leaseCheckpoint                             bool
	leaseCheckpointInterval                     time.Duration
	snapshotCatchUp                             uint64
	strictReconfig, electionTickAdvance         bool
	watchProgressInterval                       time.Duration
	maxLearners                                 int
	featureGates                                featureGates
	log                                         logSettings
	logOutputs                                  urlsFlag
	version                                     bool
	keepAliveMinTime, keepAliveInterval         time.Duration
	keepAliveTimeout                            time.Duration
	maxStreams                                  uint32
}

// parseFlags reads the flags, then ETCD_* (or SYNOD_*) environment
// variables for flags not given, and builds the member's configuration.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (embed.Config, *slog.Logger, error) {
	var o options
	fs, inert := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		return embed.Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return embed.Config{}, nil, fmt.Errorf("unexpected argument %q: synod takes flags only (see --help)", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return embed.Config{}, nil, err
	}
	if o.version {
		return embed.Config{}, nil, errVersion
	}
	var fileWarnings []string
	if o.configFile != "" {
		// As in etcd, a configuration file replaces every other flag
		// and environment variable.
		var fromFile options
		fileFS, fileInert := newFlagSet(&fromFile, stderr)
		ignored, err := applyConfigFile(fileFS, o.configFile)
		if err != nil {
			return embed.Config{}, nil, err
		}
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "config-file" {
				fileWarnings = append(fileWarnings, fmt.Sprintf("--%s is ignored: --config-file %s replaces every other flag and ETCD_* variable, as in etcd", f.Name, o.configFile))
			}
		})
		fileWarnings = append(fileWarnings, ignored...)
		o, fs, inert = fromFile, fileFS, fileInert
	}
	warnings, err := checkInertFlags(fs, inert)
	if err != nil {
		return embed.Config{}, nil, err
	}
	warnings = append(fileWarnings, warnings...)
	fs.Visit(func(f *flag.Flag) {
		if msg, ok := deprecatedFlags[f.Name]; ok {
			warnings = append(warnings, msg)
		}
	})
	warnings = append(warnings, o.featureGates.warnings()...)
	if o.unsafeNoFsync {
		warnings = append(warnings, "--unsafe-no-fsync: nothing is synced to disk; a power loss or a kernel crash loses acknowledged writes and may corrupt the data directory (use it for tests only)")
	}
	cfg, logger, err := o.config(stderr)
	if err != nil {
		return embed.Config{}, nil, err
	}
	for _, w := range warnings {
		logger.Warn(w)
	}
	return cfg, logger, nil
}

// deprecatedFlags are the flags etcd 3.7 deprecates, with its warning
// (tools and etcd's tests look for these words).
var deprecatedFlags = map[string]string{
	"max-snapshots":  "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8.",
	"v2-deprecation": "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.",
}

// newFlagSet registers synod's flags, etcd's, on a new flag set writing
// into o; inert are etcd's flags synod accepts without acting on them.
func newFlagSet(o *options, stderr io.Writer) (fs *flag.FlagSet, inert map[string]*inertValue) {
	fs = flag.NewFlagSet("synod", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configFile, "config-file", "", "path to an etcd YAML configuration file; it replaces every other flag and ETCD_* variable")
	fs.StringVar(&o.name, "name", "default", "human-readable name for this member")
	fs.StringVar(&o.dataDir, "data-dir", "", "path to the data directory (default \"${name}.etcd\")")
	fs.StringVar(&o.walDir, "wal-dir", "", "path to a dedicated WAL directory (default: inside the data directory)")
	fs.Uint64Var(&o.snapshotCount, "snapshot-count", server.DefaultSnapshotCount, "number of applied entries between snapshots")
	fs.UintVar(&o.heartbeatMS, "heartbeat-interval", 100, "time (in milliseconds) of a heartbeat interval")
	fs.UintVar(&o.electionMS, "election-timeout", 1000, "time (in milliseconds) for an election to timeout")
	o.listenPeer = urlsFlag{"http://localhost:2380"}
	o.listenClient = urlsFlag{"http://localhost:2379"}
	o.advertisePeer = urlsFlag{"http://localhost:2380"}
	o.advertiseClient = urlsFlag{"http://localhost:2379"}
	fs.Var(&o.listenPeer, "listen-peer-urls", "URL to listen on for peer traffic")
	fs.Var(&o.listenClient, "listen-client-urls", "comma-separated URLs to listen on for client traffic")
	fs.Var(&o.listenClientHTTP, "listen-client-http-urls", "comma-separated URLs to serve the client HTTP endpoints (/health, /metrics, ...) on, besides the client URLs")
	fs.Var(&o.listenMetrics, "listen-metrics-urls", "comma-separated URLs to serve /metrics and the health endpoints on, as plain HTTP")
	fs.BoolVar(&o.reusePort, "socket-reuse-port", false, "set SO_REUSEPORT on the listeners (several processes may listen on one address)")
	fs.BoolVar(&o.reuseAddress, "socket-reuse-address", false, "set SO_REUSEADDR on the listeners (bind again while old connections are in TIME_WAIT)")
	fs.UintVar(&o.bootstrapDefragMB, "bootstrap-defrag-threshold-megabytes", 0, "at start-up, compact the key space's files if they hold this many MB more than the data in use (0: never)")
	fs.Var(&o.discoveryEndpoints, "discovery-endpoints", "comma-separated client URLs of a discovery cluster (etcd's v3 discovery) where a new cluster's members find each other")
	fs.StringVar(&o.discoveryToken, "discovery-token", "", "the name of the cluster to form in the discovery cluster")
	fs.DurationVar(&o.discoveryDialTimeout, "discovery-dial-timeout", 2*time.Second, "how long to wait to connect to the discovery cluster")
	fs.DurationVar(&o.corruptCheck, "corrupt-check-time", 0, "how often the leader compares its data's hash with the other members' (0: never); a member that differs gets the CORRUPT alarm")
	fs.DurationVar(&o.warnApply, "warning-apply-duration", server.DefaultWarnApplyDuration, "log applies of entries that take longer than this")
	fs.DurationVar(&o.warnUnary, "warning-unary-request-duration", 300*time.Millisecond, "log unary client requests that take longer than this")
	fs.BoolVar(&o.gateway, "enable-grpc-gateway", true, "serve the v3 API as JSON over HTTP (/v3/...) on the client URLs")
	o.hostWhitelist, o.cors = optionalURLs{"*"}, optionalURLs{"*"}
	fs.Var(&o.hostWhitelist, "host-whitelist", "comma-separated host names the client HTTP endpoints answer on plain HTTP (* for any); a guard against DNS rebinding")
	fs.Var(&o.cors, "cors", "comma-separated origins allowed for cross-origin requests to the client HTTP endpoints (* for any)")
	fs.BoolVar(&o.unsafeNoFsync, "unsafe-no-fsync", false, "never sync to disk: a power loss loses acknowledged writes (tests only)")
	fs.Var(&o.advertisePeer, "initial-advertise-peer-urls", "this member's peer URLs to advertise to the rest of the cluster")
	fs.Var(&o.advertiseClient, "advertise-client-urls", "this member's client URLs to advertise to the public")
	fs.StringVar(&o.initialCluster, "initial-cluster", "", "initial cluster configuration for bootstrapping, name=peer-url,... (default \"${name}=${initial-advertise-peer-urls}\")")
	fs.StringVar(&o.initialState, "initial-cluster-state", "new", "initial cluster state: new or existing")
	fs.StringVar(&o.initialToken, "initial-cluster-token", "etcd-cluster", "initial cluster token, unique per cluster")
	fs.UintVar(&o.maxSnapshots, "max-snapshots", 5, "maximum number of snapshot files to retain (0 is unlimited)")
	fs.UintVar(&o.maxWALs, "max-wals", 5, "maximum number of WAL files to retain (0 is unlimited)")
	fs.Int64Var(&o.quotaBytes, "quota-backend-bytes", 0, "raise the NOSPACE alarm when the key space exceeds this size (0: default 2 GiB)")
	fs.UintVar(&o.maxTxnOps, "max-txn-ops", server.DefaultMaxTxnOps, "maximum number of operations permitted in a transaction")
	fs.UintVar(&o.maxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "maximum client request size in bytes the server will accept")
	fs.StringVar(&o.autoCompactionMode, "auto-compaction-mode", "periodic", "interpret auto-compaction-retention as periodic (a duration) or revision (a count)")
	fs.StringVar(&o.autoCompactionRetention, "auto-compaction-retention", "0", "auto compaction retention for the mvcc key space (0 disables; periodic: hours or a duration like 30m)")
	fs.BoolVar(&o.preVote, "pre-vote", true, "enable the raft pre-vote phase")
	fs.BoolVar(&o.leaseReads, "experimental-lease-reads", false, "serve linearizable reads from the leader's lease instead of a heartbeat round")
	fs.BoolVar(&o.leaseCheckpoint, "experimental-enable-lease-checkpoint", false, "the leader records the remaining TTL of leases through raft, so that a restart does not refresh them")
	fs.DurationVar(&o.leaseCheckpointInterval, "experimental-lease-checkpoint-interval", 5*time.Minute, "how often the leader checkpoints leases' remaining TTL")
	fs.StringVar(&o.log.level, "log-level", "info", "log level: debug, info, warn, error, panic or fatal")
	fs.StringVar(&o.log.logger, "logger", "zap", "structured logging: zap (etcd's only choice)")
	fs.StringVar(&o.log.format, "log-format", "json", "log format: json (lines with etcd's fields level, ts, caller, msg) or console")
	o.logOutputs = urlsFlag{"default"}
	fs.Var(&o.logOutputs, "log-outputs", "comma-separated log targets: default or stderr, stdout, /dev/null, or file paths")
	fs.Uint64Var(&o.snapshotCatchUp, "snapshot-catchup-entries", server.DefaultSnapshotCatchUpEntries, "number of entries kept behind a snapshot for slow followers to catch up from the log")
	fs.BoolVar(&o.strictReconfig, "strict-reconfig-check", true, "reject membership changes that would leave the started members short of a quorum")
	fs.BoolVar(&o.electionTickAdvance, "initial-election-tick-advance", true, "at start-up, skip most of the first election timeout (a lone member campaigns at once)")
	fs.DurationVar(&o.watchProgressInterval, "watch-progress-notify-interval", 10*time.Minute, "how often watchers that asked for progress notifications get one")
	fs.IntVar(&o.maxLearners, "max-learners", server.DefaultMaxLearners, "maximum number of learners in the cluster")
	fs.Var(&o.featureGates, "feature-gates", "comma-separated Feature=true|false pairs (etcd's server feature gates; see --help)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.DurationVar(&o.keepAliveMinTime, "grpc-keepalive-min-time", 5*time.Second, "minimum interval a client should wait between pings; one that pings more often is disconnected")
	fs.DurationVar(&o.keepAliveInterval, "grpc-keepalive-interval", 2*time.Hour, "how often the server pings an idle client connection (0 disables)")
	fs.DurationVar(&o.keepAliveTimeout, "grpc-keepalive-timeout", 20*time.Second, "how long the server waits for a ping's answer before it closes the connection")
	fs.Var(uint32Flag{&o.maxStreams}, "max-concurrent-streams", "maximum concurrent streams one client connection may open (default 4294967295)")
	inert = addInertFlags(fs)
	fs.BoolVar(&o.enablePprof, "enable-pprof", false, "serve runtime profiling data on /debug/pprof/ of the client port")
	return fs, inert
}

// errVersion asks run to print the version instead of starting.
var errVersion = errors.New("version asked")

// applyEnv sets every flag not given on the command line from
// ETCD_<FLAG> or SYNOD_<FLAG> (upper case, dashes as underscores).
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		key := strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		for _, name := range []string{"SYNOD_" + key, "ETCD_" + key} {
			if v := getenv(name); v != "" {
				if serr := fs.Set(f.Name, v); serr != nil {
					err = fmt.Errorf("invalid value %q for environment variable %s: %v", v, name, serr)
				}
				return
			}
		}
	})
	return err
}

// config turns the options into a member configuration.
func (o *options) config(stderr io.Writer) (embed.Config, *slog.Logger, error) {
	o.log.outputs = o.logOutputs
	logger, err := newLogger(o.log, stderr)
	if err != nil {
		return embed.Config{}, nil, err
	}
	if o.dataDir == "" {
		o.dataDir = o.name + ".etcd"
	}
	if o.initialCluster == "" {
		var parts []string
		for _, u := range o.advertisePeer {
			parts = append(parts, o.name+"="+u)
		}
		o.initialCluster = strings.Join(parts, ",")
	}
	ic, err := server.ParseInitialCluster(o.initialCluster)
	if err != nil {
		return embed.Config{}, nil, fmt.Errorf("invalid --initial-cluster: %w", err)
	}
	if o.heartbeatMS == 0 {
		return embed.Config{}, nil, fmt.Errorf("invalid --heartbeat-interval 0: give milliseconds, e.g. 100")
	}
	if o.maxRequestBytes > 64<<20 {
		return embed.Config{}, nil, fmt.Errorf("invalid --max-request-bytes %d: at most 64 MiB", o.maxRequestBytes)
	}
	retention, err := parseRetention(o.autoCompactionMode, o.autoCompactionRetention)
	if err != nil {
		return embed.Config{}, nil, err
	}
	maxSnaps, maxWALs := int(o.maxSnapshots), int(o.maxWALs)
	cfg := embed.Config{
		Config: server.Config{
			Name:                     o.name,
			DataDir:                  o.dataDir,
			WALDir:                   o.walDir,
			SnapshotCount:            o.snapshotCount,
			MaxSnapshots:             maxSnaps,
			MaxWALs:                  maxWALs,
			HeartbeatInterval:        time.Duration(o.heartbeatMS) * time.Millisecond,
			ElectionTimeout:          time.Duration(o.electionMS) * time.Millisecond,
			PreVote:                  o.preVote,
			LeaseReads:               o.leaseReads,
			PeerURLs:                 o.advertisePeer,
			ClientURLs:               o.advertiseClient,
			InitialCluster:           ic,
			InitialClusterState:      o.initialState,
			InitialClusterToken:      o.initialToken,
			QuotaBackendBytes:        o.quotaBytes,
			MaxTxnOps:                int(o.maxTxnOps),
			MaxRequestBytes:          int(o.maxRequestBytes),
			AutoCompaction:           retention,
			Lease:                    leaseConfig(o.leaseCheckpoint || o.featureGates.enabled("LeaseCheckpoint"), o.leaseCheckpointInterval),
			SnapshotCatchUpEntries:   o.snapshotCatchUp,
			SkipReconfigCheck:        !o.strictReconfig,
			SlowFirstElection:        !o.electionTickAdvance,
			MaxLearners:              o.maxLearners,
			Watch:                    watch.Options{ProgressInterval: o.watchProgressInterval},
			WarnApplyDuration:        o.warnApply,
			CorruptCheckTime:         o.corruptCheck,
			BootstrapDefragThreshold: int64(o.bootstrapDefragMB) << 20,
			Logger:                   logger,
		},
		ListenPeerURLs:       o.listenPeer,
		ListenClientURLs:     o.listenClient,
		ListenClientHTTPURLs: o.listenClientHTTP,
		ListenMetricsURLs:    o.listenMetrics,
		ReusePort:            o.reusePort,
		DiscoveryEndpoints:   o.discoveryEndpoints,
		DiscoveryToken:       o.discoveryToken,
		DiscoveryDialTimeout: o.discoveryDialTimeout,
		ReuseAddress:         o.reuseAddress,
		API: v3rpc.Options{
			EnablePprof:          o.enablePprof,
			KeepAliveMinTime:     o.keepAliveMinTime,
			KeepAliveInterval:    o.keepAliveInterval,
			KeepAliveTimeout:     o.keepAliveTimeout,
			MaxConcurrentStreams: o.maxStreams,
			DisableGateway:       !o.gateway,
			WarnUnaryDuration:    o.warnUnary,
			HostWhitelist:        o.hostWhitelist,
			CORS:                 o.cors,
		},
	}
	if o.unsafeNoFsync {
		cfg.FS = diskfs.NoSync(diskfs.Default)
	}
	if len(o.discoveryEndpoints) > 0 && o.discoveryToken == "" {
		return embed.Config{}, nil, errors.New("--discovery-endpoints needs --discovery-token: the name of the cluster to form")
	}
	if o.snapshotCount == 0 {
		return embed.Config{}, nil, fmt.Errorf("invalid --snapshot-count 0: give a positive number of entries")
	}
	if o.initialState != "new" && o.initialState != "existing" {
		return embed.Config{}, nil, fmt.Errorf("invalid --initial-cluster-state %q: want new or existing", o.initialState)
	}
	if o.electionMS < 5*o.heartbeatMS {
		return embed.Config{}, nil, fmt.Errorf("invalid --election-timeout %dms: must be at least 5 times --heartbeat-interval (%dms)", o.electionMS, o.heartbeatMS)
	}
	return cfg, logger, nil
}

// parseRetention reads --auto-compaction-mode/--auto-compaction-retention.
func parseRetention(mode, retention string) (server.AutoCompaction, error) {
	switch mode {
	case "periodic":
		if h, err := strconv.ParseFloat(retention, 64); err == nil {
			if h < 0 {
				return server.AutoCompaction{}, fmt.Errorf("invalid --auto-compaction-retention %q: negative", retention)
			}
			return server.AutoCompaction{Period: time.Duration(h * float64(time.Hour))}, nil
		}
		d, err := time.ParseDuration(retention)
		if err != nil || d < 0 {
			return server.AutoCompaction{}, fmt.Errorf("invalid --auto-compaction-retention %q for periodic mode: give hours (1) or a duration (30m)", retention)
		}
		return server.AutoCompaction{Period: d}, nil
	case "revision":
		n, err := strconv.ParseInt(retention, 10, 64)
		if err != nil || n < 0 {
			return server.AutoCompaction{}, fmt.Errorf("invalid --auto-compaction-retention %q for revision mode: give a number of revisions", retention)
		}
		return server.AutoCompaction{Revisions: n}, nil
	}
	return server.AutoCompaction{}, fmt.Errorf("invalid --auto-compaction-mode %q: want periodic or revision", mode)
}

// leaseConfig reads the lease checkpoint flags.
func leaseConfig(enabled bool, interval time.Duration) server.LeaseConfig {
	if !enabled {
		return server.LeaseConfig{}
	}
	return server.LeaseConfig{CheckpointInterval: interval}
}

// uint32Flag is a flag holding a uint32, as etcd's
// --max-concurrent-streams; zero means the default.
type uint32Flag struct{ p *uint32 }

func (f uint32Flag) String() string {
	if f.p == nil || *f.p == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(*f.p), 10)
}

func (f uint32Flag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want a number from 0 to %d", uint32(math.MaxUint32))
	}
	*f.p = uint32(v)
	return nil
}

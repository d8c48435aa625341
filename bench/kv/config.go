package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// intList is a comma-separated list of positive integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(s string) error {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	*l = out
	return nil
}

// stringList is a comma-separated list of words.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	*l = out
	return nil
}

// The systems compared, in the order they run.
var knownSystems = []string{"etcd", "synod"}

// The workload groups of compare.
var knownGroups = []string{"put", "range-l", "range-s", "txn-mixed", "watch-latency", "lease-keepalive", "recovery"}

// compareConfig holds the flags of the compare command.
type compareConfig struct {
	Quick     bool
	Rounds    int
	Systems   stringList
	Groups    stringList
	EtcdBin   string
	SynodBin  string
	OutDir    string
	DataRoot  string
	KeepData  bool
	Target    string
	Pause     time.Duration
	Cluster   ClusterOptions
	KeySize   int
	ValSize   int
	KeySpace  int
	SeqKeys   bool
	PutCl     intList
	PutConns  intList
	PutTotal  intList
	RangeCl   int
	RangeConn int
	RangeTot  int
	TxnCl     int
	TxnConns  int
	TxnTotal  int
	TxnSpace  int
	RWRatio   float64
	WatchTot  int
	KeepCl    int
	KeepConns int
	KeepTotal int
	RecKeys   int
	RecVictim string
	RecWait   time.Duration
	// WorkloadWait bounds one workload's run.
	WorkloadWait time.Duration
}

// Default totals: full mode is sized for a few minutes per system on a
// two-core machine, quick mode for a smoke test of well under a minute.
var (
	fullPutTotal  = intList{2000, 10000, 30000, 100000}
	quickPutTotal = intList{100, 500, 1000, 3000}
)

const (
	fullRangeTotal   = 100000
	quickRangeTotal  = 3000
	fullTxnTotal     = 30000
	quickTxnTotal    = 1000
	fullTxnSpace     = 10000
	quickTxnSpace    = 1000
	fullRecoveryKeys = 1000000
	fullWatchTotal   = 2000
	fullKeepTotal    = 30000
	quickKeepTotal   = 1000
	quickWatchTotal  = 200
	fullRounds       = 3
	quickRecKeys     = 10000
)

// parseCompareFlags reads the compare command's flags.
func parseCompareFlags(args []string, stderr io.Writer) (*compareConfig, error) {
	c := &compareConfig{
		Systems:  stringList{"etcd", "synod"},
		Groups:   slices.Clone(stringList(knownGroups)),
		PutCl:    intList{1, 10, 100, 1000},
		PutConns: intList{1, 1, 10, 100},
	}
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run . compare [flags]   (or: go run . cluster [flags], with the same flags)")
		fs.PrintDefaults()
	}
	fs.BoolVar(&c.Quick, "quick", false, "small totals (a smoke test, well under a minute per system): numbers mean little")
	fs.Var(&c.Systems, "systems", "systems to run, in order (etcd, synod)")
	fs.IntVar(&c.Rounds, "rounds", 0, fmt.Sprintf("rounds, each starting fresh clusters, alternating which system goes first; the report gives each measure's median round (default %d, quick 1)", fullRounds))
	fs.Var(&c.Groups, "workloads", "workload groups to run: "+strings.Join(knownGroups, ","))
	fs.StringVar(&c.EtcdBin, "etcd-bin", "", "use this etcd binary instead of building the module's tool")
	fs.StringVar(&c.SynodBin, "synod-bin", "", "use this synod binary instead of building it from the tree")
	fs.StringVar(&c.OutDir, "out", "results", "directory for the report (.md), raw numbers (.json) and chart (.svg)")
	fs.StringVar(&c.DataRoot, "data-root", "", "directory under which each cluster gets a fresh temporary directory (default: the system temp dir; must be a real disk, not tmpfs, for fsync to count)")
	fs.BoolVar(&c.KeepData, "keep-data", false, "keep each cluster's data and logs instead of deleting them")
	fs.StringVar(&c.Target, "target", "leader", "where clients connect: leader (all connections to the leader) or all (connections spread over the members)")
	fs.DurationVar(&c.Pause, "pause", time.Second, "idle time between workloads")
	fs.IntVar(&c.Cluster.Size, "members", 3, "cluster size")
	fs.IntVar(&c.Cluster.BasePort, "base-port", 24000, "member i listens for clients on base+10*i and for peers on base+10*i+1")
	fs.IntVar(&c.Cluster.SnapshotCount, "snapshot-count", 10000, "--snapshot-count for both systems")
	fs.IntVar(&c.Cluster.HeartbeatInterval, "heartbeat-interval", 100, "--heartbeat-interval (ms) for both systems")
	fs.IntVar(&c.Cluster.ElectionTimeout, "election-timeout", 1000, "--election-timeout (ms) for both systems")
	fs.StringVar(&c.Cluster.LogLevel, "log-level", "info", "--log-level for both systems")
	fs.DurationVar(&c.Cluster.StartTimeout, "start-timeout", 60*time.Second, "how long a member may take to serve its first read")
	fs.IntVar(&c.KeySize, "key-size", 8, "key size in bytes (keys are zero-padded decimal numbers)")
	fs.IntVar(&c.ValSize, "val-size", 256, "value size in bytes")
	fs.IntVar(&c.KeySpace, "key-space-size", 100000, "put: number of distinct keys")
	fs.BoolVar(&c.SeqKeys, "sequential-keys", true, "put: keys in order (false: random in the key space)")
	fs.Var(&c.PutCl, "put-clients", "put: client counts, one workload each")
	fs.Var(&c.PutConns, "put-conns", "put: connections for each client count")
	fs.Var(&c.PutTotal, "put-total", "put: requests for each client count (default "+fullPutTotal.String()+", quick "+quickPutTotal.String()+")")
	fs.IntVar(&c.RangeCl, "range-clients", 1000, "range: clients")
	fs.IntVar(&c.RangeConn, "range-conns", 100, "range: connections")
	fs.IntVar(&c.RangeTot, "range-total", 0, fmt.Sprintf("range: requests per consistency (default %d, quick %d)", fullRangeTotal, quickRangeTotal))
	fs.IntVar(&c.TxnCl, "txn-clients", 100, "txn-mixed: clients")
	fs.IntVar(&c.TxnConns, "txn-conns", 10, "txn-mixed: connections")
	fs.IntVar(&c.TxnTotal, "txn-total", 0, fmt.Sprintf("txn-mixed: requests (default %d, quick %d)", fullTxnTotal, quickTxnTotal))
	fs.IntVar(&c.TxnSpace, "txn-key-space-size", 0, fmt.Sprintf("txn-mixed: number of distinct keys, written once before the run (default %d, quick %d)", fullTxnSpace, quickTxnSpace))
	fs.Float64Var(&c.RWRatio, "rw-ratio", 1, "txn-mixed: reads per write")
	fs.IntVar(&c.WatchTot, "watch-total", 0, fmt.Sprintf("watch-latency: puts, one at a time, for each of the leader's and a follower's watcher (default %d, quick %d)", fullWatchTotal, quickWatchTotal))
	fs.IntVar(&c.KeepCl, "keepalive-clients", 100, "lease-keepalive: clients, each with its own lease")
	fs.IntVar(&c.KeepConns, "keepalive-conns", 10, "lease-keepalive: connections")
	fs.IntVar(&c.KeepTotal, "keepalive-total", 0, fmt.Sprintf("lease-keepalive: renewals (default %d, quick %d)", fullKeepTotal, quickKeepTotal))
	fs.IntVar(&c.RecKeys, "recovery-keys", 0, fmt.Sprintf("recovery: keys written before the kill (default %d, quick %d)", fullRecoveryKeys, quickRecKeys))
	fs.StringVar(&c.RecVictim, "recovery-victim", "follower", "recovery: member killed: follower or leader")
	fs.DurationVar(&c.RecWait, "recovery-timeout", 10*time.Minute, "recovery: how long the restarted member may take")
	fs.DurationVar(&c.WorkloadWait, "workload-timeout", 15*time.Minute, "stop a workload that runs longer than this (a stalled cluster)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("compare takes flags only, not %q", fs.Arg(0))
	}
	if c.PutTotal == nil {
		c.PutTotal = slices.Clone(fullPutTotal)
		if c.Quick {
			c.PutTotal = slices.Clone(quickPutTotal)
		}
	}
	pick := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if c.Quick {
				*v = quick
			}
		}
	}
	pick(&c.RangeTot, fullRangeTotal, quickRangeTotal)
	pick(&c.TxnTotal, fullTxnTotal, quickTxnTotal)
	pick(&c.TxnSpace, fullTxnSpace, quickTxnSpace)
	pick(&c.RecKeys, fullRecoveryKeys, quickRecKeys)
	pick(&c.WatchTot, fullWatchTotal, quickWatchTotal)
	pick(&c.KeepTotal, fullKeepTotal, quickKeepTotal)
	pick(&c.Rounds, fullRounds, 1)
	return c, c.check()
}

// check validates the combination of flags.
func (c *compareConfig) check() error {
	var errs []error
	if c.Rounds < 1 {
		errs = append(errs, fmt.Errorf("-rounds %d: want at least 1", c.Rounds))
	}
	if len(c.Systems) == 0 {
		errs = append(errs, errors.New("-systems is empty"))
	}
	for _, s := range c.Systems {
		if !slices.Contains(knownSystems, s) {
			errs = append(errs, fmt.Errorf("-systems: unknown system %q (want etcd, synod)", s))
		}
	}
	for _, g := range c.Groups {
		if !slices.Contains(knownGroups, g) {
			errs = append(errs, fmt.Errorf("-workloads: unknown group %q (want some of %s)", g, strings.Join(knownGroups, ",")))
		}
	}
	if len(c.PutConns) != len(c.PutCl) || len(c.PutTotal) != len(c.PutCl) {
		errs = append(errs, fmt.Errorf("-put-clients (%d values), -put-conns (%d) and -put-total (%d) must have the same length", len(c.PutCl), len(c.PutConns), len(c.PutTotal)))
	}
	if c.Target != "leader" && c.Target != "all" {
		errs = append(errs, fmt.Errorf("-target %q: want leader or all", c.Target))
	}
	if c.RecVictim != "follower" && c.RecVictim != "leader" {
		errs = append(errs, fmt.Errorf("-recovery-victim %q: want follower or leader", c.RecVictim))
	}
	if c.Cluster.Size < 1 {
		errs = append(errs, fmt.Errorf("-members %d: want at least 1", c.Cluster.Size))
	}
	if c.RecVictim == "follower" && c.Cluster.Size < 2 && c.has("recovery") {
		errs = append(errs, errors.New("recovery with -recovery-victim=follower needs at least 2 members"))
	}
	if c.Cluster.HeartbeatInterval < 1 || c.Cluster.ElectionTimeout < 5*c.Cluster.HeartbeatInterval {
		errs = append(errs, errors.New("-election-timeout must be at least 5 times -heartbeat-interval"))
	}
	for _, w := range c.workloads() {
		if err := w.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.has("recovery") {
		w := c.fillWorkload()
		if err := w.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// has reports whether the workload group g is selected.
func (c *compareConfig) has(g string) bool { return slices.Contains(c.Groups, g) }

// workloads lists the measured workloads of compare, in order (recovery
// is separate).
func (c *compareConfig) workloads() []Workload {
	var ws []Workload
	if c.has("put") {
		for i, cl := range c.PutCl {
			if i >= len(c.PutConns) || i >= len(c.PutTotal) {
				break
			}
			ws = append(ws, Workload{
				Name: fmt.Sprintf("put-c%d", cl), Kind: kindPut,
				Conns: c.PutConns[i], Clients: cl, Total: c.PutTotal[i],
				KeySize: c.KeySize, ValSize: c.ValSize, SequentialKeys: c.SeqKeys, KeySpaceSize: c.KeySpace,
			})
		}
	}
	for _, cons := range []string{"l", "s"} {
		if c.has("range-" + cons) {
			ws = append(ws, Workload{
				Name: fmt.Sprintf("range-%s-c%d", cons, c.RangeCl), Kind: kindRange,
				Conns: c.RangeConn, Clients: c.RangeCl, Total: c.RangeTot,
				KeySize: c.KeySize, ValSize: c.ValSize, Consistency: cons, RangeKey: "bench-range-key",
			})
		}
	}
	if c.has("txn-mixed") {
		ws = append(ws, Workload{
			Name: fmt.Sprintf("txn-mixed-c%d", c.TxnCl), Kind: kindTxnMixed,
			Conns: c.TxnConns, Clients: c.TxnCl, Total: c.TxnTotal,
			KeySize: c.KeySize, ValSize: c.ValSize, KeySpaceSize: c.TxnSpace,
			Consistency: "l", RWRatio: c.RWRatio,
		})
	}
	if c.has("lease-keepalive") {
		ws = append(ws, Workload{
			Name: fmt.Sprintf("lease-keepalive-c%d", c.KeepCl), Kind: kindKeepAlive,
			Conns: c.KeepConns, Clients: c.KeepCl, Total: c.KeepTotal, KeySize: 1,
		})
	}
	if c.has("watch-latency") {
		for _, on := range []string{"leader", "follower"} {
			ws = append(ws, Workload{
				Name: "watch-latency-" + on, Kind: kindWatchLatency,
				Conns: 1, Clients: 1, Total: c.WatchTot, KeySize: len(watchLatencyKey), ValSize: c.ValSize, WatchOn: on,
			})
		}
	}
	return ws
}

// fillWorkload is the load written before the recovery kill: every key
// of a key space of RecKeys keys, once.
func (c *compareConfig) fillWorkload() Workload {
	ks := max(c.KeySize, len(strconv.Itoa(max(c.RecKeys-1, 0))))
	conns, clients := 100, 1000
	if c.RecKeys < clients {
		conns, clients = max(1, c.RecKeys/10), max(1, c.RecKeys)
	}
	return Workload{
		Name: fmt.Sprintf("fill-%d", c.RecKeys), Kind: kindPut,
		Conns: conns, Clients: clients, Total: c.RecKeys,
		KeySize: ks, ValSize: c.ValSize, SequentialKeys: true, KeySpaceSize: max(c.RecKeys, 1),
	}
}

// parseLoadFlags reads the flags of the put, range and txn-mixed
// commands, which run one workload against running servers.
func parseLoadFlags(kind string, args []string, stderr io.Writer) (Workload, []string, error) {
	w := Workload{Name: kind, Kind: kind}
	var endpoints stringList = []string{"127.0.0.1:2379"}
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&endpoints, "endpoints", "comma-separated client endpoints; connections are spread over them")
	fs.IntVar(&w.Conns, "conns", 1, "number of gRPC connections")
	fs.IntVar(&w.Clients, "clients", 1, "number of concurrent clients, sharing the connections round-robin")
	fs.IntVar(&w.Total, "total", 10000, "total number of requests")
	fs.IntVar(&w.KeySize, "key-size", 8, "key size in bytes")
	fs.IntVar(&w.ValSize, "val-size", 8, "value size in bytes")
	if kind != kindRange {
		fs.BoolVar(&w.SequentialKeys, "sequential-keys", false, "use keys in order instead of at random")
		fs.IntVar(&w.KeySpaceSize, "key-space-size", 1, "number of distinct keys")
	}
	if kind != kindPut {
		fs.StringVar(&w.Consistency, "consistency", "l", "reads: l (linearizable) or s (serializable)")
	}
	if kind == kindTxnMixed {
		fs.Float64Var(&w.RWRatio, "rw-ratio", 1, "reads per write")
	}
	fs.Usage = func() {
		usage := "usage: kv " + kind + " [flags]"
		if kind == kindRange {
			usage = "usage: kv range [flags] KEY"
		}
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return w, nil, err
	}
	switch {
	case kind == kindRange && fs.NArg() != 1:
		return w, nil, errors.New("range takes exactly one key: kv range [flags] KEY")
	case kind == kindRange:
		w.RangeKey = fs.Arg(0)
	case fs.NArg() > 0:
		return w, nil, fmt.Errorf("%s takes flags only, not %q", kind, fs.Arg(0))
	}
	if len(endpoints) == 0 {
		return w, nil, errors.New("--endpoints is empty")
	}
	return w, endpoints, w.validate()
}

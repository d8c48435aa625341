package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// MemberResources are one member's resource figures.
type MemberResources struct {
	Name string `json:"name"`
	// Leader: the member led the cluster during the workloads (the
	// leader does more work than a follower, so the report compares
	// leader with leader and followers with followers).
	Leader bool `json:"leader"`
	// Peak RSS (VmHWM) read just before the recovery workload, and at the
	// end of the run. The restarted member's end figure is that of its
	// new process.
	PeakRSSAfterWorkloads int64 `json:"peak_rss_after_workloads_bytes"`
	PeakRSSEnd            int64 `json:"peak_rss_end_bytes"`
	DataBytes             int64 `json:"data_dir_bytes"` // at the end
}

// RecoveryResult is the outcome of the recovery workload.
type RecoveryResult struct {
	Keys       int     `json:"keys"`
	Fill       *Result `json:"fill"`
	Victim     string  `json:"victim"`
	WasLeader  bool    `json:"victim_was_leader"`
	VictimData int64   `json:"victim_data_dir_bytes"` // when it was killed
	// From the restart until the client port accepts connections, and
	// until the member answers a linearizable read through its own
	// endpoint.
	PortOpen       time.Duration `json:"port_open_ns"`
	Serving        time.Duration `json:"serving_ns"`
	RestartPeakRSS int64         `json:"restart_peak_rss_bytes"`
}

// SystemResult is everything measured for one system.
type SystemResult struct {
	Name string `json:"name"`
	// Round is the round (1-based) of a run; 0 in a median of rounds.
	Round     int               `json:"round,omitempty"`
	Binary    string            `json:"binary"`
	Build     map[string]string `json:"build,omitempty"`
	Leader    string            `json:"leader,omitempty"`
	Results   []*Result         `json:"workloads"`
	Recovery  *RecoveryResult   `json:"recovery,omitempty"`
	Resources []MemberResources `json:"members,omitempty"`
	Error     string            `json:"error,omitempty"`
	Logs      []string          `json:"logs,omitempty"` // copies of the members' logs, kept on failure

	logPaths []string
}

// saveLogs copies the members' logs of a failed system into dir and
// returns the copies' paths.
func saveLogs(sr *SystemResult, dir string) []string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil
	}
	var saved []string
	for _, p := range sr.logPaths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		dst := filepath.Join(dir, filepath.Base(p))
		if os.WriteFile(dst, b, 0o644) == nil {
			saved = append(saved, dst)
		}
	}
	return saved
}

// result returns the result of the named workload, or nil.
func (s *SystemResult) result(name string) *Result {
	if s == nil {
		return nil
	}
	for _, r := range s.Results {
		if r.Workload.Name == name {
			return r
		}
	}
	return nil
}

// HostInfo describes the machine and the conditions of a run.
type HostInfo struct {
	GoVersion   string `json:"go_version"`
	OS          string `json:"os"`
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model,omitempty"`
	MemTotal    string `json:"mem_total,omitempty"`
	DataFS      string `json:"data_fs"`
	LoadStart   string `json:"loadavg_start,omitempty"`
	LoadEnd     string `json:"loadavg_end,omitempty"`
	SynodCommit string `json:"synod_commit,omitempty"`
}

// Report is the whole comparison, as written to JSON.
type Report struct {
	Started   time.Time      `json:"started"`
	Finished  time.Time      `json:"finished"`
	Quick     bool           `json:"quick"`
	Target    string         `json:"target"`
	Cluster   ClusterOptions `json:"cluster"`
	Host      HostInfo       `json:"host"`
	Workloads []Workload     `json:"workload_list"`
	Floor     *Floor         `json:"floor,omitempty"`
	Rounds    int            `json:"rounds"`
	// Systems holds each system's median over the rounds; Runs every
	// round's results, in the order they ran.
	Systems []*SystemResult `json:"systems"`
	Runs    []*SystemResult `json:"runs,omitempty"`
}

// system returns the named system's results, or nil.
func (r *Report) system(name string) *SystemResult {
	for _, s := range r.Systems {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// runCompare is the compare command.
func runCompare(ctx context.Context, cfg *compareConfig, out io.Writer) error {
	rep := &Report{Started: time.Now(), Quick: cfg.Quick, Target: cfg.Target, Cluster: cfg.Cluster, Workloads: cfg.workloads(), Rounds: cfg.Rounds}
	dataRoot := cfg.DataRoot
	if dataRoot == "" {
		dataRoot = os.TempDir()
	}
	if err := os.MkdirAll(dataRoot, 0o755); err != nil {
		return err
	}
	rep.Host = hostInfo(dataRoot)
	fmt.Fprintf(out, "host: %d CPUs (%s), %s, data on %s (%s), load average %s\n",
		rep.Host.CPUs, rep.Host.CPUModel, rep.Host.GoVersion, dataRoot, rep.Host.DataFS, rep.Host.LoadStart)
	if rep.Host.DataFS == "tmpfs" || rep.Host.DataFS == "ramfs" {
		fmt.Fprintf(out, "warning: %s is in memory: fsync costs nothing there; give -data-root on a disk\n", dataRoot)
	}
	if cfg.Quick {
		fmt.Fprintln(out, "quick mode: small totals, the numbers are a smoke test, not a measurement")
	}
	samples := floorSamples
	if cfg.Quick {
		samples /= 10
	}
	if f, err := measureFloor(dataRoot, samples); err != nil {
		fmt.Fprintf(out, "warning: no floor for the one-client put: %v\n", err)
	} else {
		rep.Floor = f
		fmt.Fprintf(out, "floor of a one-client put: %s (fdatasync with 2 writers: p50 %s, p99 %s; loopback round trip: p50 %s)\n",
			fmtDur(f.Estimate), fmtDur(f.Sync.P50), fmtDur(f.Sync.P99), fmtDur(f.RoundTrip.P50))
	}

	// Both systems use the same ports, one after the other: fail before
	// building anything if one is taken.
	for i := range cfg.Cluster.Size {
		for _, p := range []int{cfg.Cluster.BasePort + 10*i, cfg.Cluster.BasePort + 10*i + 1} {
			if err := checkPortFree(p); err != nil {
				return err
			}
		}
	}
	bins, err := buildBinaries(ctx, cfg, out)
	if err != nil {
		return err
	}
	for round := range cfg.Rounds {
		for _, name := range roundOrder(cfg.Systems, round) {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(out, "\n=== %s, round %d of %d (%s)\n", name, round+1, cfg.Rounds, bins[name])
			sr := runSystem(ctx, name, bins[name], dataRoot, cfg, out)
			sr.Round = round + 1
			if sr.Error != "" && ctx.Err() == nil {
				sr.Logs = saveLogs(sr, filepath.Join(cfg.OutDir, fmt.Sprintf("%s-logs-round%d", reportBase(rep), round+1)))
				fmt.Fprintf(out, "%s: FAILED: %s\n", name, sr.Error)
			}
			rep.Runs = append(rep.Runs, sr)
		}
	}
	mergeReport(rep, cfg.Systems)
	rep.Finished = time.Now()
	rep.Host.LoadEnd = loadAvg()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w (no report written)", err)
	}
	fmt.Fprintln(out)
	fmt.Fprint(out, renderReport(rep, false))
	files, err := writeReport(rep, cfg.OutDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nwrote %s\n", strings.Join(files, ", "))
	for _, s := range rep.Systems {
		if s.Error != "" {
			return fmt.Errorf("%s failed: see above", s.Name)
		}
	}
	return nil
}

// buildBinaries builds (or takes from flags) the server binaries.
func buildBinaries(ctx context.Context, cfg *compareConfig, out io.Writer) (map[string]string, error) {
	bins := map[string]string{}
	given := map[string]string{"etcd": cfg.EtcdBin, "synod": cfg.SynodBin}
	pkgs := map[string]string{"etcd": "go.etcd.io/etcd/server/v3", "synod": "github.com/synod-db/synod/cmd/synod"}
	var dir string
	for _, name := range cfg.Systems {
		if b := given[name]; b != "" {
			abs, err := filepath.Abs(b)
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(abs); err != nil {
				return nil, fmt.Errorf("-%s-bin: %w", name, err)
			}
			bins[name] = abs
			continue
		}
		if dir == "" {
			if err := checkModuleDir(ctx); err != nil {
				return nil, err
			}
			var err error
			if dir, err = filepath.Abs(filepath.Join("bin")); err != nil {
				return nil, err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
		}
		bin := filepath.Join(dir, name)
		fmt.Fprintf(out, "building %s: go build -o %s %s\n", name, bin, pkgs[name])
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkgs[name])
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("building %s: interrupted", name)
			}
			return nil, fmt.Errorf("building %s failed (%v):\n%s", name, err, buf.String())
		}
		fmt.Fprintf(out, "  built in %s\n", time.Since(start).Round(100*time.Millisecond))
		bins[name] = bin
	}
	return bins, nil
}

// checkModuleDir makes sure the go command runs in this module, where the
// etcd tool and the replace of synod are declared.
func checkModuleDir(ctx context.Context) error {
	b, err := exec.CommandContext(ctx, "go", "list", "-m").Output()
	if m := strings.TrimSpace(string(b)); err != nil || m != "github.com/synod-db/synod/bench/kv" {
		return fmt.Errorf("run compare from the bench/kv directory (go list -m says %q, %v), or give -etcd-bin and -synod-bin", m, err)
	}
	return nil
}

// buildFacts reads the versions that matter from a Go binary.
func buildFacts(bin string) map[string]string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	m := map[string]string{"go": bi.GoVersion, "main": bi.Main.Path + "@" + bi.Main.Version}
	for _, d := range bi.Deps {
		switch d.Path {
		case "google.golang.org/grpc", "go.etcd.io/etcd/server/v3", "go.etcd.io/bbolt", "go.etcd.io/raft/v3",
			"github.com/cockroachdb/pebble/v2", "go.etcd.io/etcd/api/v3", "github.com/synod-db/synod":
			v := d.Version
			if d.Replace != nil {
				v += " => " + d.Replace.Path
			}
			m[d.Path] = v
		}
	}
	return m
}

// runSystem starts a fresh cluster of one system, runs the workloads,
// measures, and removes the cluster. Failures are recorded in the result.
func runSystem(ctx context.Context, name, bin, dataRoot string, cfg *compareConfig, out io.Writer) *SystemResult {
	sr := &SystemResult{Name: name, Binary: bin, Build: buildFacts(bin)}
	dir, err := os.MkdirTemp(dataRoot, "kvbench-"+name+"-")
	if err != nil {
		sr.Error = err.Error()
		return sr
	}
	if cfg.KeepData {
		fmt.Fprintf(out, "data and logs kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	c, err := newCluster(name, bin, dir, cfg.Cluster)
	if err != nil {
		sr.Error = err.Error()
		return sr
	}
	for _, m := range c.Members {
		sr.logPaths = append(sr.logPaths, m.LogPath)
	}
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		sr.Error = "start: " + err.Error()
		return sr
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	fmt.Fprintf(out, "cluster of %d up in %s\n", len(c.Members), time.Since(start).Round(time.Millisecond))
	if err := runSystemWorkloads(ctx, c, cfg, sr, out); err != nil {
		sr.Error = err.Error()
	}
	// Resources are read even after a failure, from what still runs.
	for i, m := range c.Members {
		if i >= len(sr.Resources) {
			sr.Resources = append(sr.Resources, MemberResources{Name: m.Name, Leader: m.Name == sr.Leader})
		}
		if pid := m.pid(); pid > 0 && m.alive() == nil {
			sr.Resources[i].PeakRSSEnd, _ = peakRSS(pid)
		}
		sr.Resources[i].DataBytes = diskUsage(m.DataDir)
	}
	start = time.Now()
	killed := c.Stop()
	stopped = true
	fmt.Fprintf(out, "cluster stopped in %s", time.Since(start).Round(time.Millisecond))
	if len(killed) > 0 {
		fmt.Fprintf(out, " (%s did not exit within 10s of SIGTERM: killed)", strings.Join(killed, ", "))
	}
	fmt.Fprintln(out)
	return sr
}

func runSystemWorkloads(ctx context.Context, c *Cluster, cfg *compareConfig, sr *SystemResult, out io.Writer) error {
	endpoints := func() ([]string, error) {
		if err := c.checkAlive(); err != nil {
			return nil, err
		}
		li, err := c.Leader(ctx)
		if err != nil {
			return nil, err
		}
		sr.Leader = c.Members[li].Name
		if cfg.Target == "leader" {
			return []string{c.Members[li].ClientURL}, nil
		}
		var eps []string
		for _, m := range c.Members {
			eps = append(eps, m.ClientURL)
		}
		return eps, nil
	}
	progress := func(name string) progressFunc {
		return func(done, total int, el time.Duration) {
			fmt.Fprintf(out, "  ... %s: %d/%d in %s (%.0f/s)\n", name, done, total, el.Round(time.Second), float64(done)/el.Seconds())
		}
	}
	for _, w := range cfg.workloads() {
		eps, err := endpoints()
		if err != nil {
			return err
		}
		if w.Kind == kindWatchLatency {
			if eps, err = watchEndpoints(ctx, c, w.WatchOn); err != nil {
				return err
			}
		}
		if w.Kind == kindTxnMixed {
			// Fill the key space so that reads find values.
			fill := Workload{Name: w.Name + "-prefill", Kind: kindPut, Conns: min(10, w.KeySpaceSize), Clients: min(100, w.KeySpaceSize),
				Total: w.KeySpaceSize, KeySize: w.KeySize, ValSize: w.ValSize, SequentialKeys: true, KeySpaceSize: w.KeySpaceSize}
			if _, err := guardedRun(ctx, c, cfg, eps, fill, nil); err != nil {
				return err
			}
		}
		r, err := guardedRun(ctx, c, cfg, eps, w, progress(w.Name))
		if err != nil {
			return err
		}
		printResult(out, r)
		sr.Results = append(sr.Results, r)
		if err := c.checkAlive(); err != nil {
			return fmt.Errorf("after %s: %w", w.Name, err)
		}
		if err := sleepCtx(ctx, cfg.Pause); err != nil {
			return err
		}
	}
	for _, m := range c.Members {
		mr := MemberResources{Name: m.Name, Leader: m.Name == sr.Leader}
		mr.PeakRSSAfterWorkloads, _ = peakRSS(m.pid())
		sr.Resources = append(sr.Resources, mr)
	}
	if !cfg.has("recovery") {
		return nil
	}
	eps, err := endpoints()
	if err != nil {
		return err
	}
	rec, err := runRecovery(ctx, c, eps, cfg, progress, out)
	sr.Recovery = rec
	return err
}

// watchEndpoints returns the writer's endpoint (the leader) and the
// watcher's (the leader, or the member after it for a follower).
func watchEndpoints(ctx context.Context, c *Cluster, on string) ([]string, error) {
	li, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	wi := li
	if on == "follower" {
		if len(c.Members) < 2 {
			return nil, fmt.Errorf("watch-latency on a follower needs at least 2 members")
		}
		wi = (li + 1) % len(c.Members)
	}
	return []string{c.Members[li].ClientURL, c.Members[wi].ClientURL}, nil
}

// runRecovery writes cfg.RecKeys keys, kills one member with SIGKILL,
// restarts it and times how long it takes to answer a linearizable read
// through its own endpoint.
func runRecovery(ctx context.Context, c *Cluster, eps []string, cfg *compareConfig, progress func(string) progressFunc, out io.Writer) (*RecoveryResult, error) {
	fill := cfg.fillWorkload()
	rec := &RecoveryResult{Keys: cfg.RecKeys}
	r, err := guardedRun(ctx, c, cfg, eps, fill, progress(fill.Name))
	if err != nil {
		return rec, err
	}
	printResult(out, r)
	rec.Fill = r
	li, err := c.Leader(ctx)
	if err != nil {
		return rec, err
	}
	vi := li
	if cfg.RecVictim == "follower" {
		vi = (li + 1) % len(c.Members)
	}
	v := c.Members[vi]
	rec.Victim, rec.WasLeader = v.Name, vi == li
	if err := v.kill(); err != nil {
		return rec, err
	}
	rec.VictimData = diskUsage(v.DataDir)
	fmt.Fprintf(out, "recovery: killed %s (leader: %v, %d MiB of data) with SIGKILL; restarting\n", v.Name, rec.WasLeader, rec.VictimData>>20)
	start := time.Now()
	if err := v.start(c.Binary); err != nil {
		return rec, err
	}
	// The port opens first; the read is retried until it succeeds.
	host := strings.TrimPrefix(v.ClientURL, "http://")
	portCh := make(chan time.Duration, 1)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for pctx.Err() == nil {
			if conn, err := net.DialTimeout("tcp", host, 100*time.Millisecond); err == nil {
				conn.Close()
				portCh <- time.Since(start)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	if _, err := v.waitServing(ctx, cfg.RecWait); err != nil {
		return rec, fmt.Errorf("recovery: %w", err)
	}
	rec.Serving = time.Since(start)
	select {
	case rec.PortOpen = <-portCh:
	case <-time.After(time.Second):
		rec.PortOpen = rec.Serving
	}
	rec.RestartPeakRSS, _ = peakRSS(v.pid())
	fmt.Fprintf(out, "recovery: %s serves linearizable reads %s after restart (client port open after %s)\n",
		v.Name, fmtDur(rec.Serving), fmtDur(rec.PortOpen))
	return rec, nil
}

// guardedRun runs a workload, stopping it if a member exits (requests to
// a dead endpoint would otherwise wait for it forever) or if it runs past
// -workload-timeout.
func guardedRun(ctx context.Context, c *Cluster, cfg *compareConfig, eps []string, w Workload, progress progressFunc) (*Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tctx, tcancel := context.WithTimeoutCause(ctx, cfg.WorkloadWait, fmt.Errorf("still running after -workload-timeout %s", cfg.WorkloadWait))
	defer tcancel()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.checkAlive(); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	return runWorkload(tctx, eps, w, progress)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// hostInfo gathers what describes the machine.
func hostInfo(dataRoot string) HostInfo {
	h := HostInfo{GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(), DataFS: fsType(dataRoot), LoadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if v, err := parseStatusField(b, "MemTotal"); err == nil {
			h.MemTotal = fmt.Sprintf("%.1f GiB", float64(v)/(1<<30))
		}
	}
	if b, err := exec.Command("git", "-C", "../..", "describe", "--always", "--dirty").Output(); err == nil {
		h.SynodCommit = strings.TrimSpace(string(b))
	}
	return h
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

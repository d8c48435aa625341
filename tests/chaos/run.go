package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/synod-db/synod/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster is what a run needs of the cluster under test, whatever runs
// its members (goroutines, processes, containers).
type Cluster interface {
	Endpoints
	// Heal ends every fault still in force and starts every member that
	// is down, so that the cluster can converge.
	Heal(ctx context.Context) error
	// SaveLogs copies the members' logs into dir.
	SaveLogs(dir string) error
}

// GoroutineDumper is a Cluster that can record its members' goroutine
// stacks, which the evidence of a failed run then includes: a member
// that did not converge is often stuck somewhere.
type GoroutineDumper interface {
	// DumpGoroutines writes the stacks into dir or into the members' logs
	// (which are saved afterwards); it may stop the members.
	DumpGoroutines(dir string) error
}

// Config is one run's configuration.
type Config struct {
	// Name names the run in reports ("inprocess/3", "docker/5", ...).
	Name string
	// Seed drives every random choice of the run: the operations, the
	// faults and their victims and timing. Thread scheduling and the
	// network are not deterministic, so a replay takes the same choices
	// but not necessarily the same interleaving.
	Seed uint64
	// Duration is how long the workload runs; MaxOps bounds it too.
	Duration time.Duration
	MaxOps   int64
	// Clients is the number of concurrent clients; half of them talk to
	// one member each, the others to all members.
	Clients int
	// Keys is the number of keys (at most MaxKeys).
	Keys int
	Mix  Mix
	// ValueBytes, if set, pads every value written to this size, so that
	// the members move large values (a long-down member then has hundreds
	// of MB to catch up on) while the checks see the short values.
	ValueBytes int
	// OpTimeout bounds each operation; an operation that fails or times
	// out is recorded with an unknown outcome.
	OpTimeout time.Duration
	// Faults are what the nemesis picks from, one at a time: it waits a
	// random time in FaultGap, injects one, holds it for a random time in
	// FaultHold, heals it.
	Faults              []Fault
	FaultGap, FaultHold [2]time.Duration
	// Script names faults to inject first, in this order, before the
	// random ones (short runs use it to cover every kind of fault).
	Script []string
	// Watchers is the number of watch streams kept open during the run
	// (0: none). Watch checks are skipped if the cluster has no Watch.
	Watchers int
	// ConvergeTimeout bounds the wait for members to agree after the
	// faults end; CheckTimeout bounds porcupine.
	ConvergeTimeout, CheckTimeout time.Duration
	// ArtifactsDir is where a failed run's evidence is kept.
	ArtifactsDir string
	// Replay is the command line that replays this run, for the report.
	Replay string
	// Logf receives progress lines (nil: none).
	Logf func(format string, args ...any)
}

// Report is the outcome of a run.
type Report struct {
	Name string
	Seed uint64
	// Ops counts operations issued; Unknown those of unknown outcome;
	// FailedReads the reads that failed (left out of the history).
	Ops, Unknown, FailedReads int64
	// Checked is the number of operations porcupine checked.
	Checked  int
	Prepared Prepared
	Check    porcupine.CheckResult
	// Faults counts the faults injected; Timeline lists them.
	Faults   int
	Timeline []FaultEvent
	// Watch statistics: events received, streams resumed.
	WatchEvents, WatchResumes int
	WatchSkipped              string
	// Leases summarizes the lease operations, if any.
	Leases      string
	Rev0, Final int64
	Violations  []string
	// Dir is where the evidence of a failed run was written.
	Dir string
	// Diagnosis points at where porcupine got stuck.
	Diagnosis string
	Elapsed   time.Duration
	CheckTime time.Duration
}

// Summary is the one line a run prints.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos %s seed=%d: %d ops recorded (%d checked; %d indeterminate: %d pinned, %d open, %d dropped; %d failed reads), %d faults injected",
		r.Name, r.Seed, r.Ops, r.Checked, r.Unknown, r.Prepared.Pinned, r.Prepared.Open, r.Prepared.Dropped, r.FailedReads, r.Faults)
	if r.WatchSkipped != "" {
		fmt.Fprintf(&b, ", watch not checked (%s)", r.WatchSkipped)
	} else {
		fmt.Fprintf(&b, ", %d watch events (%d resumes)", r.WatchEvents, r.WatchResumes)
	}
	if r.Leases != "" {
		fmt.Fprintf(&b, ", leases: %s", r.Leases)
	}
	fmt.Fprintf(&b, ", revisions %d..%d, linearizability %s (%v), violations: %d, %v", r.Rev0, r.Final, r.Check, r.CheckTime.Round(time.Millisecond), len(r.Violations), r.Elapsed.Round(100*time.Millisecond))
	if r.Dir != "" {
		fmt.Fprintf(&b, " (evidence in %s)", r.Dir)
	}
	return b.String()
}

func (c *Config) defaults() {
	if c.Clients == 0 {
		c.Clients = 6
	}
	if c.Keys == 0 {
		c.Keys = 5
	}
	c.Keys = min(c.Keys, MaxKeys)
	if c.Mix == (Mix{}) {
		c.Mix = DefaultMix
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.MaxOps == 0 {
		c.MaxOps = 1 << 40
	}
	if c.ConvergeTimeout == 0 {
		c.ConvergeTimeout = time.Minute
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 2 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.ArtifactsDir == "" {
		c.ArtifactsDir = os.TempDir()
	}
}

// Run drives one run against a started cluster: workload, watchers and
// nemesis together for cfg.Duration, then heal, converge and check. It
// returns an error only when the run could not be carried out (the
// cluster never answered); what the checks find is in Report.Violations,
// and then the evidence is written to Report.Dir.
func Run(ctx context.Context, cl Cluster, cfg Config) (*Report, error) {
	cfg.defaults()
	began := time.Now()
	rep := &Report{Name: cfg.Name, Seed: cfg.Seed}
	ks := newKeyspace("/chaos/", cfg.Keys)
	ks.pad = cfg.ValueBytes
	ks.leaseBase = 1<<40 + int64(cfg.Seed%1_000_000)*16

	// The key space starts empty: read its revision.
	rec := NewRecorder()
	eps, _ := cl.Endpoints()
	first, err := retryRead(ctx, eps, ks, rec, cfg.ConvergeTimeout)
	if err != nil {
		return nil, fmt.Errorf("initial read: %w", err)
	}
	if len(first.Resp.Results[0].KVs) != 0 {
		return nil, fmt.Errorf("initial read: the run's keys already exist: %v", first.Resp.Results[0].KVs)
	}
	rep.Rev0 = first.Resp.Rev

	var final atomic.Int64
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	stopWatch := make(chan struct{})
	ws := startWatchers(wctx, cfg.Watchers, cfg.Seed, ks, cl, rep.Rev0, stopWatch, final.Load)

	// Workload and nemesis.
	var ops, unknown, failed atomic.Int64
	budget := &atomic.Int64{}
	budget.Store(cfg.MaxOps)
	lctx, lcancel := context.WithTimeout(ctx, cfg.Duration)
	defer lcancel()
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		w := &worker{
			id: i, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(100+i))), ks: ks, rec: rec, mix: cfg.Mix,
			timeout: cfg.OpTimeout, pinned: i%2 == 1, cl: cl, ops: &ops, unknown: &unknown, failedReads: &failed,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(lctx, budget)
		}()
	}
	nem := &nemesis{faults: cfg.Faults, script: cfg.Script, rng: rand.New(rand.NewPCG(cfg.Seed, 2)), gap: cfg.FaultGap, hold: cfg.FaultHold, rec: rec, logf: cfg.Logf}
	nctx, ncancel := context.WithCancel(ctx)
	nemDone := make(chan struct{})
	go func() {
		defer close(nemDone)
		nem.run(nctx)
	}()
	wg.Wait()
	ncancel()
	<-nemDone
	lcancel()
	rep.Ops, rep.Unknown, rep.FailedReads = ops.Load(), unknown.Load(), failed.Load()
	rep.Timeline = nem.events()
	for _, ev := range rep.Timeline {
		if ev.Err == "" || strings.HasPrefix(ev.Err, "heal:") {
			rep.Faults++
		}
	}

	// Heal, then one last linearizable read fixes the final state.
	hctx, hcancel := context.WithTimeout(ctx, cfg.ConvergeTimeout)
	err = cl.Heal(hctx)
	hcancel()
	if err != nil {
		rep.Violations = append(rep.Violations, fmt.Sprintf("heal: %v", err))
	}
	eps, _ = cl.Endpoints()
	last, err := retryRead(ctx, eps, ks, rec, cfg.ConvergeTimeout)
	if err != nil {
		wcancel()
		ws.wg.Wait()
		rep.Violations = append(rep.Violations, fmt.Sprintf("no linearizable read succeeded within %v after healing: %v", cfg.ConvergeTimeout, err))
		rep.Elapsed = time.Since(began)
		rep.finish(cl, cfg, rec.Records(), nil, nil, nil)
		return rep, nil
	}
	last.Client = cfg.Clients
	rec.Add(*last)
	rep.Final = last.Resp.Rev
	final.Store(rep.Final)

	// Every member converges on the same key space at the final revision,
	// and tells the same history. Each phase gets its own time, so that
	// one stuck member does not starve the checks of the others.
	rep.Violations = append(rep.Violations, checkConverged(ctx, eps, rep.Final, cfg.ConvergeTimeout)...)
	log, logViolations, logErr := readLogs(ctx, ks, eps, rep.Rev0, rep.Final, cfg.ConvergeTimeout)
	cctx, ccancel := context.WithTimeout(ctx, cfg.ConvergeTimeout)
	defer ccancel()
	rep.Violations = append(rep.Violations, logViolations...)
	close(stopWatch)
	wdone := make(chan struct{})
	go func() { ws.wg.Wait(); close(wdone) }()
	select {
	case <-wdone:
	case <-cctx.Done():
		wcancel()
		<-wdone
	}
	wcancel()
	switch {
	case errors.Is(logErr, errNoWatch):
		rep.WatchSkipped = "no Watch service"
	case logErr != nil:
		rep.WatchSkipped = logErr.Error()
		rep.Violations = append(rep.Violations, "reading the history: "+logErr.Error())
	case cfg.Watchers == 0:
		rep.WatchSkipped = "no watchers"
	}
	if rep.WatchSkipped == "" {
		for _, w := range ws.ws {
			if w.err != nil {
				continue
			}
			rep.WatchResumes += w.resumes
			for _, b := range w.batches {
				rep.WatchEvents += len(b.events)
			}
			rep.Violations = append(rep.Violations, checkWatch(w, log, rep.Final)...)
		}
	}

	rep.Violations = append(rep.Violations, checkElections(cl)...)

	recs := rec.Records()
	rep.Leases = leaseStats(recs)
	if log != nil {
		rep.Violations = append(rep.Violations, checkLog(recs, log)...)
	} else if logErr != nil {
		rep.Violations = append(rep.Violations, checkAckedByReads(cctx, eps, ks, recs)...)
	}

	// Linearizability.
	p := Prepare(slices.Clone(recs), rep.Rev0, rep.Final, log)
	rep.Prepared = p
	rep.Checked = len(p.Ops)
	model := Model(ks.short, rep.Rev0, rep.Final, p.Claimed)
	t0 := time.Now()
	rep.Check = porcupine.CheckOperationsTimeout(model, p.Ops, cfg.CheckTimeout)
	rep.CheckTime = time.Since(t0)
	var info *porcupine.LinearizationInfo
	if rep.Check != porcupine.Ok {
		if rep.Check == porcupine.Illegal {
			rep.Violations = append(rep.Violations, "the history is not linearizable (see history.html)")
		} else {
			rep.Violations = append(rep.Violations, fmt.Sprintf("porcupine could not decide within %v (see history.html)", cfg.CheckTimeout))
		}
		vt := cfg.CheckTimeout
		if rep.Check == porcupine.Unknown {
			vt = 10 * time.Second // only for the visualization
		}
		_, li := porcupine.CheckOperationsVerbose(model, p.Ops, vt)
		info = &li
		rep.Diagnosis = diagnose(model, p.Ops, li)
		if p.Gaps > 0 {
			rep.Diagnosis += fmt.Sprintf("%d revisions are explained by no known write, the first: %v\n", p.Gaps, p.GapRevs)
		}
	}
	rep.Elapsed = time.Since(began)
	rep.finish(cl, cfg, recs, log, info, &model)
	return rep, nil
}

// SavedRun is what a failed run keeps in run.json, enough to check it
// again (Recheck).
type SavedRun struct {
	Keys        int
	Rev0, Final int64
	Records     []Record
	Log         []Event
}

// Recheck runs the linearizability check of a saved run again and
// returns the result with a diagnosis.
func Recheck(path string, timeout time.Duration) (porcupine.CheckResult, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var sr SavedRun
	if err := json.Unmarshal(raw, &sr); err != nil {
		return "", "", err
	}
	ks := newKeyspace("", sr.Keys)
	p := Prepare(sr.Records, sr.Rev0, sr.Final, sr.Log)
	model := Model(ks.short, sr.Rev0, sr.Final, p.Claimed)
	res, info := porcupine.CheckOperationsVerbose(model, p.Ops, timeout)
	if res == porcupine.Ok {
		return res, "", nil
	}
	return res, diagnose(model, p.Ops, info), nil
}

// finish writes the evidence of a failed run.
func (r *Report) finish(cl Cluster, cfg Config, recs []Record, log []Event, info *porcupine.LinearizationInfo, model *porcupine.Model) {
	if len(r.Violations) == 0 {
		return
	}
	tier := strings.NewReplacer("/", "-", " ", "-").Replace(r.Name)
	dir, err := os.MkdirTemp(cfg.ArtifactsDir, fmt.Sprintf("synod-chaos-%s-seed%d-", tier, r.Seed))
	if err != nil {
		r.Violations = append(r.Violations, "cannot keep the evidence: "+err.Error())
		return
	}
	r.Dir = dir
	var b strings.Builder
	fmt.Fprintf(&b, "seed: %d\nrun: %s\nreplay: %s\n\n%s\n\nviolations:\n", r.Seed, r.Name, cfg.Replay, r.Summary())
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	if r.Diagnosis != "" {
		b.WriteString("\n" + r.Diagnosis + "\n")
	}
	b.WriteString("\nfaults:\n")
	for _, ev := range r.Timeline {
		fmt.Fprintf(&b, "  %s\n", ev)
	}
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(b.String()), 0o644)
	if raw, err := json.Marshal(SavedRun{Keys: cfg.Keys, Rev0: r.Rev0, Final: r.Final, Records: recs, Log: log}); err == nil {
		os.WriteFile(filepath.Join(dir, "run.json"), raw, 0o644)
	}
	var h strings.Builder
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Call < recs[j].Call })
	ks := newKeyspace("", cfg.Keys)
	for _, rc := range recs {
		resp := rc.Resp
		fmt.Fprintf(&h, "%12.6f %12.6f c%-2d %-8s %s", float64(rc.Call)/1e9, float64(rc.Return)/1e9, rc.Client, rc.Member, describe(ks.short, &rc.Req, &resp))
		if rc.Err != "" {
			fmt.Fprintf(&h, "  (%s)", rc.Err)
		}
		h.WriteByte('\n')
	}
	os.WriteFile(filepath.Join(dir, "history.txt"), []byte(h.String()), 0o644)
	if log != nil {
		var lb strings.Builder
		for _, e := range log {
			if e.Delete {
				fmt.Fprintf(&lb, "%d delete %s\n", e.Rev, name(ks.short, e.Key))
			} else {
				fmt.Fprintf(&lb, "%d put %s=%q create %d version %d\n", e.Rev, name(ks.short, e.Key), e.Value, e.Create, e.Ver)
			}
		}
		os.WriteFile(filepath.Join(dir, "keyspace-history.txt"), []byte(lb.String()), 0o644)
	}
	if info != nil && model != nil {
		var ann []porcupine.Annotation
		for _, ev := range r.Timeline {
			ann = append(ann, porcupine.Annotation{Tag: "faults", Start: ev.Start, End: ev.End, Description: ev.Name, Details: ev.Desc + " " + ev.Err, BackgroundColor: "#f4c7c3"})
		}
		info.AddAnnotations(ann)
		if err := porcupine.VisualizePath(*model, *info, filepath.Join(dir, "history.html")); err != nil {
			r.Violations = append(r.Violations, "visualization: "+err.Error())
		}
	}
	if d, ok := cl.(GoroutineDumper); ok {
		if err := d.DumpGoroutines(dir); err != nil {
			r.Violations = append(r.Violations, "dumping goroutines: "+err.Error())
		}
	}
	if err := cl.SaveLogs(filepath.Join(dir, "logs")); err != nil {
		r.Violations = append(r.Violations, "saving member logs: "+err.Error())
	}
}

// retryRead reads the run's keys linearizably until it succeeds.
func retryRead(ctx context.Context, eps []string, ks *keyspace, rec *Recorder, timeout time.Duration) (*Record, error) {
	cli, err := framework.ClientFor(eps)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	req := Request{Then: []Op{{Kind: OpRange}}}
	for {
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		call := rec.Now()
		resp, member, err := execute(octx, cli, ks, &req, false)
		ret := rec.Now()
		cancel()
		if err == nil {
			return &Record{Req: req, Resp: resp, Call: call, Return: ret, Member: member}, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		framework.Sleep(ctx, 100*time.Millisecond)
	}
}

// checkConverged waits (each member at most timeout, all at once) until
// every member answers HashKV at rev, and compares the hashes.
func checkConverged(ctx context.Context, eps []string, rev int64, timeout time.Duration) []string {
	cli, err := framework.ClientFor(eps)
	if err != nil {
		return []string{err.Error()}
	}
	defer cli.Close()
	hashes := make([]uint32, len(eps))
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			for {
				resp, err := cli.HashKV(mctx, ep, rev)
				if err == nil {
					hashes[i] = resp.Hash
					return
				}
				if mctx.Err() != nil {
					errs[i] = err
					return
				}
				framework.Sleep(mctx, 100*time.Millisecond)
			}
		}()
	}
	wg.Wait()
	var bad []string
	ref := -1
	for i, ep := range eps {
		switch {
		case errs[i] != nil:
			bad = append(bad, fmt.Sprintf("member %s did not reach revision %d within %v after the faults ended: %v", ep, rev, timeout, errs[i]))
		case ref < 0:
			ref = i
		case hashes[i] != hashes[ref]:
			bad = append(bad, fmt.Sprintf("members disagree at revision %d: HashKV %s=%08x, %s=%08x", rev, eps[ref], hashes[ref], ep, hashes[i]))
		}
	}
	return bad
}

// readLogs reads the history (rev0, final] from every member (each at
// most timeout) and checks that they tell the same one, with every
// revision present. It returns the history of the first member that
// told it; an error only if none did.
func readLogs(ctx context.Context, ks *keyspace, eps []string, rev0, final int64, timeout time.Duration) ([]Event, []string, error) {
	var first []Event
	firstEP := ""
	var bad []string
	var lastErr error
	for _, ep := range eps {
		mctx, cancel := context.WithTimeout(ctx, timeout)
		log, err := readLog(mctx, ks, ep, rev0, final)
		cancel()
		if errors.Is(err, errNoWatch) {
			return nil, nil, err
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("member %s did not tell the history up to revision %d: %v", ep, final, err))
			lastErr = err
			continue
		}
		if log == nil {
			log = []Event{}
		}
		if first == nil {
			first, firstEP = log, ep
			next := rev0 + 1
			for _, e := range log {
				if e.Rev != next && e.Rev != next-1 {
					bad = append(bad, fmt.Sprintf("the history of %s skips from revision %d to %d", ep, next-1, e.Rev))
					break
				}
				if e.Key < 0 {
					bad = append(bad, fmt.Sprintf("revision %d wrote a key outside the run", e.Rev))
				}
				next = e.Rev + 1
			}
			if next != final+1 && final > rev0 {
				bad = append(bad, fmt.Sprintf("the history of %s ends at %d, not %d", ep, next-1, final))
			}
			continue
		}
		if !sameEvents(first, log) {
			k := 0
			for k < len(first) && k < len(log) && first[k] == log[k] {
				k++
			}
			bad = append(bad, fmt.Sprintf("members %s and %s tell different histories, first difference at event %d (%v vs %v)", firstEP, ep, k, at(first, k), at(log, k)))
		}
	}
	if first == nil {
		return nil, bad, fmt.Errorf("no member told the history: %w", lastErr)
	}
	return first, bad, nil
}

func at(evs []Event, i int) any {
	if i < len(evs) {
		return evs[i]
	}
	return "end"
}

// checkLog checks that every acknowledged write is in the history, at
// its revision, as written: none was lost or altered on any member (the
// members' histories were compared with each other already).
func checkLog(recs []Record, log []Event) []string {
	byRev := map[int64][]Event{}
	for _, e := range log {
		byRev[e.Rev] = append(byRev[e.Rev], e)
	}
	var bad []string
	// Every value is written by one request: it appears at most once, and
	// only if some client wrote it.
	issued := map[string]bool{}
	for _, r := range recs {
		for _, ops := range [][]Op{r.Req.Then, r.Req.Else} {
			for _, op := range ops {
				if op.Kind == OpPut {
					issued[op.Value] = true
				}
			}
		}
	}
	seenAt := map[string]int64{}
	for _, e := range log {
		if e.Delete {
			continue
		}
		if first, ok := seenAt[e.Value]; ok && len(bad) < 20 {
			bad = append(bad, fmt.Sprintf("the value %q was written twice, at revisions %d and %d: a request was applied twice", e.Value, first, e.Rev))
		}
		seenAt[e.Value] = e.Rev
		if !issued[e.Value] && len(bad) < 20 {
			bad = append(bad, fmt.Sprintf("revision %d wrote the value %q, which no client wrote", e.Rev, e.Value))
		}
	}
	for _, r := range recs {
		if r.Resp.Unknown || !r.Req.Writes() || !wroteAt(&r.Req, &r.Resp) {
			continue
		}
		ops := r.Req.Then
		if !r.Resp.Succeeded {
			ops = r.Req.Else
		}
		got := byRev[r.Resp.Rev]
		var want []Event
		deletes := 0
		for i, op := range ops {
			switch op.Kind {
			case OpPut:
				want = append(want, Event{Rev: r.Resp.Rev, Key: op.Key, Value: op.Value})
			case OpDelete, OpDeleteRange:
				if i < len(r.Resp.Results) {
					deletes += int(r.Resp.Results[i].Deleted)
				}
			}
		}
		ok := len(got) == len(want)+deletes
		for _, w := range want {
			found := false
			for _, g := range got {
				if !g.Delete && g.Key == w.Key && g.Value == w.Value {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok && len(bad) < 20 {
			bad = append(bad, fmt.Sprintf("acknowledged write lost or altered: %s at revision %d; the history has %v there",
				describe(nil, &r.Req, &r.Resp), r.Resp.Rev, got))
		}
	}
	return bad
}

// checkAckedByReads is the check of checkLog for a cluster without
// Watch: it reads every acknowledged put back at its revision from every
// member (serializable reads of the past).
func checkAckedByReads(ctx context.Context, eps []string, ks *keyspace, recs []Record) []string {
	var bad []string
	for _, ep := range eps {
		cli, err := framework.ClientFor([]string{ep})
		if err != nil {
			return append(bad, err.Error())
		}
		for _, r := range recs {
			if r.Resp.Unknown || !wroteAt(&r.Req, &r.Resp) {
				continue
			}
			ops := r.Req.Then
			if !r.Resp.Succeeded {
				ops = r.Req.Else
			}
			for _, op := range ops {
				if op.Kind != OpPut {
					continue
				}
				resp, err := cli.Get(ctx, ks.keys[op.Key], clientv3.WithRev(r.Resp.Rev), clientv3.WithSerializable())
				if err != nil {
					bad = append(bad, fmt.Sprintf("read back %s at %d on %s: %v", ks.keys[op.Key], r.Resp.Rev, ep, err))
					break
				}
				if len(resp.Kvs) != 1 || ks.unwire(resp.Kvs[0].Value) != op.Value || resp.Kvs[0].ModRevision != r.Resp.Rev {
					bad = append(bad, fmt.Sprintf("member %s lost the acknowledged put %s=%q at revision %d (reads %v)", ep, ks.keys[op.Key], op.Value, r.Resp.Rev, resp.Kvs))
				}
			}
			if len(bad) > 20 {
				break
			}
		}
		cli.Close()
	}
	return bad
}

// diagnose explains a failed check: the longest prefix porcupine could
// linearize, the state it reached, and the first operation (by return
// time) it could not fit after it, with the operations around that one.
func diagnose(model porcupine.Model, ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	parts := info.PartialLinearizations()
	if len(parts) == 0 {
		return ""
	}
	var longest []int
	for _, lin := range parts[0] {
		if len(lin) > len(longest) {
			longest = lin
		}
	}
	in := make([]bool, len(ops))
	state := model.Init()
	for _, i := range longest {
		in[i] = true
		_, state = model.Step(state, ops[i].Input, ops[i].Output)
	}
	stuck := -1
	for i := range ops {
		if !in[i] && (stuck < 0 || ops[i].Return < ops[stuck].Return) {
			stuck = i
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "diagnosis: porcupine linearized at most %d of %d operations; after them the state is:\n  %s\n", len(longest), len(ops), model.DescribeState(state))
	if stuck < 0 {
		return b.String()
	}
	op := ops[stuck]
	fmt.Fprintf(&b, "the first operation that cannot follow (client %d, %.6fs - %.6fs, %v):\n  %s\n", op.ClientId, float64(op.Call)/1e9, float64(op.Return)/1e9, op.Metadata, model.DescribeOperation(op.Input, op.Output))
	b.WriteString("operations overlapping it or just before it:\n")
	for i, o := range ops {
		if i != stuck && o.Return >= op.Call-int64(50*time.Millisecond) && o.Call <= op.Return {
			mark := " "
			if in[i] {
				mark = "*"
			}
			fmt.Fprintf(&b, " %s c%-2d %.6fs - %.6fs %s\n", mark, o.ClientId, float64(o.Call)/1e9, float64(o.Return)/1e9, model.DescribeOperation(o.Input, o.Output))
		}
	}
	b.WriteString("(* = in the linearized prefix)\n")
	return b.String()
}

// leaseStats counts the lease operations of a history by outcome.
func leaseStats(recs []Record) string {
	var grant, grantExists, revoke, revokeMissing, put, putMissing, unknown int
	for _, r := range recs {
		if r.Req.Txn || len(r.Req.Then) != 1 {
			continue
		}
		op := r.Req.Then[0]
		if op.Kind < OpLeaseGrant && (op.Kind != OpPut || op.Lease == 0) {
			continue
		}
		switch {
		case r.Resp.Unknown:
			unknown++
		case op.Kind == OpLeaseGrant && r.Resp.Err == "":
			grant++
		case op.Kind == OpLeaseGrant:
			grantExists++
		case op.Kind == OpLeaseRevoke && r.Resp.Err == "":
			revoke++
		case op.Kind == OpLeaseRevoke:
			revokeMissing++
		case r.Resp.Err == "":
			put++
		default:
			putMissing++
		}
	}
	if grant+grantExists+revoke+revokeMissing+put+putMissing+unknown == 0 {
		return ""
	}
	return fmt.Sprintf("%d granted (%d already existed), %d revoked (%d not found), %d puts with a lease (%d not found), %d unknown",
		grant, grantExists, revoke, revokeMissing, put, putMissing, unknown)
}

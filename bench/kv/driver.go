package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Workload kinds.
const (
	kindPut      = "put"
	kindRange    = "range"
	kindTxnMixed = "txn-mixed"
	// kindKeepAlive: each client holds a lease granted before the clock
	// starts and renews it once per request (clientv3's KeepAliveOnce: a
	// new keep-alive stream per request, as etcd's benchmark
	// lease-keepalive does).
	kindKeepAlive = "lease-keepalive"
)

// maxKeySpace bounds the preallocated key table (keys are kept in one
// string of keySpace*keySize bytes).
const maxKeySpace = 50_000_000

// Workload describes one load run. The same Workload gives the same
// sequence of requests against any server.
type Workload struct {
	Name           string  `json:"name"`
	Kind           string  `json:"kind"` // put, range or txn-mixed
	Conns          int     `json:"conns"`
	Clients        int     `json:"clients"`
	Total          int     `json:"total"`
	KeySize        int     `json:"key_size"`
	ValSize        int     `json:"val_size"`
	SequentialKeys bool    `json:"sequential_keys"`
	KeySpaceSize   int     `json:"key_space_size"`
	Consistency    string  `json:"consistency,omitempty"` // range and txn-mixed reads: l or s
	RWRatio        float64 `json:"rw_ratio,omitempty"`    // txn-mixed: reads per write
	RangeKey       string  `json:"range_key,omitempty"`   // range: the key read
	WatchOn        string  `json:"watch_on,omitempty"`    // watch-latency: the watcher's member, leader or follower
}

// validate checks the workload's parameters.
func (w *Workload) validate() error {
	switch w.Kind {
	case kindPut, kindRange, kindTxnMixed, kindKeepAlive:
	case kindWatchLatency:
		if w.Total < 1 || w.ValSize < 0 {
			return fmt.Errorf("%s: the number of puts must be at least 1 and the value size at least 0", w.Name)
		}
		if w.WatchOn != "leader" && w.WatchOn != "follower" {
			return fmt.Errorf("%s: the watcher must be on the leader or a follower, not %q", w.Name, w.WatchOn)
		}
		return nil
	default:
		return fmt.Errorf("unknown workload kind %q (want put, range, txn-mixed or watch-latency)", w.Kind)
	}
	if w.Conns < 1 || w.Clients < 1 || w.Total < 1 {
		return fmt.Errorf("%s: --conns, --clients and --total must be at least 1 (have %d, %d, %d)", w.Name, w.Conns, w.Clients, w.Total)
	}
	if w.Conns > w.Clients {
		return fmt.Errorf("%s: --conns (%d) is more than --clients (%d): some connections would stay idle", w.Name, w.Conns, w.Clients)
	}
	if w.KeySize < 1 || w.ValSize < 0 {
		return fmt.Errorf("%s: --key-size must be at least 1 and --val-size at least 0", w.Name)
	}
	if w.Consistency != "" && w.Consistency != "l" && w.Consistency != "s" {
		return fmt.Errorf("%s: --consistency %q: want l (linearizable) or s (serializable)", w.Name, w.Consistency)
	}
	if w.Kind == kindKeepAlive {
		return nil
	}
	if w.Kind == kindRange {
		if w.RangeKey == "" {
			return fmt.Errorf("%s: range needs a key", w.Name)
		}
		return nil
	}
	if w.KeySpaceSize < 1 || w.KeySpaceSize > maxKeySpace {
		return fmt.Errorf("%s: --key-space-size %d out of range [1, %d]", w.Name, w.KeySpaceSize, maxKeySpace)
	}
	if digits := len(strconv.Itoa(w.KeySpaceSize - 1)); digits > w.KeySize {
		return fmt.Errorf("%s: --key-size %d is too small for --key-space-size %d (keys are %d-digit numbers)", w.Name, w.KeySize, w.KeySpaceSize, digits)
	}
	if w.Kind == kindTxnMixed && (w.RWRatio < 0 || w.RWRatio != w.RWRatio) {
		return fmt.Errorf("%s: --rw-ratio must be >= 0", w.Name)
	}
	return nil
}

// describe prints the workload's parameters on one line.
func (w *Workload) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s --conns=%d --clients=%d --total=%d", w.Kind, w.Conns, w.Clients, w.Total)
	switch w.Kind {
	case kindRange:
		fmt.Fprintf(&b, " --consistency=%s key=%q", w.Consistency, w.RangeKey)
	case kindKeepAlive:
		b.WriteString(", one lease per client, renewed once per request")
	case kindWatchLatency:
		fmt.Fprintf(&b, " --val-size=%d, one put at a time on the leader, watched on the %s", w.ValSize, w.WatchOn)
	default:
		fmt.Fprintf(&b, " --key-size=%d --val-size=%d --key-space-size=%d", w.KeySize, w.ValSize, w.KeySpaceSize)
		if w.SequentialKeys {
			b.WriteString(" --sequential-keys")
		}
		if w.Kind == kindTxnMixed {
			fmt.Fprintf(&b, " --rw-ratio=%g --consistency=%s", w.RWRatio, w.Consistency)
		}
	}
	return b.String()
}

// Result is the outcome of one workload run.
type Result struct {
	Workload Workload `json:"workload"`
	Target   []string `json:"endpoints"`
	Stats    Stats    `json:"stats"`
	// The load driver's own cost, to show it is not what limits the run:
	// CPU time of this process and heap allocations per request.
	ClientCPU       time.Duration  `json:"client_cpu_ns"`
	ClientAllocsReq float64        `json:"client_allocs_per_request"`
	Reads           *Stats         `json:"reads,omitempty"`  // txn-mixed only
	Writes          *Stats         `json:"writes,omitempty"` // txn-mixed only
	ErrorLog        map[string]int `json:"error_samples,omitempty"`
}

// keyTable holds every key of a key space in one string: key i is the
// fixed-width decimal i, zero-padded to the key size. Taking a key is a
// substring, so it allocates nothing.
type keyTable struct {
	buf  string
	size int
}

func newKeyTable(n, size int) keyTable {
	b := make([]byte, n*size)
	for i := range n {
		k := b[i*size : (i+1)*size]
		v := i
		for j := size - 1; j >= 0; j-- {
			k[j] = byte('0' + v%10)
			v /= 10
		}
	}
	return keyTable{buf: string(b), size: size}
}

func (t keyTable) key(i int) string { return t.buf[i*t.size : (i+1)*t.size] }

// valuePool hands out values of a fixed size that differ from request to
// request: windows of a large block of random bytes. Random bytes do not
// compress, and distinct values keep a storage engine that compresses
// blocks (pebble) from collapsing a run of equal values, so both systems
// store the same number of bytes.
type valuePool struct {
	buf  string
	size int
	span int
}

const valuePoolSpan = 1 << 20

func newValuePool(size int, seed uint64) valuePool {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, valuePoolSpan+size)
	for i := 0; i < len(b); i += 8 {
		x := r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return valuePool{buf: string(b), size: size, span: valuePoolSpan}
}

// value returns the value for request n.
func (p valuePool) value(n int) string {
	off := int((uint64(n) * 0x9E3779B97F4A7C15 >> 20) % uint64(p.span))
	return p.buf[off : off+p.size]
}

// newClients opens n clients, one gRPC connection each, spread over the
// endpoints round-robin, and makes one request on each so connections are
// set up before the clock starts.
func newClients(ctx context.Context, endpoints []string, n int) ([]*clientv3.Client, error) {
	clients := make([]*clientv3.Client, 0, n)
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for i := range n {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{endpoints[i%len(endpoints)]},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("connect to %s: %w", endpoints[i%len(endpoints)], err)
		}
		clients = append(clients, c)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range clients {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := c.Get(wctx, "bench-warmup", clientv3.WithSerializable()); err != nil {
				errs[i] = fmt.Errorf("first request to %s: %w", c.Endpoints()[0], err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, err
	}
	return clients, nil
}

// errorLog counts errors by message, keeping a bounded number of
// distinct messages.
type errorLog struct {
	mu sync.Mutex
	m  map[string]int
}

func (l *errorLog) add(err error) {
	msg := err.Error()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]int{}
	}
	if _, ok := l.m[msg]; !ok && len(l.m) >= 20 {
		msg = "(other errors)"
	}
	l.m[msg]++
}

// Progress, if not nil, receives a line every few seconds while a long
// workload runs.
type progressFunc func(done, total int, elapsed time.Duration)

// runWorkload runs w against endpoints and returns its statistics. It
// returns an error only if the run could not be made (bad workload, no
// connection); failed requests are counted in the result.
func runWorkload(ctx context.Context, endpoints []string, w Workload, progress progressFunc) (*Result, error) {
	if err := w.validate(); err != nil {
		return nil, err
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("%s: no endpoints", w.Name)
	}
	if w.Kind == kindWatchLatency {
		if len(endpoints) != 2 {
			return nil, fmt.Errorf("%s: want the writer's and the watcher's endpoints, have %d", w.Name, len(endpoints))
		}
		return runWatchLatency(ctx, endpoints[0], endpoints[1], w)
	}
	// Everything a request needs is made before the clock starts.
	var keys keyTable
	if w.Kind != kindRange && w.Kind != kindKeepAlive {
		keys = newKeyTable(w.KeySpaceSize, w.KeySize)
	}
	vals := newValuePool(w.ValSize, 1)
	lat := make([]time.Duration, w.Total)
	var isWrite []bool
	if w.Kind == kindTxnMixed {
		isWrite = make([]bool, w.Total)
	}
	clients, err := newClients(ctx, endpoints, w.Conns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.Name, err)
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	if w.Kind == kindRange {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := clients[0].Put(pctx, w.RangeKey, vals.value(0))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: put the key to read: %w", w.Name, err)
		}
	}

	var leases []clientv3.LeaseID
	if w.Kind == kindKeepAlive {
		if leases, err = grantLeases(ctx, clients, w.Clients); err != nil {
			return nil, fmt.Errorf("%s: %w", w.Name, err)
		}
	}

	var (
		next atomic.Int64
		done atomic.Int64
		errs errorLog
		wg   sync.WaitGroup
	)
	var readOpts []clientv3.OpOption
	if w.Consistency == "s" {
		readOpts = []clientv3.OpOption{clientv3.WithSerializable()}
	}
	// In txn-mixed, request n is a write when its place in a cycle of
	// 1+RWRatio requests falls on the write's share: with ratio r, one
	// write for every r reads, spread evenly.
	writeShare := 1.0
	if w.Kind == kindTxnMixed {
		writeShare = 1 / (1 + w.RWRatio)
	}
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := processCPU()
	start := time.Now()
	for g := range w.Clients {
		cli := clients[g%len(clients)]
		kv := cli.KV
		rng := rand.New(rand.NewPCG(uint64(g)+1, 0xbe1c4))
		wg.Go(func() {
			for ctx.Err() == nil {
				n := int(next.Add(1) - 1)
				if n >= w.Total {
					return
				}
				var err error
				var t0 time.Time
				switch w.Kind {
				case kindPut:
					k := pickKey(n, w, rng)
					t0 = time.Now()
					_, err = kv.Put(ctx, keys.key(k), vals.value(n))
				case kindRange:
					t0 = time.Now()
					_, err = kv.Get(ctx, w.RangeKey, readOpts...)
				case kindKeepAlive:
					t0 = time.Now()
					_, err = cli.KeepAliveOnce(ctx, leases[g])
				case kindTxnMixed:
					k := pickKey(n, w, rng)
					write := isWriteSlot(n, writeShare)
					isWrite[n] = write
					t0 = time.Now()
					if write {
						_, err = kv.Txn(ctx).Then(clientv3.OpPut(keys.key(k), vals.value(n))).Commit()
					} else {
						_, err = kv.Get(ctx, keys.key(k), readOpts...)
					}
				}
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					d = failed
					errs.add(err)
				}
				lat[n] = d
				done.Add(1)
			}
		})
	}
	stopProgress := make(chan struct{})
	if progress != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					progress(int(done.Load()), w.Total, time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	close(stopProgress)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: stopped: %w", w.Name, context.Cause(ctx))
	}

	res := &Result{Workload: w, Target: endpoints, ErrorLog: errs.m, ClientCPU: cpu,
		ClientAllocsReq: float64(ms1.Mallocs-ms0.Mallocs) / float64(w.Total)}
	if w.Kind == kindTxnMixed {
		var rl, wl []time.Duration
		for n, d := range lat {
			if isWrite[n] {
				wl = append(wl, d)
			} else {
				rl = append(rl, d)
			}
		}
		rs, ws := summarize(rl, elapsed), summarize(wl, elapsed)
		res.Reads, res.Writes = &rs, &ws
	}
	res.Stats = summarize(lat, elapsed)
	return res, nil
}

// grantLeases grants one lease per client (client g uses connection
// g mod len(clients)), long enough to outlive the run.
func grantLeases(ctx context.Context, clients []*clientv3.Client, n int) ([]clientv3.LeaseID, error) {
	leases := make([]clientv3.LeaseID, n)
	for g := range leases {
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := clients[g%len(clients)].Grant(gctx, 3600)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("grant the lease of client %d: %w", g, err)
		}
		leases[g] = resp.ID
	}
	return leases, nil
}

// pickKey chooses the key index of request n.
func pickKey(n int, w Workload, rng *rand.Rand) int {
	if w.SequentialKeys {
		return n % w.KeySpaceSize
	}
	return rng.IntN(w.KeySpaceSize)
}

// isWriteSlot reports whether request n is a write when writes are the
// given share of all requests.
func isWriteSlot(n int, share float64) bool {
	if share >= 1 {
		return true
	}
	return int(float64(n+1)*share) > int(float64(n)*share)
}

// printResult writes the summary of one run.
func printResult(out io.Writer, r *Result) {
	fmt.Fprintf(out, "%s: %s -> %s\n", r.Workload.Name, r.Workload.describe(), strings.Join(r.Target, ","))
	fmt.Fprint(out, r.Stats.String())
	fmt.Fprintf(out, "  load driver: %.2fs CPU (%.0f%% of one core), %.0f allocations per request\n",
		r.ClientCPU.Seconds(), 100*r.ClientCPU.Seconds()/max(r.Stats.Elapsed.Seconds(), 1e-9), r.ClientAllocsReq)
	if r.Reads != nil {
		fmt.Fprintf(out, "  reads:  %d, avg %s, p99 %s;  writes: %d, avg %s, p99 %s\n",
			r.Reads.Requests, fmtDur(r.Reads.Mean), fmtDur(r.Reads.P99), r.Writes.Requests, fmtDur(r.Writes.Mean), fmtDur(r.Writes.P99))
	}
	if len(r.ErrorLog) > 0 {
		msgs := make([]string, 0, len(r.ErrorLog))
		for m := range r.ErrorLog {
			msgs = append(msgs, m)
		}
		sort.Strings(msgs)
		for _, m := range msgs {
			fmt.Fprintf(out, "  error x%d: %s\n", r.ErrorLog[m], m)
		}
	}
}

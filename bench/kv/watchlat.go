package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// kindWatchLatency measures how long a change takes to reach a watcher:
// one writer puts a key, one put at a time, and a watcher of the key
// (on the leader or on a follower) timestamps each event; a request's
// latency is from just before its put is sent to its event's arrival,
// as etcd's benchmark watch-latency measures it. Both clients run in
// this process, so the clocks are the same.
const kindWatchLatency = "watch-latency"

// watchLatencyKey is the key written and watched.
const watchLatencyKey = "bench-watch-latency"

// eventTimeout bounds the wait for one event: longer means the watch
// lost it, which is a failure of the system, not slowness.
const eventTimeout = 10 * time.Second

// runWatchLatency runs a watch-latency workload: puts through the
// writer endpoint, watched through the watcher endpoint.
func runWatchLatency(ctx context.Context, writerEP, watcherEP string, w Workload) (*Result, error) {
	open := func(ep string) (*clientv3.Client, error) {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, fmt.Errorf("%s: connect to %s: %w", w.Name, ep, err)
		}
		return c, nil
	}
	writer, err := open(writerEP)
	if err != nil {
		return nil, err
	}
	defer writer.Close()
	watcher, err := open(watcherEP)
	if err != nil {
		return nil, err
	}
	defer watcher.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := watcher.Watch(wctx, watchLatencyKey, clientv3.WithCreatedNotify())
	select {
	case resp, ok := <-wch:
		if !ok || !resp.Created {
			return nil, fmt.Errorf("%s: the watch on %s was not created: %v", w.Name, watcherEP, resp.Err())
		}
	case <-time.After(eventTimeout):
		return nil, fmt.Errorf("%s: the watch on %s was not created within %s", w.Name, watcherEP, eventTimeout)
	}
	arrived := make(chan time.Time, w.Total)
	go func() {
		for resp := range wch {
			now := time.Now()
			for range resp.Events {
				select {
				case arrived <- now:
				default: // more events than puts: the check below reports it
				}
			}
		}
	}()
	vals := newValuePool(w.ValSize, 1)
	lat := make([]time.Duration, w.Total)
	var errs errorLog
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := processCPU()
	start := time.Now()
	for n := range w.Total {
		t0 := time.Now()
		if _, err := writer.Put(ctx, watchLatencyKey, vals.value(n)); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: stopped: %w", w.Name, context.Cause(ctx))
			}
			// A put that failed may still have been applied: its event
			// would then be taken for the next put's. Stop instead.
			return nil, fmt.Errorf("%s: put %d failed (%w): stopping, as its event may or may not come", w.Name, n, err)
		}
		select {
		case at := <-arrived:
			lat[n] = at.Sub(t0)
		case <-time.After(eventTimeout):
			return nil, fmt.Errorf("%s: no event for put %d within %s on %s", w.Name, n, eventTimeout, watcherEP)
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: stopped: %w", w.Name, context.Cause(ctx))
		}
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	if len(arrived) > 0 {
		errs.add(fmt.Errorf("%d events more than puts", len(arrived)))
	}
	return &Result{Workload: w, Target: []string{writerEP, watcherEP}, ErrorLog: errs.m, ClientCPU: cpu,
		ClientAllocsReq: float64(ms1.Mallocs-ms0.Mallocs) / float64(w.Total), Stats: summarize(lat, elapsed)}, nil
}

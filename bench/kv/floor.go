package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Floor is the least a one-client put can take on this machine with the
// durability both systems promise: the client's request reaches the
// leader, which sends the entry to a follower while it writes and syncs
// it itself; the follower syncs it and answers; the leader answers the
// client. Two syncs run at once on the same disk, and two loopback round
// trips are in the path. No implementation can beat it, so the one-client
// put rows are best read against it.
type Floor struct {
	// Sync is one 4 KiB write and fdatasync into a preallocated file
	// (what a WAL with preallocated segments does), while another writer
	// does the same on the same disk, as the leader and a follower do.
	Sync Stats `json:"sync"`
	// RoundTrip is a 64-byte request and answer over loopback TCP.
	RoundTrip Stats `json:"round_trip"`
	// Estimate is Sync's median plus two RoundTrip medians.
	Estimate time.Duration `json:"estimate_ns"`
}

// floorSamples is how many syncs each writer and how many round trips
// measureFloor times (quick runs take a tenth).
const floorSamples = 500

// measureFloor times syncs in dir and loopback round trips.
func measureFloor(dir string, samples int) (*Floor, error) {
	syncs, err := parallelSyncs(dir, samples)
	if err != nil {
		return nil, fmt.Errorf("measure fdatasync in %s: %w", dir, err)
	}
	rtts, err := roundTrips(samples * 4)
	if err != nil {
		return nil, fmt.Errorf("measure loopback round trips: %w", err)
	}
	f := &Floor{Sync: summarize(syncs, 0), RoundTrip: summarize(rtts, 0)}
	f.Estimate = f.Sync.P50 + 2*f.RoundTrip.P50
	return f, nil
}

// parallelSyncs runs two writers, each appending 4 KiB blocks to its own
// preallocated file and syncing each, and returns every sync's latency.
func parallelSyncs(dir string, samples int) ([]time.Duration, error) {
	tmp, err := os.MkdirTemp(dir, "floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	const writers, block = 2, 4 << 10
	files := make([]*os.File, writers)
	for i := range files {
		f, err := os.Create(filepath.Join(tmp, fmt.Sprintf("w%d", i)))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		// Preallocate and sync, so that each timed sync writes data only.
		if _, err := f.Write(make([]byte, samples*block)); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		files[i] = f
	}
	lat := make([][]time.Duration, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Go(func() {
			buf := make([]byte, block)
			for n := range samples {
				buf[0] = byte(n)
				start := time.Now()
				if _, err := f.WriteAt(buf, int64(n*block)); err != nil {
					errs[i] = err
					return
				}
				if err := fdatasync(f); err != nil {
					errs[i] = err
					return
				}
				lat[i] = append(lat[i], time.Since(start))
			}
		})
	}
	wg.Wait()
	return slices.Concat(lat...), errors.Join(errs...)
}

// roundTrips times n request/answer exchanges with an echo server over
// loopback TCP.
func roundTrips(n int) ([]time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg, back := make([]byte, 64), make([]byte, 64)
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

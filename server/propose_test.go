package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestProposalQueueBatches checks the queue over random sequences of adds
// and takes: every proposal comes out once, in the order it went in, with
// its request ID; a batch holds at least one proposal and, beyond its
// first, at most maxProposalBatchBytes; and the wake token is set whenever
// proposals are waiting, so proposeLoop never sleeps on a non-empty queue.
func TestProposalQueueBatches(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			q := newProposalQueue()
			var next, out uint64
			var data [][]byte
			var ids []uint64
			sizes := map[uint64]int{}
			for step := 0; step < 2000; step++ {
				if rng.IntN(3) > 0 {
					size := rng.IntN(64)
					if rng.IntN(50) == 0 {
						size = maxProposalBatchBytes/2 + rng.IntN(maxProposalBatchBytes)
					}
					sizes[next] = size
					q.add(next, bytes.Repeat([]byte{byte(next)}, size))
					next++
				}
				if out < next && len(q.wake) == 0 {
					t.Fatalf("step %d: %d proposals wait but the wake token is not set (replay with seed %d)", step, next-out, seed)
				}
				if rng.IntN(2) == 0 {
					continue
				}
				select {
				case <-q.wake:
				default:
					continue // proposeLoop would sleep: nothing waits
				}
				data, ids = q.take(data, ids)
				if len(data) != len(ids) {
					t.Fatalf("take returned %d proposals for %d IDs", len(data), len(ids))
				}
				if out < next && len(data) == 0 {
					t.Fatalf("step %d: take returned nothing with %d waiting (seed %d)", step, next-out, seed)
				}
				total := 0
				for i, id := range ids {
					if id != out {
						t.Fatalf("step %d: got request %d, want %d (seed %d)", step, id, out, seed)
					}
					if len(data[i]) != sizes[id] || (len(data[i]) > 0 && data[i][0] != byte(id)) {
						t.Fatalf("step %d: request %d came with the wrong data (seed %d)", step, id, seed)
					}
					if i > 0 {
						total += len(data[i])
					}
					out++
				}
				if len(data) > 1 && total+len(data[0]) > maxProposalBatchBytes {
					t.Fatalf("step %d: a batch of %d proposals holds %d bytes, over %d (seed %d)", step, len(data), total+len(data[0]), maxProposalBatchBytes, seed)
				}
				if out < next && len(q.wake) == 0 {
					t.Fatalf("step %d: %d proposals left behind without the wake token (seed %d)", step, next-out, seed)
				}
			}
		})
	}
}

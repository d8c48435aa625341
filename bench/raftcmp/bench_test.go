package raftcmp

import (
	"context"
	"fmt"
	"testing"
)

// payload is the data of every proposal: 128 bytes, shared by all of them
// so that the benchmarks allocate nothing for payloads themselves.
var payload = make([]byte, 128)

// workloads are the shapes compared: batch proposals are made on the leader
// before the cluster runs until all of them are committed.
var workloads = []struct{ voters, batch int }{{1, 1}, {3, 1}, {3, 64}}

// BenchmarkProposeCommit measures proposal-to-commit throughput through
// each implementation's RawNode with in-memory storage, per proposal:
// b.N proposals of 128 bytes, each counted once the leader hands it out as
// committed. Besides time and allocations it reports the messages
// delivered and Readies handled per proposal, which explain much of the
// cost. Names are impl=NAME/voters=V/batch=B, so that benchstat -col /impl
// puts the implementations side by side.
func BenchmarkProposeCommit(b *testing.B) {
	for _, impl := range Impls {
		for _, w := range workloads {
			name := fmt.Sprintf("impl=%s/voters=%d/batch=%d", impl.Name, w.voters, w.batch)
			b.Run(name, func(b *testing.B) {
				c, err := impl.New(w.voters)
				if err != nil {
					b.Fatal(err)
				}
				start := c.Counts()
				b.ReportAllocs()
				b.ResetTimer()
				for done := 0; done < b.N; {
					n := min(w.batch, b.N-done)
					for range n {
						if err := c.Propose(payload); err != nil {
							b.Fatal(err)
						}
					}
					done += n
					if err := c.RunUntilCommitted(done); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
				end := c.Counts()
				b.ReportMetric(float64(end.Messages-start.Messages)/float64(b.N), "msgs/op")
				b.ReportMetric(float64(end.Readies-start.Readies)/float64(b.N), "readies/op")
			})
		}
	}
}

// TestClusters checks that both drivers really replicate: every proposal
// commits on the leader and every member applies up to the same index.
func TestClusters(t *testing.T) {
	const proposals = 100
	for _, impl := range Impls {
		for _, voters := range []int{1, 3} {
			t.Run(fmt.Sprintf("impl=%s/voters=%d", impl.Name, voters), func(t *testing.T) {
				c, err := impl.New(voters)
				if err != nil {
					t.Fatal(err)
				}
				for i := 1; i <= proposals; i++ {
					if err := c.Propose(payload); err != nil {
						t.Fatal(err)
					}
					if i%7 == 0 || i == proposals {
						if err := c.RunUntilCommitted(i); err != nil {
							t.Fatal(err)
						}
					}
				}
				if err := c.Settle(); err != nil {
					t.Fatal(err)
				}
				applied := c.Applied()
				for id, a := range applied {
					// The leader's empty entry of term 2 follows the initial
					// snapshot at index 1.
					if want := uint64(2 + proposals); a != want {
						t.Errorf("member %d applied %d, want %d", id+1, a, want)
					}
				}
			})
		}
	}
}

// BenchmarkNodeProposeCommit measures proposal-to-commit throughput of one
// voter through each implementation's goroutine Node: b.N proposals made
// one after another by the benchmark goroutine while another goroutine
// handles Readys, as a server's raft loop would.
func BenchmarkNodeProposeCommit(b *testing.B) {
	for _, impl := range NodeImpls {
		b.Run(fmt.Sprintf("impl=%s/voters=1/batch=1", impl.Name), func(b *testing.B) {
			n, err := impl.New()
			if err != nil {
				b.Fatal(err)
			}
			defer n.Stop()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := n.Propose(ctx, payload); err != nil {
					b.Fatal(err)
				}
			}
			if err := n.WaitCommitted(ctx, b.N); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// TestNodes checks that both Node drivers commit what they are given.
func TestNodes(t *testing.T) {
	for _, impl := range NodeImpls {
		t.Run(impl.Name, func(t *testing.T) {
			n, err := impl.New()
			if err != nil {
				t.Fatal(err)
			}
			defer n.Stop()
			ctx := context.Background()
			for range 50 {
				if err := n.Propose(ctx, payload); err != nil {
					t.Fatal(err)
				}
			}
			if err := n.WaitCommitted(ctx, 50); err != nil {
				t.Fatal(err)
			}
		})
	}
}

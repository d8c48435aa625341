// Package raftcmp runs the same workloads against synod's raft and etcd's
// raft (go.etcd.io/raft/v3) so that their costs can be compared side by
// side. It is a separate module so that etcd never becomes a dependency of
// synod itself.
//
// Each implementation gets a Cluster: RawNodes with in-memory storage,
// driven from one goroutine, messages delivered by calling the recipient's
// Step directly. Member 1 is elected leader when the cluster is made and
// stays leader, since nothing ticks. The two drivers are written to mirror
// each other line by line, so that what differs is the library.
package raftcmp

import "fmt"

// Cluster is an in-memory raft group of one implementation.
type Cluster interface {
	// Propose proposes one entry carrying data on the leader.
	Propose(data []byte) error
	// RunUntilCommitted runs rounds until the leader has committed n
	// non-empty entries in all. Messages still queued then go out in the
	// next round.
	RunUntilCommitted(n int) error
	// Settle runs rounds until no member has anything left to do.
	Settle() error
	// Applied returns the applied index of every member, in ID order.
	Applied() []uint64
	// Counts returns how much work the cluster has done so far.
	Counts() Counts
}

// Counts measure the work of a cluster, to explain its costs.
type Counts struct {
	// Messages is the number of messages delivered.
	Messages int
	// Readies is the number of Readies handled, over all members.
	Readies int
}

// Impls lists the implementations by name, each with a constructor that starts
// a cluster of voters members and elects member 1.
var Impls = []struct {
	Name string
	New  func(voters int) (Cluster, error)
}{
	{"synod", func(voters int) (Cluster, error) { return NewSynod(voters) }},
	{"etcd", func(voters int) (Cluster, error) { return NewEtcd(voters) }},
}

// voterIDs returns 1..n.
func voterIDs(n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids
}

// errIdle is returned when a cluster has nothing to do but has not yet
// committed what it was asked to.
func errIdle(committed, want int) error {
	return fmt.Errorf("raftcmp: cluster is idle with %d entries committed, want %d", committed, want)
}

// Flow control shared by both implementations: synod's defaults, which
// etcd must be given explicitly (its zero MaxSizePerMsg means one entry per
// message).
const (
	maxSizePerMsg   = 1 << 20
	maxInflightMsgs = 256
)

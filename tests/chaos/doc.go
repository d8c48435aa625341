// Package chaos is synod's fault-injection harness: it runs a cluster,
// drives it with concurrent etcd clients while a nemesis injects faults,
// records every operation with real timestamps, and then checks what
// happened.
//
// # A run
//
// Run takes a started Cluster and a Config. Clients (go.etcd.io/etcd/client/v3,
// half of them pinned to one member, half balanced over all) issue a mix
// of operations on a handful of keys under /chaos/: Get, Put, Delete,
// Range and DeleteRange over the prefix, compare-and-swap (a Txn on a
// key's mod revision), multi-key Txns with comparisons on mod, create
// revision, version and value, and, with LeaseMix, lease grants,
// revokes, puts attached to leases and keep-alives. Every value written
// is unique. Watchers keep watch streams open on random members during
// the faults, moving to another member (resuming after the last revision
// they saw) when a stream ends and every few seconds anyway. The nemesis
// injects one fault at a time, holds it, heals it, and waits.
//
// When the workload time is over the cluster is healed, one last
// linearizable read fixes the final revision, and the checks run:
//
//   - every member answers HashKV at the final revision with the same
//     hash;
//   - every member tells the same history of the key space (read with a
//     watch from the first revision), with no revision missing;
//   - every acknowledged write is in that history at its revision, with
//     its value, no value is written twice (a request applied twice) and
//     none that no client wrote;
//   - every watch stream delivered the history in order, without gaps or
//     repeats across resumptions, each revision's events together and as
//     the history has them;
//   - the whole history is linearizable (strictly serializable for Txn)
//     against Model, a porcupine model of etcd's semantics with
//     revisions: a store revision, and per key value, mod and create
//     revision, version and lease; and per lease whether it exists.
//
// An operation that fails or times out has an unknown outcome: it may
// have taken effect at any time after it was called, even after the
// client saw the error. Prepare narrows such operations using facts that
// only make the history stricter (a unique value seen by a read pins its
// write, revisions are dense so only unexplained revisions can hold an
// unknown write), which keeps porcupine fast without hiding anything.
// Lease expiries are added as operations of unknown outcome that may
// happen once the lease's TTL has passed since its grant.
//
// A run's violations, if any, go to Report.Violations, and its evidence
// to a directory that is kept: report.txt (seed, replay command,
// violations, a diagnosis of where porcupine got stuck, the fault
// timeline), history.html (porcupine's visualization, faults annotated),
// history.txt, keyspace-history.txt, run.json (for Recheck) and the
// members' logs (and data directories, for the first two tiers).
//
// # Tiers
//
// InProcess runs members in the test process (package embed); Processes
// runs synod binaries on loopback; Docker runs containers of a FROM
// scratch image (tests/docker). The first two put a Network of proxies on
// the peer links: each member advertises its proxy's address, and since
// synod's peer handshake names both ends, a proxy knows each link and
// can blackhole, drop, duplicate, reorder or delay raft messages on it,
// or reset its connections. Each cluster type lists its faults (Faults).
//
// The tests (go test ./tests/chaos) run one short run per tier; see the
// package's tests for the environment variables that turn them into a
// soak or replay a seed.
package chaos

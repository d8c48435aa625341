// Package lease keeps synod's leases: which exist, with what TTL, which
// keys each one owns, and — on the leader only — when each one expires.
//
// A lease is a promise that its keys live as long as someone keeps
// renewing it; when the renewals stop, the keys go. In a replicated store
// two kinds of state are involved, and the Lessor keeps them apart:
//
//   - The replicated table (grants, revocations, checkpoints, which keys
//     belong to which lease) changes only when the server applies a raft
//     entry, on every member in the same order. Grant, Revoke, Checkpoint,
//     Attach and Detach are those changes; none of them reads the clock
//     except to set the leader's local deadline, so every member ends up
//     with the same table.
//   - Deadlines are local: only the member that leads ("primary") counts
//     time. Its Renew moves a lease's deadline, Expired reports the leases
//     whose deadline passed, and the server revokes them through raft, so
//     that an expiry is one more replicated change. Followers keep no
//     deadline at all (Promote gives every lease a fresh one, extended by
//     an election's length, so that no lease expires early because its
//     renewals were going to the previous leader).
//
// The Lessor has no goroutine and does no I/O: the server persists the
// table (package mvcc) and drives the clock-dependent calls from its
// leadership loop. It is safe for concurrent use.
package lease

import (
	"cmp"
	"container/heap"
	"errors"
	"math"
	"slices"
	"sync"
	"time"
)

// MaxTTL is the largest TTL, in seconds, a lease may be granted with: the
// same bound etcd enforces (about 285 years), so that deadlines never
// overflow a time.Duration.
const MaxTTL = 9_000_000_000

// Errors of the lessor. The API layer maps them to etcd's gRPC errors.
var (
	// ErrLeaseNotFound: no lease with that ID (never granted, revoked, or
	// expired and being revoked).
	ErrLeaseNotFound = errors.New("lease: lease not found")
	// ErrLeaseExists: Grant of an ID that is already granted.
	ErrLeaseExists = errors.New("lease: lease already exists")
	// ErrTTLTooLarge: Grant with a TTL above MaxTTL.
	ErrTTLTooLarge = errors.New("lease: TTL is too large")
	// ErrNoID: Grant of lease ID 0, which means "no lease" in a Put.
	ErrNoID = errors.New("lease: lease ID 0 is reserved")
	// ErrNotPrimary: a call that needs the leader's deadlines (Renew,
	// TimeToLive) on a lessor that is not primary.
	ErrNotPrimary = errors.New("lease: not the primary lessor")
)

// MinTTL is the shortest TTL, in seconds, worth granting in a cluster
// with the given election timeout: one and a half elections, rounded up.
// A shorter lease could expire while the cluster elects a leader, before
// any client had a chance to renew it. The server raises smaller TTLs to
// it when it proposes a grant (not when applying, so that members with
// different timeouts still apply the same TTL).
func MinTTL(electionTimeout time.Duration) int64 {
	return max(1, int64(math.Ceil((electionTimeout * 3 / 2).Seconds())))
}

// Record is the replicated state of one lease, as persisted.
type Record struct {
	// ID is the lease ID, never 0.
	ID int64
	// TTL is the granted time to live, in seconds.
	TTL int64
	// RemainingTTL is the time to live left at the last checkpoint, 0 if
	// none was taken since the grant or the last renewal.
	RemainingTTL int64
	// GrantIndex is the raft index of the entry that granted the lease:
	// with the ID it names one incarnation of a lease, since an ID can be
	// granted again after a revocation.
	GrantIndex uint64
}

// Expiry is a lease whose deadline passed: its ID and the incarnation
// (GrantIndex) that expired, which the revocation must name so that it
// cannot revoke a later grant of the same ID.
type Expiry struct {
	ID         int64
	GrantIndex uint64
}

// Checkpoint is the remaining TTL of one lease, as the leader measured it.
type Checkpoint struct {
	ID           int64
	RemainingTTL int64
}

// Status describes one lease for TimeToLive.
type Status struct {
	ID int64
	// GrantedTTL is the TTL the lease was granted with, in seconds.
	GrantedTTL int64
	// TTL is the remaining time to live in seconds, rounded up.
	TTL int64
	// Keys are the attached keys, sorted (only when asked for).
	Keys [][]byte
}

// Config tunes a Lessor.
type Config struct {
	// Now is the clock (time.Now if nil); tests pass a fake one.
	Now func() time.Time
	// RevokeRetry is how long a lease reported by Expired waits for its
	// revocation to be applied before Expired reports it again (the
	// proposal may have been lost with a leader change). Default 3s.
	RevokeRetry time.Duration
}

// lease is one granted lease.
type lease struct {
	id        int64
	ttl       int64
	remaining int64
	grant     uint64 // raft index of the grant
	keys      map[string]struct{}

	// Primary only.
	deadline time.Time
	revoking bool // reported by Expired, revocation not applied yet
	idx      int  // position in the expiry heap, -1 when not in it
}

// base is the TTL a new leader counts from: the last checkpoint's, else
// the whole TTL.
func (l *lease) base() int64 {
	if l.remaining > 0 {
		return l.remaining
	}
	return l.ttl
}

// Lessor is the lease table of one member.
type Lessor struct {
	now   func() time.Time
	retry time.Duration

	mu      sync.RWMutex
	leases  map[int64]*lease
	primary bool
	heap    expiryHeap // primary only: every lease, by deadline
}

// New returns an empty, non-primary Lessor.
func New(cfg Config) *Lessor {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RevokeRetry <= 0 {
		cfg.RevokeRetry = 3 * time.Second
	}
	return &Lessor{now: cfg.Now, retry: cfg.RevokeRetry, leases: make(map[int64]*lease)}
}

// ttlDuration converts seconds to a Duration; MaxTTL keeps it in range.
func ttlDuration(sec int64) time.Duration { return time.Duration(sec) * time.Second }

// CheckGrant reports the error Grant would return, without granting. The
// server calls it inside the write that persists the grant, so that a
// refused grant stores nothing.
func (le *Lessor) CheckGrant(id, ttl int64) error {
	switch {
	case id == 0:
		return ErrNoID
	case ttl > MaxTTL:
		return ErrTTLTooLarge
	}
	le.mu.RLock()
	defer le.mu.RUnlock()
	if _, ok := le.leases[id]; ok {
		return ErrLeaseExists
	}
	return nil
}

// Grant adds a lease, granted by the raft entry at grantIndex, and
// returns its TTL (at least one second). A primary lessor starts its
// countdown at once.
func (le *Lessor) Grant(id, ttl int64, grantIndex uint64) (int64, error) {
	if err := le.CheckGrant(id, ttl); err != nil {
		return 0, err
	}
	ttl = max(ttl, 1)
	le.mu.Lock()
	defer le.mu.Unlock()
	if _, ok := le.leases[id]; ok {
		return 0, ErrLeaseExists
	}
	l := &lease{id: id, ttl: ttl, grant: grantIndex, idx: -1}
	le.leases[id] = l
	if le.primary {
		l.deadline = le.now().Add(ttlDuration(ttl))
		heap.Push(&le.heap, l)
	}
	return ttl, nil
}

// Exists reports whether lease id is granted (a Put may attach keys to
// it). A lease being revoked after its expiry still exists until the
// revocation is applied, so that every member answers the same.
func (le *Lessor) Exists(id int64) bool {
	le.mu.RLock()
	_, ok := le.leases[id]
	le.mu.RUnlock()
	return ok
}

// Keys returns the keys attached to lease id, sorted, so that the
// revocation deletes them in the same order on every member.
func (le *Lessor) Keys(id int64) ([][]byte, error) {
	le.mu.RLock()
	defer le.mu.RUnlock()
	l, ok := le.leases[id]
	if !ok {
		return nil, ErrLeaseNotFound
	}
	return sortedKeys(l.keys), nil
}

func sortedKeys(m map[string]struct{}) [][]byte {
	out := make([][]byte, 0, len(m))
	for k := range m {
		out = append(out, []byte(k))
	}
	slices.SortFunc(out, func(a, b []byte) int { return cmp.Compare(string(a), string(b)) })
	return out
}

// Revoke removes lease id (its keys are the caller's to delete, in the
// same write that persists the revocation).
func (le *Lessor) Revoke(id int64) error {
	le.mu.Lock()
	defer le.mu.Unlock()
	l, ok := le.leases[id]
	if !ok {
		return ErrLeaseNotFound
	}
	delete(le.leases, id)
	if l.idx >= 0 {
		heap.Remove(&le.heap, l.idx)
	}
	return nil
}

// Checkpoint records the remaining TTL the leader measured for lease id
// (0 clears it after a renewal). It reports whether the lease exists.
func (le *Lessor) Checkpoint(id, remaining int64) bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	l, ok := le.leases[id]
	if ok {
		l.remaining = max(remaining, 0)
	}
	return ok
}

// Record returns the replicated state of lease id.
func (le *Lessor) Record(id int64) (Record, bool) {
	le.mu.RLock()
	defer le.mu.RUnlock()
	l, ok := le.leases[id]
	if !ok {
		return Record{}, false
	}
	return Record{ID: l.id, TTL: l.ttl, RemainingTTL: l.remaining, GrantIndex: l.grant}, true
}

// Attach records that key now belongs to lease id; false if there is no
// such lease (the key is then nobody's to delete).
func (le *Lessor) Attach(id int64, key []byte) bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	l, ok := le.leases[id]
	if !ok {
		return false
	}
	if l.keys == nil {
		l.keys = make(map[string]struct{})
	}
	l.keys[string(key)] = struct{}{}
	return true
}

// Detach records that key no longer belongs to lease id (it was deleted
// or put with another lease).
func (le *Lessor) Detach(id int64, key []byte) {
	le.mu.Lock()
	defer le.mu.Unlock()
	if l, ok := le.leases[id]; ok {
		delete(l.keys, string(key))
	}
}

// Reset replaces the whole table with recs (keys are attached afterwards),
// as when the server opens its store or installs a snapshot. A primary
// lessor gives each lease a fresh deadline from its checkpointed or
// granted TTL.
func (le *Lessor) Reset(recs []Record) {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.leases = make(map[int64]*lease, len(recs))
	le.heap = le.heap[:0]
	now := le.now()
	for _, r := range recs {
		l := &lease{id: r.ID, ttl: max(r.TTL, 1), remaining: max(r.RemainingTTL, 0), grant: r.GrantIndex, idx: -1}
		le.leases[r.ID] = l
		if le.primary {
			l.deadline = now.Add(ttlDuration(l.base()))
			le.heap = append(le.heap, l)
		}
	}
	le.heap.init()
}

// Len returns the number of leases.
func (le *Lessor) Len() int {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return len(le.leases)
}

// Leases returns the IDs of every lease, sorted.
func (le *Lessor) Leases() []int64 {
	le.mu.RLock()
	out := make([]int64, 0, len(le.leases))
	for id := range le.leases {
		out = append(out, id)
	}
	le.mu.RUnlock()
	slices.Sort(out)
	return out
}

// Promote makes the lessor primary: every lease gets a deadline of its
// checkpointed (else granted) TTL plus extend from now. extend must cover
// the renewals the previous leader may have granted that this member
// never saw: at least an election timeout.
func (le *Lessor) Promote(extend time.Duration) {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.primary = true
	now := le.now()
	le.heap = le.heap[:0]
	for _, l := range le.leases {
		l.deadline = now.Add(ttlDuration(l.base()) + extend)
		l.revoking = false
		le.heap = append(le.heap, l)
	}
	le.heap.init()
}

// Demote makes the lessor a follower's: no deadlines, no expiry.
func (le *Lessor) Demote() {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.primary = false
	for _, l := range le.heap {
		l.idx, l.revoking, l.deadline = -1, false, time.Time{}
	}
	clear(le.heap)
	le.heap = le.heap[:0]
}

// Primary reports whether the lessor counts deadlines.
func (le *Lessor) Primary() bool {
	le.mu.RLock()
	defer le.mu.RUnlock()
	return le.primary
}

// Renew restarts lease id's countdown and returns its TTL. needReset
// reports that the lease has a checkpointed remaining TTL, which the
// caller must clear through raft (a Checkpoint of 0) before answering:
// otherwise a new leader would count from the old checkpoint and expire
// the lease before the TTL the client was just promised. Only a primary
// lessor renews; a lease whose expiry was already reported is not found.
func (le *Lessor) Renew(id int64) (ttl int64, needReset bool, err error) {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return 0, false, ErrNotPrimary
	}
	l, ok := le.leases[id]
	if !ok || l.revoking {
		return 0, false, ErrLeaseNotFound
	}
	l.deadline = le.now().Add(ttlDuration(l.ttl))
	heap.Fix(&le.heap, l.idx)
	return l.ttl, l.remaining > 0, nil
}

// TimeToLive describes lease id; keys asks for its attached keys. Only a
// primary lessor knows the remaining time (0 once the lease has expired
// and waits for its revocation).
func (le *Lessor) TimeToLive(id int64, keys bool) (Status, error) {
	le.mu.RLock()
	defer le.mu.RUnlock()
	l, ok := le.leases[id]
	if !ok {
		return Status{}, ErrLeaseNotFound
	}
	if !le.primary {
		return Status{}, ErrNotPrimary
	}
	st := Status{ID: id, GrantedTTL: l.ttl}
	if !l.revoking {
		st.TTL = ceilSeconds(l.deadline.Sub(le.now()))
	}
	if keys {
		st.Keys = sortedKeys(l.keys)
	}
	return st, nil
}

// ceilSeconds rounds a positive duration up to whole seconds (0 if not
// positive).
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Expired returns up to limit leases whose deadline has passed, oldest
// first, and marks them as being revoked: Renew no longer extends them,
// and they are reported again after RevokeRetry if their revocation has
// not been applied by then. Only a primary lessor expires leases.
func (le *Lessor) Expired(limit int) []Expiry {
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return nil
	}
	now := le.now()
	var out []Expiry
	for len(out) < limit && len(le.heap) > 0 && !le.heap[0].deadline.After(now) {
		l := le.heap[0]
		l.revoking = true
		l.deadline = now.Add(le.retry)
		heap.Fix(&le.heap, 0)
		out = append(out, Expiry{ID: l.id, GrantIndex: l.grant})
	}
	return out
}

// Checkpoints returns, for every lease whose remaining time has dropped
// below its TTL since the last checkpoint, its remaining TTL in seconds,
// so that the leader can persist it and a restarted cluster resumes the
// countdown instead of starting it over. Only a primary lessor has any.
func (le *Lessor) Checkpoints() []Checkpoint {
	le.mu.RLock()
	defer le.mu.RUnlock()
	if !le.primary {
		return nil
	}
	now := le.now()
	var out []Checkpoint
	for _, l := range le.heap {
		if l.revoking {
			continue
		}
		rem := ceilSeconds(l.deadline.Sub(now))
		if rem > 0 && rem < l.ttl && rem != l.remaining {
			out = append(out, Checkpoint{ID: l.id, RemainingTTL: rem})
		}
	}
	slices.SortFunc(out, func(a, b Checkpoint) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// expiryHeap orders the primary's leases by deadline.
type expiryHeap []*lease

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (h *expiryHeap) Push(x any) {
	l := x.(*lease)
	l.idx = len(*h)
	*h = append(*h, l)
}

func (h *expiryHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.idx = -1
	return l
}

// init numbers the entries and orders the heap.
func (h *expiryHeap) init() {
	for i, l := range *h {
		l.idx = i
	}
	heap.Init(h)
}

package lease

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestLessor() (*Lessor, *fakeClock) {
	clk := newFakeClock()
	return New(Config{Now: clk.Now, RevokeRetry: 2 * time.Second}), clk
}

func mustGrant(t *testing.T, le *Lessor, id, ttl int64) {
	t.Helper()
	if _, err := le.Grant(id, ttl, 0); err != nil {
		t.Fatalf("grant %d: %v", id, err)
	}
}

func TestMinTTL(t *testing.T) {
	for _, c := range []struct {
		et   time.Duration
		want int64
	}{
		{100 * time.Millisecond, 1},
		{time.Second, 2},
		{2 * time.Second, 3},
		{5 * time.Second, 8},
	} {
		if got := MinTTL(c.et); got != c.want {
			t.Errorf("MinTTL(%v) = %d, want %d", c.et, got, c.want)
		}
	}
}

func TestGrantErrors(t *testing.T) {
	le, _ := newTestLessor()
	if _, err := le.Grant(0, 10, 0); !errors.Is(err, ErrNoID) {
		t.Fatalf("id 0: %v", err)
	}
	if _, err := le.Grant(1, MaxTTL+1, 0); !errors.Is(err, ErrTTLTooLarge) {
		t.Fatalf("ttl too large: %v", err)
	}
	if ttl, err := le.Grant(1, MaxTTL, 0); err != nil || ttl != MaxTTL {
		t.Fatalf("max ttl: %d %v", ttl, err)
	}
	if _, err := le.Grant(1, 5, 0); !errors.Is(err, ErrLeaseExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := le.CheckGrant(1, 5); !errors.Is(err, ErrLeaseExists) {
		t.Fatalf("check duplicate: %v", err)
	}
	if ttl, err := le.Grant(-5, -3, 0); err != nil || ttl != 1 {
		t.Fatalf("negative ttl raised to 1: %d %v", ttl, err)
	}
	if got := le.Leases(); !reflect.DeepEqual(got, []int64{-5, 1}) {
		t.Fatalf("leases %v", got)
	}
	if err := le.Revoke(99); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if _, err := le.Keys(99); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keys unknown: %v", err)
	}
	if le.Checkpoint(99, 3) {
		t.Fatal("checkpoint of an unknown lease")
	}
}

// TestFollowerNeverExpires: without Promote there are no deadlines.
func TestFollowerNeverExpires(t *testing.T) {
	le, clk := newTestLessor()
	mustGrant(t, le, 1, 5)
	clk.Advance(time.Hour)
	if got := expiredIDs(le, 10); got != nil {
		t.Fatalf("follower expired %v", got)
	}
	if _, _, err := le.Renew(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("follower renew: %v", err)
	}
	if _, err := le.TimeToLive(1, false); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("follower ttl: %v", err)
	}
	if _, err := le.TimeToLive(2, false); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("unknown ttl: %v", err)
	}
	if le.Checkpoints() != nil {
		t.Fatal("follower checkpoints")
	}
}

// TestExpiryAndRenew follows deadlines on a primary through renewals.
func TestExpiryAndRenew(t *testing.T) {
	le, clk := newTestLessor()
	le.Promote(0)
	mustGrant(t, le, 1, 10)
	mustGrant(t, le, 2, 20)
	clk.Advance(9 * time.Second)
	if got := expiredIDs(le, 10); got != nil {
		t.Fatalf("expired early: %v", got)
	}
	if ttl, reset, err := le.Renew(1); err != nil || ttl != 10 || reset {
		t.Fatalf("renew: %d %v %v", ttl, reset, err)
	}
	st, err := le.TimeToLive(1, false)
	if err != nil || st.TTL != 10 || st.GrantedTTL != 10 {
		t.Fatalf("ttl after renew: %+v %v", st, err)
	}
	clk.Advance(9*time.Second + 500*time.Millisecond) // t=18.5
	if st, _ := le.TimeToLive(1, false); st.TTL != 1 {
		t.Fatalf("remaining rounds up: %+v", st)
	}
	if got := expiredIDs(le, 10); got != nil {
		t.Fatalf("expired early: %v", got)
	}
	clk.Advance(time.Second) // t=19.5: lease 1 (deadline 19) is due
	if got := expiredIDs(le, 10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("expired %v, want [1]", got)
	}
	// Being revoked: not renewable, not reported again until the retry.
	if _, _, err := le.Renew(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("renew of an expired lease: %v", err)
	}
	if st, _ := le.TimeToLive(1, false); st.TTL != 0 {
		t.Fatalf("expired lease ttl: %+v", st)
	}
	if !le.Exists(1) {
		t.Fatal("expired lease gone before its revocation")
	}
	clk.Advance(time.Second) // t=20.5: lease 2 due
	if got := expiredIDs(le, 10); !slices.Equal(got, []int64{2}) {
		t.Fatalf("expired %v, want [2]", got)
	}
	clk.Advance(1500 * time.Millisecond) // retry for 1 is due
	if got := expiredIDs(le, 10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("retry: expired %v, want [1]", got)
	}
	if err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	if err := le.Revoke(2); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if got := expiredIDs(le, 10); got != nil {
		t.Fatalf("revoked leases expired: %v", got)
	}
}

// TestExpiredLimitOrder reports the oldest deadlines first, limit at a time.
func TestExpiredLimitOrder(t *testing.T) {
	le, clk := newTestLessor()
	le.Promote(0)
	for i := int64(1); i <= 10; i++ {
		mustGrant(t, le, 100-i, i) // lease 99 expires first
	}
	clk.Advance(20 * time.Second)
	var all []int64
	for {
		got := expiredIDs(le, 3)
		if len(got) == 0 {
			break
		}
		if len(got) > 3 {
			t.Fatalf("limit exceeded: %v", got)
		}
		all = append(all, got...)
	}
	want := []int64{99, 98, 97, 96, 95, 94, 93, 92, 91, 90}
	if !slices.Equal(all, want) {
		t.Fatalf("order %v, want %v", all, want)
	}
}

// TestPromoteExtends: a new leader restarts every countdown from the
// granted (or checkpointed) TTL plus the extension; Demote stops expiry.
func TestPromoteExtends(t *testing.T) {
	le, clk := newTestLessor()
	mustGrant(t, le, 1, 10)
	mustGrant(t, le, 2, 10)
	le.Checkpoint(2, 4)
	clk.Advance(time.Hour) // nobody counted while follower
	le.Promote(3 * time.Second)
	st, err := le.TimeToLive(1, false)
	if err != nil || st.TTL != 13 {
		t.Fatalf("lease 1 after promote: %+v %v", st, err)
	}
	if st, _ := le.TimeToLive(2, false); st.TTL != 7 {
		t.Fatalf("checkpointed lease after promote: %+v", st)
	}
	clk.Advance(6 * time.Second)
	if got := expiredIDs(le, 10); got != nil {
		t.Fatalf("expired early: %v", got)
	}
	clk.Advance(1 * time.Second)
	if got := expiredIDs(le, 10); !slices.Equal(got, []int64{2}) {
		t.Fatalf("expired %v, want [2]", got)
	}
	// A renewal of a checkpointed lease asks for the checkpoint's reset.
	if _, reset, err := le.Renew(1); err != nil || reset {
		t.Fatalf("renew 1: %v %v", reset, err)
	}
	le.Demote()
	clk.Advance(time.Hour)
	if got := expiredIDs(le, 10); got != nil {
		t.Fatalf("demoted lessor expired %v", got)
	}
	// Promote again: the lease being revoked when demoted is renewable
	// again (its revocation may have been lost with the leadership).
	le.Promote(0)
	if _, reset, err := le.Renew(2); err != nil || !reset {
		t.Fatalf("renew of checkpointed lease: reset %v err %v", reset, err)
	}
	le.Checkpoint(2, 0)
	if _, reset, _ := le.Renew(2); reset {
		t.Fatal("reset asked for again after the checkpoint was cleared")
	}
}

// TestCheckpoints reports remaining TTLs that changed since the last one.
func TestCheckpoints(t *testing.T) {
	le, clk := newTestLessor()
	le.Promote(0)
	mustGrant(t, le, 1, 100)
	mustGrant(t, le, 2, 100)
	mustGrant(t, le, 3, 5)
	if got := le.Checkpoints(); len(got) != 0 {
		t.Fatalf("fresh leases checkpointed: %v", got)
	}
	clk.Advance(30 * time.Second)
	if _, _, err := le.Renew(2); err != nil {
		t.Fatal(err)
	}
	got := le.Checkpoints()
	want := []Checkpoint{{ID: 1, RemainingTTL: 70}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("checkpoints %v, want %v (not lease 2, just renewed, nor lease 3, past its deadline)", got, want)
	}
	le.Checkpoint(1, 70)
	if got := le.Checkpoints(); len(got) != 0 {
		t.Fatalf("unchanged lease checkpointed again: %v", got)
	}
	if r, ok := le.Record(1); !ok || r != (Record{ID: 1, TTL: 100, RemainingTTL: 70}) {
		t.Fatalf("record %+v", r)
	}
	// A restart (Reset + Promote) counts from the checkpoint.
	le.Demote()
	le.Reset([]Record{{ID: 1, TTL: 100, RemainingTTL: 70}, {ID: 2, TTL: 100}})
	le.Promote(0)
	if st, _ := le.TimeToLive(1, false); st.TTL != 70 {
		t.Fatalf("after restart: %+v", st)
	}
	if st, _ := le.TimeToLive(2, false); st.TTL != 100 {
		t.Fatalf("after restart: %+v", st)
	}
}

// TestAttachDetachKeys tracks keys per lease, sorted for revocation.
func TestAttachDetachKeys(t *testing.T) {
	le, _ := newTestLessor()
	mustGrant(t, le, 1, 10)
	if le.Attach(2, []byte("x")) {
		t.Fatal("attached to an unknown lease")
	}
	for _, k := range []string{"c", "a", "b", "a"} {
		if !le.Attach(1, []byte(k)) {
			t.Fatal("attach failed")
		}
	}
	le.Detach(1, []byte("b"))
	le.Detach(1, []byte("zz"))
	le.Detach(7, []byte("a"))
	keys, err := le.Keys(1)
	if err != nil || fmt.Sprintf("%q", keys) != `["a" "c"]` {
		t.Fatalf("keys %q %v", keys, err)
	}
	le.Promote(0)
	st, err := le.TimeToLive(1, true)
	if err != nil || fmt.Sprintf("%q", st.Keys) != `["a" "c"]` {
		t.Fatalf("ttl keys %q %v", st.Keys, err)
	}
	if err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	if le.Exists(1) || le.Len() != 0 {
		t.Fatal("revoked lease exists")
	}
}

// TestResetWhilePrimary gives reloaded leases deadlines at once.
func TestResetWhilePrimary(t *testing.T) {
	le, clk := newTestLessor()
	le.Promote(0)
	mustGrant(t, le, 9, 1)
	le.Reset([]Record{{ID: 1, TTL: 10}, {ID: 2, TTL: 10, RemainingTTL: 3}})
	if le.Exists(9) {
		t.Fatal("reset kept an old lease")
	}
	clk.Advance(3 * time.Second)
	if got := expiredIDs(le, 10); !slices.Equal(got, []int64{2}) {
		t.Fatalf("expired %v", got)
	}
}

// TestModel drives a lessor with random operations and compares it with
// a straightforward model of the deadlines.
func TestModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	le, clk := newTestLessor()
	type mlease struct {
		ttl      int64
		deadline time.Time
		revoking bool
	}
	model := map[int64]*mlease{}
	primary := false
	for step := range 20000 {
		id := rng.Int64N(40) + 1
		switch op := rng.IntN(10); op {
		case 0, 1:
			ttl := rng.Int64N(20) + 1
			_, err := le.Grant(id, ttl, 0)
			if _, ok := model[id]; ok != errors.Is(err, ErrLeaseExists) {
				t.Fatalf("step %d: grant %d: %v (model has it: %v)", step, id, err, ok)
			}
			if err == nil {
				model[id] = &mlease{ttl: ttl, deadline: clk.Now().Add(ttlDuration(ttl))}
			}
		case 2:
			err := le.Revoke(id)
			if _, ok := model[id]; ok == (err != nil) {
				t.Fatalf("step %d: revoke %d: %v", step, id, err)
			}
			delete(model, id)
		case 3, 4:
			ttl, _, err := le.Renew(id)
			m := model[id]
			switch {
			case !primary:
				if !errors.Is(err, ErrNotPrimary) {
					t.Fatalf("step %d: renew on follower: %v", step, err)
				}
			case m == nil || m.revoking:
				if !errors.Is(err, ErrLeaseNotFound) {
					t.Fatalf("step %d: renew of missing %d: %v", step, id, err)
				}
			default:
				if err != nil || ttl != m.ttl {
					t.Fatalf("step %d: renew %d: %d %v", step, id, ttl, err)
				}
				m.deadline = clk.Now().Add(ttlDuration(ttl))
			}
		case 5:
			clk.Advance(time.Duration(rng.Int64N(3000)) * time.Millisecond)
		case 6:
			got := expiredIDs(le, 1000)
			var want []int64
			if primary {
				for id, m := range model {
					if !m.revoking && !m.deadline.After(clk.Now()) {
						want = append(want, id)
					}
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			// Leases whose retry came due are reported again too.
			var fresh []int64
			for _, id := range got {
				if !model[id].revoking {
					fresh = append(fresh, id)
				}
			}
			if !slices.Equal(fresh, want) {
				t.Fatalf("step %d: expired %v, want %v", step, fresh, want)
			}
			for _, id := range got {
				model[id].revoking = true
			}
		case 7:
			if rng.IntN(5) == 0 {
				if primary {
					le.Demote()
					for _, m := range model {
						m.revoking = false
					}
				} else {
					le.Promote(0)
					for _, m := range model {
						m.deadline = clk.Now().Add(ttlDuration(m.ttl))
						m.revoking = false
					}
				}
				primary = !primary
			}
		default:
			if le.Exists(id) != (model[id] != nil) {
				t.Fatalf("step %d: exists %d", step, id)
			}
		}
		if le.Len() != len(model) {
			t.Fatalf("step %d: %d leases, model %d", step, le.Len(), len(model))
		}
	}
}

// TestConcurrentUse runs renewals, reads and applies at once (for -race).
func TestConcurrentUse(t *testing.T) {
	le := New(Config{})
	le.Promote(0)
	for i := int64(1); i <= 100; i++ {
		mustGrant(t, le, i, 60)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				id := int64(i%100 + 1)
				switch w {
				case 0:
					le.Renew(id)
				case 1:
					le.TimeToLive(id, true)
					le.Leases()
				case 2:
					le.Attach(id, []byte(fmt.Sprint(i)))
					le.Exists(id)
				case 3:
					expiredIDs(le, 10)
					le.Checkpoints()
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkRenew measures the leader's work for one keep-alive.
func BenchmarkRenew(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			le := New(Config{})
			le.Promote(0)
			for i := range n {
				le.Grant(int64(i+1), 60, 0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, _, err := le.Renew(int64(i%n + 1)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRenewParallel measures renewals from many streams at once.
func BenchmarkRenewParallel(b *testing.B) {
	const n = 10_000
	le := New(Config{})
	le.Promote(0)
	for i := range n {
		le.Grant(int64(i+1), 60, 0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(n)
		for pb.Next() {
			le.Renew(int64(i%n + 1))
			i++
		}
	})
}

// BenchmarkAttachDetach measures the apply-side bookkeeping of a put of
// a leased key that replaces another.
func BenchmarkAttachDetach(b *testing.B) {
	le := New(Config{})
	le.Grant(1, 60, 0)
	le.Grant(2, 60, 0)
	key := []byte("/registry/services/endpoints/default/kubernetes")
	b.ReportAllocs()
	for b.Loop() {
		le.Detach(1, key)
		le.Attach(2, key)
		le.Detach(2, key)
		le.Attach(1, key)
	}
}

// expiredIDs returns the IDs Expired reports.
func expiredIDs(le *Lessor, limit int) []int64 {
	var ids []int64
	for _, e := range le.Expired(limit) {
		ids = append(ids, e.ID)
	}
	return ids
}

// TestGrantIndexNamesTheIncarnation checks that the grant index travels
// with a lease through Record, Reset and Expired, so that an expiry names
// the grant that expired and not a later one of the same ID.
func TestGrantIndexNamesTheIncarnation(t *testing.T) {
	le, clk := newTestLessor()
	le.Promote(0)
	if _, err := le.Grant(1, 5, 40); err != nil {
		t.Fatal(err)
	}
	if rec, ok := le.Record(1); !ok || rec.GrantIndex != 40 {
		t.Fatalf("record %+v, %v: want grant index 40", rec, ok)
	}
	if err := le.Revoke(1); err != nil {
		t.Fatal(err)
	}
	if _, err := le.Grant(1, 5, 77); err != nil {
		t.Fatal(err)
	}
	le.Reset([]Record{{ID: 1, TTL: 5, GrantIndex: 77}, {ID: 2, TTL: 5, GrantIndex: 80}})
	clk.Advance(6 * time.Second)
	got := le.Expired(10)
	slices.SortFunc(got, func(a, b Expiry) int { return int(a.ID - b.ID) })
	if want := []Expiry{{ID: 1, GrantIndex: 77}, {ID: 2, GrantIndex: 80}}; !slices.Equal(got, want) {
		t.Fatalf("expired %+v, want %+v", got, want)
	}
}

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// The test clusters use a 100ms election timeout, so the shortest lease
// is 1s and a new leader extends leases by 200ms.
const (
	testMinTTL = 1
	testExtend = 200 * time.Millisecond
)

func grant(t *testing.T, cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Grant(framework.Context(t), ttl)
	if err != nil {
		t.Fatalf("grant ttl %d: %v", ttl, err)
	}
	if resp.TTL != max(ttl, testMinTTL) || resp.ID == 0 {
		t.Fatalf("grant ttl %d: got %+v", ttl, resp)
	}
	return resp.ID
}

func countPrefix(t *testing.T, cli *clientv3.Client, prefix string, opts ...clientv3.OpOption) int64 {
	t.Helper()
	resp, err := cli.Get(framework.Context(t), prefix, append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}, opts...)...)
	if err != nil {
		t.Fatalf("count %s: %v", prefix, err)
	}
	return resp.Count
}

func sameErr(err, want error) bool {
	return err != nil && rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(want)
}

// TestLeaseRevokeDeletesKeysInOneRevision attaches many keys to a lease
// through every member and revokes it: every key goes in one revision.
func TestLeaseRevokeDeletesKeysInOneRevision(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	cli := c.Client()
	id := grant(t, cli, 60)
	other := grant(t, cli, 60)
	const n = 600
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wc := c.Client(w % 3)
			for i := w; i < n; i += 6 {
				if err := retryLeaderChanged(func() error {
					_, err := wc.Put(ctx, fmt.Sprintf("lease/k%04d", i), "v", clientv3.WithLease(id))
					return err
				}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// A key moved to another lease, a key detached, a key deleted, and a
	// key put without lease stay out of the revocation.
	mustPut := func(key string, opts ...clientv3.OpOption) {
		t.Helper()
		if _, err := cli.Put(ctx, key, "v", opts...); err != nil {
			t.Fatal(err)
		}
	}
	mustPut("lease/k0000", clientv3.WithLease(other))
	mustPut("lease/k0001")
	if _, err := cli.Delete(ctx, "lease/k0002"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "lease/k0003", "", clientv3.WithIgnoreValue()); err != nil { // without ignore_lease it detaches
		t.Fatal(err)
	}
	mustPut("plain")
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("lease/txn", "v", clientv3.WithLease(id))).Commit(); err != nil {
		t.Fatal(err)
	}
	ttl, err := cli.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := n - 4 + 1
	if len(ttl.Keys) != wantKeys {
		t.Fatalf("attached keys: %d, want %d", len(ttl.Keys), wantKeys)
	}
	before := mustRev(t, cli)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := c.Client(1).Watch(wctx, "lease/", clientv3.WithPrefix(), clientv3.WithRev(before+1))
	resp, err := cli.Revoke(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.Header.Revision
	if rev != before+1 {
		t.Fatalf("revoke at revision %d, want one revision after %d", rev, before)
	}
	// Watchers get the whole revocation at once: one delete per key, all
	// at the revocation's revision, in one response.
	select {
	case wr := <-wch:
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
		if len(wr.Events) != wantKeys {
			t.Fatalf("watch got %d events, want %d in one response", len(wr.Events), wantKeys)
		}
		for _, ev := range wr.Events {
			if ev.Type != clientv3.EventTypeDelete || ev.Kv.ModRevision != rev {
				t.Fatalf("watch event %v at %d, want deletes at %d", ev.Type, ev.Kv.ModRevision, rev)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response for the revocation")
	}
	if got := countPrefix(t, cli, "lease/", clientv3.WithRev(rev-1)); got != int64(n-1+1) {
		t.Fatalf("keys before the revocation: %d", got)
	}
	if got := countPrefix(t, cli, "lease/", clientv3.WithRev(rev)); got != 3 {
		t.Fatalf("keys left after the revocation: %d, want 3 (k0000 on another lease, k0001 and k0003 detached)", got)
	}
	// Every member applied the same.
	for i := range c.Members {
		framework.WaitFor(t, fmt.Sprintf("member %d to apply the revocation", i), func() bool {
			r, err := c.Client(i).Get(ctx, "lease/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithKeysOnly())
			return err == nil && r.Header.Revision >= rev && r.Count == 3
		})
	}
	if _, err := cli.Get(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if tl, err := cli.TimeToLive(ctx, id); err != nil || tl.TTL != -1 {
		t.Fatalf("time to live of a revoked lease: %v %+v", err, tl)
	}
	if _, err := cli.Revoke(ctx, id); !sameErr(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := cli.Put(ctx, "late", "v", clientv3.WithLease(id)); !sameErr(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("put with a revoked lease: %v", err)
	}
}

// TestLeaseExpiryDeletesKeys lets a lease run out: its keys vanish after
// its TTL, not before, and not much later.
func TestLeaseExpiryDeletesKeys(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	cli := c.Client()
	ctx := framework.Context(t)
	start := time.Now()
	id := grant(t, cli, 2)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("exp/%d", i), "v", clientv3.WithLease(id)); err != nil {
			t.Fatal(err)
		}
	}
	var gone time.Time
	framework.WaitFor(t, "the lease to expire", func() bool {
		if countPrefix(t, cli, "exp/", clientv3.WithSerializable()) == 0 {
			gone = time.Now()
			return true
		}
		return false
	})
	if early := start.Add(2 * time.Second); gone.Before(early) {
		t.Fatalf("keys gone %v after the grant, before the 2s TTL", gone.Sub(start))
	}
	t.Logf("keys gone %v after the grant", gone.Sub(start))
	if late := start.Add(2*time.Second + 2*time.Second); gone.After(late) {
		t.Fatalf("keys gone only %v after the grant", gone.Sub(start))
	}
	if tl, err := cli.TimeToLive(ctx, id); err != nil || tl.TTL != -1 {
		t.Fatalf("time to live of an expired lease: %v %+v", err, tl)
	}
	if _, err := cli.KeepAliveOnce(ctx, id); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of an expired lease: %v", err)
	}
}

// TestLeaseKeepAliveManyClients keeps short leases alive from many
// clients, each on one member (followers forward to the
// leader), then lets half of them go.
func TestLeaseKeepAliveManyClients(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	const clients, perClient = 12, 3
	type kept struct {
		id     clientv3.LeaseID
		cancel context.CancelFunc
		ch     <-chan *clientv3.LeaseKeepAliveResponse
	}
	var all []kept
	counts := make([]atomic.Int64, clients*perClient) // keep-alive responses per lease
	var wg sync.WaitGroup
	granted := time.Now()
	for ci := range clients {
		cli := c.Client(ci % 3)
		for j := range perClient {
			id := grant(t, cli, 2)
			if _, err := cli.Put(ctx, fmt.Sprintf("ka/%02d/%d", ci, j), "v", clientv3.WithLease(id)); err != nil {
				t.Fatal(err)
			}
			kctx, cancel := context.WithCancel(ctx)
			ch, err := cli.KeepAlive(kctx, id)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, kept{id, cancel, ch})
			n := &counts[len(all)-1]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range ch {
					n.Add(1)
				}
			}()
		}
	}
	t.Cleanup(func() {
		for _, k := range all {
			k.cancel()
		}
		wg.Wait()
	})
	// renewedAtLeast waits until every lease i with keep(i) had n more
	// keep-alive responses than in from. clientv3 renews every third of
	// the TTL, so 4 more responses span more than a whole TTL.
	renewedAtLeast := func(n int64, keep func(i int) bool) {
		t.Helper()
		from := make([]int64, len(counts))
		for i := range counts {
			from[i] = counts[i].Load()
		}
		framework.WaitFor(t, fmt.Sprintf("%d more keep-alive responses for each lease kept", n), func() bool {
			for i := range counts {
				if keep(i) && counts[i].Load() < from[i]+n {
					return false
				}
			}
			return true
		})
	}
	renewedAtLeast(5, func(int) bool { return true })
	if got := countPrefix(t, c.Client(), "ka/"); got != clients*perClient {
		t.Fatalf("%d keys alive %v after the grants, want %d", got, time.Since(granted), clients*perClient)
	}
	if d := time.Since(granted); d < 2*time.Second {
		t.Fatalf("5 renewals of every lease within %v: faster than clientv3 renews a 2s lease", d)
	}
	// Stop every other lease's keep-alive: those expire, the rest live.
	for i, k := range all {
		if i%2 == 0 {
			k.cancel()
		}
	}
	framework.WaitFor(t, "half the leases to expire", func() bool {
		return countPrefix(t, c.Client(), "ka/") == clients*perClient/2
	})
	renewedAtLeast(4, func(i int) bool { return i%2 == 1 })
	if got := countPrefix(t, c.Client(), "ka/"); got != clients*perClient/2 {
		t.Fatalf("%d keys alive, want %d", got, clients*perClient/2)
	}
	for i, k := range all {
		tl, err := c.Client().TimeToLive(ctx, k.id)
		if err != nil {
			t.Fatal(err)
		}
		if alive := tl.TTL > 0; alive != (i%2 == 1) {
			t.Fatalf("lease %d (kept alive: %v): ttl %d", i, i%2 == 1, tl.TTL)
		}
	}
}

// TestLeaseExpiryUnderLeaderFailover kills the leader while leases run:
// a lease kept alive survives, and a lease left alone expires neither
// before its TTL nor much after it — the new leader revokes it.
func TestLeaseExpiryUnderLeaderFailover(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	var survivors []int
	for i := range c.Members {
		if i != li {
			survivors = append(survivors, i)
		}
	}
	cli := c.Client(survivors...)
	const ttl = 3
	kept := grant(t, cli, ttl)
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	kch, err := cli.KeepAlive(kctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	var keptRenewals atomic.Int64
	var kwg sync.WaitGroup
	kwg.Add(1)
	go func() {
		defer kwg.Done()
		for range kch {
			keptRenewals.Add(1)
		}
	}()
	defer kwg.Wait()
	defer kcancel()

	grantedAt := time.Now()
	left := grant(t, cli, ttl)
	renewed := grant(t, cli, ttl)
	for key, id := range map[string]clientv3.LeaseID{"fo/kept": kept, "fo/left": left, "fo/renewed": renewed} {
		if _, err := cli.Put(ctx, key, "v", clientv3.WithLease(id)); err != nil {
			t.Fatal(err)
		}
	}
	// Renew one of the two idle leases once at least a second of its
	// countdown has passed, so that the two expire at different times.
	framework.WaitFor(t, "a second of the leases' countdown", func() bool {
		tl, err := cli.TimeToLive(ctx, renewed)
		return err == nil && tl.TTL <= ttl-1
	})
	renewedAt := time.Now()
	if _, err := cli.KeepAliveOnce(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	c.Stop(li)

	goneAt := map[string]time.Time{}
	framework.WaitFor(t, "the unrenewed leases to expire", func() bool {
		resp, err := cli.Get(ctx, "fo/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithKeysOnly())
		if err != nil {
			return false
		}
		now := time.Now()
		present := map[string]bool{}
		for _, kv := range resp.Kvs {
			present[string(kv.Key)] = true
		}
		for _, k := range []string{"fo/left", "fo/renewed"} {
			if _, seen := goneAt[k]; !present[k] && !seen {
				goneAt[k] = now
			}
		}
		if !present["fo/kept"] {
			t.Fatalf("the lease kept alive expired during the failover")
		}
		return len(goneAt) == 2
	})
	bounds := map[string]time.Time{"fo/left": grantedAt, "fo/renewed": renewedAt}
	for k, from := range bounds {
		t.Logf("%s gone %v after its last renewal, %v after the kill", k, goneAt[k].Sub(from), goneAt[k].Sub(killedAt))
		if goneAt[k].Before(from.Add(ttl * time.Second)) {
			t.Errorf("%s expired %v after its last renewal, before its %ds TTL", k, goneAt[k].Sub(from), ttl)
		}
		// The new leader counts the TTL from its election, plus the
		// extension; allow the election and some scheduling slack.
		if limit := killedAt.Add(ttl*time.Second + testExtend + 2*time.Second); goneAt[k].After(limit) {
			t.Errorf("%s expired only %v after the kill", k, goneAt[k].Sub(killedAt))
		}
	}
	// The kept lease goes on being renewed by the new leader for more
	// than its TTL (clientv3 renews every third of it).
	fromRenewals := keptRenewals.Load()
	framework.WaitFor(t, "four renewals of the kept lease by the new leader", func() bool {
		return keptRenewals.Load() >= fromRenewals+4
	})
	if n := countPrefix(t, cli, "fo/kept"); n != 1 {
		t.Fatal("the lease kept alive expired after the failover")
	}
	// The old leader comes back and agrees.
	c.Restart(li)
	framework.WaitFor(t, "the old leader to catch up", func() bool {
		resp, err := c.Client(li).Leases(ctx)
		return err == nil && len(resp.Leases) == 1 && resp.Leases[0].ID == kept
	})
	if n := countPrefix(t, c.Client(li), "fo/", clientv3.WithSerializable()); n != 1 {
		t.Fatalf("old leader sees %d keys, want 1", n)
	}
}

// TestLeaseRevocationNotLostAcrossFailover kills the leader around the
// moment a lease expires — before the deadline, at it, or after it, when
// the leader may have noticed and proposed its revocation — and checks
// that the next leader revokes it, never before its TTL. The members
// share a fake clock, so the instants are exact whatever the machine's
// speed.
func TestLeaseRevocationNotLostAcrossFailover(t *testing.T) {
	t.Parallel()
	clock := framework.NewClock()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) { cfg.Lease.Now = clock.Now })
	ctx := framework.Context(t)
	const ttl = 2 * time.Second
	for round, offset := range []time.Duration{-100 * time.Millisecond, 0, 25 * time.Millisecond, 50 * time.Millisecond} {
		li := c.LeaderIndex()
		var survivors []int
		for i := range c.Members {
			if i != li {
				survivors = append(survivors, i)
			}
		}
		cli := c.Client(survivors...)
		prefix := fmt.Sprintf("rv%d/", round)
		start := clock.Now()
		id := grant(t, cli, int64(ttl/time.Second))
		for i := range 10 {
			if _, err := cli.Put(ctx, fmt.Sprintf("%s%d", prefix, i), "v", clientv3.WithLease(id)); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(ttl + offset)
		killedAt := clock.Now()
		c.Stop(li)
		c.WaitLeader()
		// Without checkpoints the new leader gives the lease its whole
		// TTL again, plus the extension; time moves in small steps
		// until the keys go (and stops past that bound).
		framework.WaitFor(t, "the revocation after the failover", func() bool {
			if countPrefix(t, cli, prefix, clientv3.WithSerializable()) == 0 {
				return true
			}
			if clock.Now().Sub(killedAt) < ttl+testExtend+2*time.Second {
				clock.Advance(50 * time.Millisecond)
			}
			return false
		})
		gone := clock.Now()
		t.Logf("round %d: killed at %v of the lease's clock; keys gone %v after the kill", round, ttl+offset, gone.Sub(killedAt))
		if gone.Sub(start) < ttl {
			t.Errorf("round %d: keys gone at %v of a %v lease", round, gone.Sub(start), ttl)
		}
		c.Restart(li)
		c.WaitLeader()
		framework.WaitFor(t, "the restarted member to agree", func() bool {
			r, err := c.Client(li).Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
			return err == nil && r.Count == 0
		})
	}
}

// TestLeaseSurvivesRestart restarts the whole cluster: leases and their
// attachments come back from disk, and expiry resumes.
func TestLeaseSurvivesRestart(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	cli := c.Client(0)
	long := grant(t, cli, 600)
	short := grant(t, cli, 3)
	other := grant(t, cli, 600)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("rs/long/%02d", i), "v", clientv3.WithLease(long)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "rs/long/00", "v", clientv3.WithLease(other)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "rs/short", "v", clientv3.WithLease(short)); err != nil {
		t.Fatal(err)
	}
	for i := range c.Members {
		c.Stop(i)
	}
	for i := range c.Members {
		c.Restart(i)
	}
	restartedAt := time.Now()
	c.WaitLeader()
	cli = c.Client()
	tl, err := cli.TimeToLive(ctx, long, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if tl.GrantedTTL != 600 || tl.TTL < 590 || len(tl.Keys) != 19 {
		t.Fatalf("long lease after restart: granted %d ttl %d keys %d", tl.GrantedTTL, tl.TTL, len(tl.Keys))
	}
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []clientv3.LeaseID
	for _, l := range leases.Leases {
		ids = append(ids, l.ID)
	}
	slices.Sort(ids)
	want := []clientv3.LeaseID{long, short, other}
	slices.Sort(want)
	if !slices.Equal(ids, want) && !slices.Equal(ids, slices.DeleteFunc(want, func(id clientv3.LeaseID) bool { return id == short })) {
		t.Fatalf("leases after restart: %v, want %v", ids, want)
	}
	// Without checkpoints the short lease counts its whole TTL again.
	framework.WaitFor(t, "the short lease to expire", func() bool { return countPrefix(t, cli, "rs/short") == 0 })
	if d := time.Since(restartedAt); d < 3*time.Second {
		t.Fatalf("short lease expired %v after the restart", d)
	}
	if _, err := cli.Revoke(ctx, long); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, cli, "rs/"); n != 1 {
		t.Fatalf("%d keys after revoking the long lease, want 1 (moved to another lease)", n)
	}
}

// TestLeaseCheckpointSurvivesRestart: with checkpointing, a restarted
// cluster resumes each lease's countdown instead of starting it over; a
// renewal after a checkpoint resets it.
func TestLeaseCheckpointSurvivesRestart(t *testing.T) {
	t.Parallel()
	for _, checkpoint := range []bool{true, false} {
		t.Run(fmt.Sprintf("checkpoint=%v", checkpoint), func(t *testing.T) {
			clock := framework.NewClock()
			c := framework.NewCluster(t, 1, func(cfg *server.Config) {
				cfg.Lease.Now = clock.Now
				if checkpoint {
					cfg.Lease.CheckpointInterval = 10 * time.Millisecond
				}
			})
			ctx := framework.Context(t)
			cli := c.Client()
			const ttl = 30
			idle := grant(t, cli, ttl)
			renewed := grant(t, cli, ttl)
			clock.Advance(4 * time.Second)
			if checkpoint {
				framework.WaitFor(t, "a checkpoint of the idle lease's countdown", func() bool {
					recs, err := c.Members[0].Embed.Server.KV().Leases()
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range recs {
						if r.ID == int64(idle) && r.RemainingTTL > 0 && r.RemainingTTL <= ttl-4 {
							return true
						}
					}
					return false
				})
			}
			if _, err := cli.KeepAliveOnce(ctx, renewed); err != nil {
				t.Fatal(err)
			}
			c.Stop(0)
			c.Restart(0)
			c.WaitLeader()
			cli = c.Client()
			tIdle, err := cli.TimeToLive(ctx, idle)
			if err != nil {
				t.Fatal(err)
			}
			tRenewed, err := cli.TimeToLive(ctx, renewed)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after restart: idle lease ttl %d, renewed lease ttl %d", tIdle.TTL, tRenewed.TTL)
			if checkpoint && tIdle.TTL > ttl-2 {
				t.Errorf("idle lease after restart: ttl %d, want at most %d (resumed from its checkpoint)", tIdle.TTL, ttl-2)
			}
			if !checkpoint && tIdle.TTL < ttl-1 {
				t.Errorf("idle lease after restart without checkpoints: ttl %d, want its whole TTL", tIdle.TTL)
			}
			if tRenewed.TTL < ttl-1 {
				t.Errorf("renewed lease after restart: ttl %d, want about %d", tRenewed.TTL, ttl)
			}
		})
	}
}

// TestLeaseTimeToLiveAndList asks every member, followers included (they
// ask the leader), about a lease and its keys.
func TestLeaseTimeToLiveAndList(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	follower := (li + 1) % 3
	id := grant(t, c.Client(follower), 10)
	var want []string
	for _, k := range []string{"tl/b", "tl/a", "tl/c"} {
		if _, err := c.Client(li).Put(ctx, k, "v", clientv3.WithLease(id)); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	slices.Sort(want)
	for i := range c.Members {
		cli := c.Client(i)
		tl, err := cli.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		var keys []string
		for _, k := range tl.Keys {
			keys = append(keys, string(k))
		}
		if tl.ID != id || tl.GrantedTTL != 10 || tl.TTL < 8 || tl.TTL > 10 || !slices.Equal(keys, want) {
			t.Fatalf("member %d: time to live %+v keys %q", i, tl, keys)
		}
		if tl, err := cli.TimeToLive(ctx, id); err != nil || tl.Keys != nil {
			t.Fatalf("member %d: keys without asking: %v %+v", i, err, tl)
		}
		ls, err := cli.Leases(ctx)
		if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != id {
			t.Fatalf("member %d: leases %v %+v", i, err, ls)
		}
		// Keep-alives too are answered by the leader, whoever is asked.
		if ka, err := cli.KeepAliveOnce(ctx, id); err != nil || ka.ID != id || ka.TTL != 10 {
			t.Fatalf("member %d: keep-alive %v %+v", i, err, ka)
		}
		if _, err := cli.KeepAliveOnce(ctx, id+1); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			t.Fatalf("member %d: keep-alive of an unknown lease: %v", i, err)
		}
	}
	if _, err := c.Client(follower).Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	for i := range c.Members {
		ls, err := c.Client(i).Leases(ctx)
		if err != nil || len(ls.Leases) != 0 {
			t.Fatalf("member %d after revoke: %v %+v", i, err, ls)
		}
		if tl, err := c.Client(i).TimeToLive(ctx, id); err != nil || tl.TTL != -1 {
			t.Fatalf("member %d after revoke: %v %+v", i, err, tl)
		}
	}
}

// TestLeaseBadInput sends wrong and odd lease requests: each gets etcd's
// answer and nothing changes.
func TestLeaseBadInput(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client()
	lc := pb.NewLeaseClient(cli.ActiveConnection())
	rev := mustRev(t, cli)

	_, err := cli.Grant(ctx, 9_000_000_001)
	if !sameErr(err, rpctypes.ErrGRPCLeaseTTLTooLarge) {
		t.Errorf("too large TTL: %v", err)
	}
	for _, ttl := range []int64{0, -5} {
		resp, err := cli.Grant(ctx, ttl)
		if err != nil || resp.TTL != testMinTTL {
			t.Errorf("grant ttl %d: %v %+v, want the minimum TTL", ttl, err, resp)
		}
	}
	if resp, err := cli.Grant(ctx, 9_000_000_000); err != nil || resp.TTL != 9_000_000_000 {
		t.Errorf("grant max ttl: %v %+v", err, resp)
	}
	if resp, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 42, TTL: 5}); err != nil || resp.ID != 42 || resp.TTL != 5 {
		t.Fatalf("grant with ID: %v %+v", err, resp)
	}
	if _, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 42, TTL: 7}); !sameErr(err, rpctypes.ErrGRPCLeaseExist) {
		t.Errorf("duplicate ID: %v", err)
	}
	if resp, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: -42, TTL: 5}); err != nil || resp.ID != -42 {
		t.Errorf("negative ID: %v %+v", err, resp)
	}
	for _, id := range []clientv3.LeaseID{0, 7777, -1} {
		if _, err := cli.Revoke(ctx, id); !sameErr(err, rpctypes.ErrGRPCLeaseNotFound) {
			t.Errorf("revoke %d: %v", id, err)
		}
		if _, err := cli.KeepAliveOnce(ctx, id); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			t.Errorf("keep-alive %d: %v", id, err)
		}
		if tl, err := cli.TimeToLive(ctx, id, clientv3.WithAttachedKeys()); err != nil || tl.TTL != -1 || len(tl.Keys) != 0 {
			t.Errorf("time to live %d: %v %+v", id, err, tl)
		}
	}
	if id := clientv3.LeaseID(7777); true {
		_, err := cli.Put(ctx, "k", "v", clientv3.WithLease(id))
		if !sameErr(err, rpctypes.ErrGRPCLeaseNotFound) {
			t.Errorf("put with unknown lease: %v", err)
		}
		_, err = cli.Txn(ctx).Then(clientv3.OpPut("k", "v", clientv3.WithLease(id))).Commit()
		if !sameErr(err, rpctypes.ErrGRPCLeaseNotFound) {
			t.Errorf("txn put with unknown lease: %v", err)
		}
	}
	// One stream, requests for known, unknown and odd IDs, in a burst.
	stream, err := lc.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{42, 0, -1, 7777, 42, 1 << 62}
	for _, id := range ids {
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		want := int64(0)
		if id == 42 {
			want = 5
		}
		if resp.ID != id || resp.TTL != want {
			t.Errorf("keep-alive %d: got id %d ttl %d, want ttl %d", id, resp.ID, resp.TTL, want)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if got := mustRev(t, cli); got != rev {
		t.Fatalf("revision %d after lease requests, want %d", got, rev)
	}
}

// TestLeaseSnapshotInstall brings back a member by snapshot: its lease
// table and attachments are rebuilt from it, as it shows once it leads.
func TestLeaseSnapshotInstall(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) {
		cfg.SnapshotCount = 50
		cfg.SnapshotCatchUpEntries = 10
	})
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	down := (li + 1) % 3
	cli := c.Client(li)
	kept := grant(t, cli, 600)
	revoked := grant(t, cli, 600)
	for _, p := range []struct {
		key string
		id  clientv3.LeaseID
	}{{"sn/kept/0", kept}, {"sn/revoked/0", revoked}} {
		if _, err := cli.Put(ctx, p.key, "v", clientv3.WithLease(p.id)); err != nil {
			t.Fatal(err)
		}
	}
	framework.WaitFor(t, "the member to be sent down to catch up", func() bool {
		return countPrefix(t, c.Client(down), "sn/", clientv3.WithSerializable()) == 2
	})
	c.Stop(down)
	if _, err := cli.Revoke(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	added := grant(t, cli, 600)
	for i := range 100 {
		if _, err := cli.Put(ctx, fmt.Sprintf("sn/added/%03d", i), "v", clientv3.WithLease(added)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("filler/%03d", i), strings.Repeat("x", 50)); err != nil {
			t.Fatal(err)
		}
	}
	rev := mustRev(t, cli)
	c.Restart(down)
	framework.WaitFor(t, "the restarted member to catch up", func() bool {
		resp, err := c.Client(down).Get(ctx, "filler/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 200 && resp.Header.Revision >= rev
	})
	if _, err := c.Client(c.LeaderIndex()).MoveLeader(ctx, c.Members[down].Embed.Server.ID()); err != nil {
		t.Fatal(err)
	}
	if got := c.WaitLeader(); got != c.Members[down].Embed.Server.ID() {
		t.Fatalf("leader %x, want the restored member", got)
	}
	dcli := c.Client(down)
	ls, err := dcli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []clientv3.LeaseID
	for _, l := range ls.Leases {
		ids = append(ids, l.ID)
	}
	want := []clientv3.LeaseID{kept, added}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("leases on the restored member %v, want %v", ids, want)
	}
	tl, err := dcli.TimeToLive(ctx, added, clientv3.WithAttachedKeys())
	if err != nil || len(tl.Keys) != 100 || tl.TTL < 590 {
		t.Fatalf("added lease on the restored member: %v ttl %d keys %d", err, tl.TTL, len(tl.Keys))
	}
	resp, err := dcli.Revoke(ctx, added)
	if err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, dcli, "sn/added/"); n != 0 {
		t.Fatalf("%d keys left after revoking on the restored member", n)
	}
	for i := range c.Members {
		framework.WaitFor(t, fmt.Sprintf("member %d to apply", i), func() bool {
			r, err := c.Client(i).Get(ctx, "sn/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
			return err == nil && r.Header.Revision >= resp.Header.Revision && r.Count == 1
		})
	}
}

// BenchmarkLeaseKeepAlive measures keep-alive round trips through the
// client's connections: "stream" pipelines requests on long-lived
// streams (what clientv3's KeepAlive does), "once" opens a stream per
// request (clientv3's KeepAliveOnce, which etcd's `benchmark
// lease-keepalive` uses). SYNOD_BENCH_ENDPOINTS=host:port,... runs it
// against an external server (etcd, for comparison) instead of a
// one-member synod.
func BenchmarkLeaseKeepAlive(b *testing.B) {
	var eps []string
	if v := os.Getenv("SYNOD_BENCH_ENDPOINTS"); v != "" {
		eps = strings.Split(v, ",")
	} else {
		eps = []string{newBenchMember(b)}
	}
	const conns = 4
	clis := make([]*clientv3.Client, conns)
	for i := range clis {
		cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		defer cli.Close()
		clis[i] = cli
	}
	ctx := context.Background()
	const leases = 64
	ids := make([]clientv3.LeaseID, leases)
	for i := range ids {
		resp, err := clis[0].Grant(ctx, 600)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = resp.ID
		defer clis[0].Revoke(ctx, resp.ID)
	}
	var next atomic.Int64
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		start := time.Now()
		b.RunParallel(func(p *testing.PB) {
			n := next.Add(1)
			lc := pb.NewLeaseClient(clis[n%conns].ActiveConnection())
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := lc.LeaseKeepAlive(sctx)
			if err != nil {
				b.Error(err)
				return
			}
			id := int64(ids[n%leases])
			for p.Next() {
				if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
					b.Error(err)
					return
				}
				if resp, err := stream.Recv(); err != nil || resp.TTL <= 0 {
					b.Errorf("keep-alive: %v %+v", err, resp)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "keepalives/s")
	})
	b.Run("once", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		start := time.Now()
		b.RunParallel(func(p *testing.PB) {
			n := next.Add(1)
			cli := clis[n%conns]
			id := ids[n%leases]
			for p.Next() {
				if _, err := cli.KeepAliveOnce(ctx, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "keepalives/s")
	})
}

// newBenchMember starts a one-member synod for a benchmark and returns
// its client address.
func newBenchMember(b *testing.B) string {
	b.Helper()
	addr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	dir := b.TempDir()
	peerURL, clientAddr := "http://"+addr(), addr()
	ic, err := server.ParseInitialCluster("b0=" + peerURL)
	if err != nil {
		b.Fatal(err)
	}
	m, err := embed.Start(embed.Config{
		Config: server.Config{
			Name: "b0", DataDir: dir, PeerURLs: []string{peerURL}, ClientURLs: []string{"http://" + clientAddr},
			InitialCluster: ic, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
		ListenPeerURLs: []string{peerURL}, ListenClientURLs: []string{"http://" + clientAddr},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Kill() })
	framework.WaitFor(b, "a leader", func() bool { return m.Server.Leader() != 0 })
	return clientAddr
}

// TestLeaseKeepAliveHalfClosed: a client that sends one keep-alive and at
// once closes its side of the stream (etcdctl lease keep-alive --once
// does) gets its answer from every member, a follower included, which
// forwards the request to the leader: before the fix, a follower ended the
// stream at the client's close, dropping the leader's answer about half
// of the time.
func TestLeaseKeepAliveHalfClosed(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	id := grant(t, c.Client(0), 60)
	for i := range c.Members {
		lc := pb.NewLeaseClient(c.Client(i).ActiveConnection())
		for round := range 20 {
			stream, err := lc.LeaseKeepAlive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
				t.Fatal(err)
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil || resp.ID != int64(id) || resp.TTL <= 0 {
				t.Fatalf("member %d round %d: %v, %v; want the lease's TTL", i, round, resp, err)
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("member %d round %d: after the answer %v, want the end of the stream", i, round, err)
			}
		}
	}
}

//go:build linux

package chaos

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/synod-db/synod/tests/framework"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLeaseOutlivesStaleExpiry is the regression test of a bug this
// harness found: a leader that decided leases had expired, and was then
// paused (SIGSTOP) and deposed, had its revocations forwarded to the new
// leader and applied after it resumed, revoking leases that had been
// revoked and granted again under the same ID meanwhile (here with a TTL
// of 30s). Expiries now carry the term they were decided in and are
// refused from any other term.
func TestLeaseOutlivesStaleExpiry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := synodBinary(t)
	const n = 40
	rounds := 2
	if soak() {
		rounds = 5
	}
	for round := range rounds {
		dir := t.TempDir()
		c, err := StartProcesses(ctx, bin, dir, 3, uint64(round))
		if err != nil {
			t.Fatal(err)
		}
		lost := staleExpiryRound(ctx, t, c, n, int64(round+1)<<32)
		c.Close()
		if len(lost) > 0 {
			t.Fatalf("round %d: %d of %d leases granted again with a TTL of 30s were revoked within seconds: %x", round, len(lost), n, lost)
		}
	}
}

func staleExpiryRound(ctx context.Context, t *testing.T, c *Processes, n int, base int64) []int64 {
	eps, _ := c.Endpoints()
	cli, err := framework.ClientFor(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	lc := pb.NewLeaseClient(cli.ActiveConnection())
	// Leases of 1s, granted over half a second so that their expiries
	// spread over the leader's checks.
	for i := range n {
		if _, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: base + int64(i), TTL: 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond / time.Duration(n))
	}
	lead := c.Leader(ctx)
	if lead < 0 {
		t.Fatal("no leader")
	}
	time.Sleep(700 * time.Millisecond) // the first expiries are due
	if err := c.Pause(lead); err != nil {
		t.Fatal(err)
	}
	var others []string
	for i, ep := range eps {
		if i != lead {
			others = append(others, ep)
		}
	}
	cli2, err := framework.ClientFor(others)
	if err != nil {
		t.Fatal(err)
	}
	defer cli2.Close()
	lc2 := pb.NewLeaseClient(cli2.ActiveConnection())
	// With the leader stopped, revoke every lease and grant it again
	// with a long TTL.
	for i := range n {
		id := base + int64(i)
		for {
			_, err := lc2.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
			if err == nil || definite(err) == ErrLeaseNotFound {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for {
			_, err := lc2.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 30})
			if err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := c.Resume(lead); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	var lost []int64
	for i := range n {
		id := base + int64(i)
		r, err := cli2.TimeToLive(ctx, clientv3.LeaseID(id))
		if err != nil {
			t.Fatal(err)
		}
		if r.TTL <= 0 {
			lost = append(lost, id)
		}
	}
	t.Logf("round: leader %d paused; %d of %d re-granted leases lost", lead, len(lost), n)
	return lost
}

// TestLaggingFollowerReachesNewLeader is the regression test of a bug
// this harness found: a follower cut off while a member was added did not
// know the new member's address, so once that member led, every answer
// the follower sent it was dropped (its transport had no such peer) and
// the follower never caught up while that member led. A member now looks
// up the address of an unknown sender from its peers' member lists.
func TestLaggingFollowerReachesNewLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartProcesses(ctx, synodBinary(t), t.TempDir(), 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lead := c.Leader(ctx)
	f := (lead + 1) % 3
	c.Net.Isolate(c.Name(f))
	eps, _ := c.Endpoints()
	var reachable []string
	for i, ep := range eps {
		if i != f {
			reachable = append(reachable, ep)
		}
	}
	n, err := c.AddMember(ctx, reachable)
	if err != nil {
		t.Fatal(err)
	}
	eps, _ = c.Endpoints()
	cli, err := framework.ClientFor(reachable)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// Hand leadership to the new member, asking whichever member leads
	// now (the addition may have moved leadership already).
	var newID uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := cli.Status(ctx, eps[n])
		if err == nil && st.RaftAppliedIndex > 0 {
			newID = st.Header.MemberId
			if st.Leader == newID {
				break
			}
			err = moveLeaderVia(ctx, cli, reachable, newID)
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not make the new member %s leader: %v", c.Name(n), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.Net.Heal()
	put, err := cli.Put(ctx, "after-heal", "x")
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		st, err := cli.Status(ctx, eps[f])
		if err == nil && st.Header.Revision >= put.Header.Revision {
			return
		}
		if time.Now().After(deadline) {
			var rev int64
			var leader uint64
			if st != nil {
				rev, leader = st.Header.Revision, st.Leader
			}
			t.Fatalf("follower %s is still behind 15s after healing (revision %d, leader %x; the cluster is at %d, led by the added member %s %x)",
				c.Name(f), rev, leader, put.Header.Revision, c.Name(n), newID)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// moveLeaderVia asks the member among eps that leads to hand leadership
// to member to.
func moveLeaderVia(ctx context.Context, cli *clientv3.Client, eps []string, to uint64) error {
	for _, ep := range eps {
		st, err := cli.Status(ctx, ep)
		if err != nil || st.Leader != st.Header.MemberId {
			continue
		}
		lc, err := framework.ClientFor([]string{ep})
		if err != nil {
			return err
		}
		defer lc.Close()
		_, err = lc.MoveLeader(ctx, to)
		return err
	}
	return errors.New("no reachable member leads")
}

// TestLeaderlessMemberTakesForwardedProposals is the regression test of
// a bug this harness found (tier 3, a leader disconnected from the
// network under load): a member without a leader that received a
// proposal forwarded by a peer (MsgProp) blocked in raft.Node.Step until
// it had a leader again, and with it the peer's whole message stream, on
// which that peer's heartbeats and appends would arrive. If every peer
// forwarded one, the member never learned of the new leader. Forwarded
// proposals are now stepped at once (and dropped without a leader).
func TestLeaderlessMemberTakesForwardedProposals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := StartInProcess(t, ctx, t.TempDir(), 3, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lead := c.Leader()
	old := c.Members[lead].Name
	// Clients of both followers write, so that both forward proposals.
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range c.Members {
		if i == lead {
			continue
		}
		cli, err := framework.ClientFor([]string{c.Members[i].ClientAddr})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for wctx.Err() == nil {
					octx, cancel := context.WithTimeout(wctx, 100*time.Millisecond)
					cli.Put(octx, "k", "v") //nolint:errcheck // load only
					cancel()
				}
			}()
		}
	}
	time.Sleep(300 * time.Millisecond)
	// Everything to and from the leader now arrives a second late (no
	// connection breaks): the others elect another leader, the old one
	// steps down, and then receives the proposals they had forwarded.
	c.Net.SetRule(old, Any, LinkRule{Delay: time.Second})
	c.Net.SetRule(Any, old, LinkRule{Delay: time.Second})
	time.Sleep(2 * time.Second)
	wcancel()
	wg.Wait()
	c.Net.Heal()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := c.Members[lead].Embed.Server.Leader()
		if l != 0 && l != c.Members[lead].Embed.Server.ID() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the former leader %s still has no leader 10s after the network healed (its inbound streams are blocked in raft.Node.Step on forwarded proposals)", old)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

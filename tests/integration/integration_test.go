package integration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// TestWritesAndReadsFromEveryMember writes through each member and reads
// every write back from every member, linearizably and serializably.
func TestWritesAndReadsFromEveryMember(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	for i := range c.Members {
		cli := c.Client(i)
		key := fmt.Sprintf("k%d", i)
		if _, err := cli.Put(ctx, key, fmt.Sprintf("v%d", i)); err != nil {
			t.Fatalf("put via member %d: %v", i, err)
		}
		// Linearizable reads on every member see the write at once.
		for j := range c.Members {
			resp, err := c.Client(j).Get(ctx, key)
			if err != nil {
				t.Fatalf("get via member %d: %v", j, err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("member %d: linearizable get %s = %v", j, key, resp.Kvs)
			}
			if resp.Header.ClusterId == 0 || resp.Header.MemberId != c.Members[j].Embed.Server.ID() || resp.Header.RaftTerm == 0 {
				t.Fatalf("member %d: bad header %+v", j, resp.Header)
			}
		}
	}
	resp, err := c.Client(0).Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil || resp.Count != 3 {
		t.Fatalf("prefix get: %v, %+v", err, resp)
	}
}

// TestLeaderKilledDuringWrites kills the leader while clients write and
// checks that no acknowledged write is lost.
func TestLeaderKilledDuringWrites(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	cli := c.Client()
	ctx := framework.Context(t)
	var acked sync.Map
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				if _, err := cli.Put(ctx, key, "x"); err == nil {
					acked.Store(key, true)
					n.Add(1)
				}
			}
		}()
	}
	framework.WaitFor(t, "writes before the kill", func() bool { return n.Load() > 50 })
	li := c.LeaderIndex()
	c.Stop(li)
	before := n.Load()
	framework.WaitFor(t, "writes after the kill", func() bool { return n.Load() > before+50 })
	close(stop)
	wg.Wait()
	c.Restart(li)
	c.WaitLeader()
	for i := range c.Members {
		resp, err := c.Client(i).Get(ctx, "w", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = true
		}
		acked.Range(func(k, _ any) bool {
			if !got[k.(string)] {
				t.Errorf("member %d lost acknowledged write %s", i, k)
			}
			return true
		})
	}
}

// TestRestartFromDisk restarts every member and finds the data again.
func TestRestartFromDisk(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	cli := c.Client(0)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rev := mustRev(t, cli)
	for i := range c.Members {
		c.Stop(i)
	}
	for i := range c.Members {
		c.Restart(i)
	}
	c.WaitLeader()
	for i := range c.Members {
		resp, err := c.Client(i).Get(ctx, "k", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 20 || resp.Header.Revision != rev {
			t.Fatalf("member %d after restart: count %d rev %d, want 20 and %d", i, resp.Count, resp.Header.Revision, rev)
		}
	}
}

func mustRev(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestSnapshotCatchUp stops a member while more than SnapshotCount
// entries are written (so the others compact their logs) and checks it
// catches up by snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) {
		cfg.SnapshotCount = 50
		cfg.SnapshotCatchUpEntries = 10
	})
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	down := (li + 1) % 3
	c.Stop(down)
	cli := c.Client(li)
	for i := range 300 {
		if _, err := cli.Put(ctx, fmt.Sprintf("s%03d", i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	rev := mustRev(t, cli)
	c.Restart(down)
	framework.WaitFor(t, "the restarted member to catch up", func() bool {
		resp, err := c.Client(down).Get(ctx, "s", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 300 && resp.Header.Revision >= rev
	})
}

// TestSnapshotByLogBytes checks the byte bounds on the raft log: with
// large values a snapshot is taken once SnapshotLogBytes were applied,
// long before SnapshotCount entries, the entries kept behind it are
// bounded by SnapshotCatchUpBytes, and a member that was down meanwhile
// catches up by snapshot, not by a replay of the whole log.
func TestSnapshotByLogBytes(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) {
		cfg.SnapshotLogBytes = 2 << 20
		cfg.SnapshotCatchUpBytes = 512 << 10
	})
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	down := (li + 1) % 3
	c.Stop(down)
	cli := c.Client(li)
	for i := range 60 {
		if _, err := cli.Put(ctx, fmt.Sprintf("b%03d", i), strings.Repeat("v", 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	framework.WaitFor(t, "a snapshot on the leader, triggered by the log's bytes", func() bool {
		snaps, _ := filepath.Glob(filepath.Join(datadir.New(c.Members[li].Dir, "").Snap(), "*.snap"))
		return len(snaps) > 0
	})
	rev := mustRev(t, cli)
	c.Restart(down)
	framework.WaitFor(t, "the restarted member to catch up", func() bool {
		resp, err := c.Client(down).Get(ctx, "b", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 60 && resp.Header.Revision >= rev
	})
}

// TestMembershipChanges adds a learner, promotes it once it caught up,
// and removes an original member.
func TestMembershipChanges(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	cli := c.Client(0, 1, 2)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("m%02d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	nm := c.AddMember("m3")
	add, err := cli.MemberAddAsLearner(ctx, []string{nm.PeerURL})
	if err != nil {
		t.Fatal(err)
	}
	var initial []string
	for _, m := range add.Members {
		name := m.Name
		if m.ID == add.Member.ID {
			name = "m3"
		}
		initial = append(initial, name+"="+m.PeerURLs[0])
	}
	ic, err := server.ParseInitialCluster(strings.Join(initial, ","))
	if err != nil {
		t.Fatal(err)
	}
	c.Start(nm, ic, "existing")
	if nm.Embed.Server.ID() != add.Member.ID {
		t.Fatalf("new member has ID %x, want %x", nm.Embed.Server.ID(), add.Member.ID)
	}
	// Promote through a follower: it forwards to the leader.
	follower := (c.LeaderIndex() + 1) % 3
	framework.WaitFor(t, "the learner to be promoted", func() bool {
		_, err := c.Client(follower).MemberPromote(ctx, add.Member.ID)
		if err != nil && !strings.Contains(err.Error(), "in sync with leader") {
			t.Fatalf("promote: %v", err)
		}
		return err == nil
	})
	// The new member serves linearizable reads once it has applied its
	// own promotion.
	framework.WaitFor(t, "the promoted member to serve reads", func() bool {
		resp, err := c.Client(3).Get(ctx, "m", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 20
	})
	// Remove a member that is not the leader.
	li := c.LeaderIndex()
	victim := (li + 1) % 4
	if _, err := cli.MemberRemove(ctx, c.Members[victim].Embed.Server.ID()); err != nil {
		t.Fatal(err)
	}
	framework.WaitFor(t, "the removed member to stop", func() bool {
		select {
		case <-c.Members[victim].Embed.Server.Removed():
			return true
		default:
			return false
		}
	})
	c.Stop(victim)
	list, err := c.Client(li).MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 {
		t.Fatalf("member list after remove: %v", list.Members)
	}
	if _, err := c.Client(li).Put(ctx, "after", "remove"); err != nil {
		t.Fatal(err)
	}
}

// TestMoveLeader moves leadership to each follower in turn.
func TestMoveLeader(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	for range 2 {
		li := c.LeaderIndex()
		target := c.Members[(li+1)%3].Embed.Server.ID()
		if _, err := c.Client(li).MoveLeader(ctx, target); err != nil {
			t.Fatal(err)
		}
		if got := c.WaitLeader(); got != target {
			t.Fatalf("leader %x after move, want %x", got, target)
		}
	}
	// Only the leader can move leadership.
	li := c.LeaderIndex()
	follower := (li + 1) % 3
	_, err := c.Client(follower).MoveLeader(ctx, c.Members[li].Embed.Server.ID())
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrNotLeader) && !strings.Contains(fmt.Sprint(err), "not leader") {
		t.Fatalf("move leader via follower: %v", err)
	}
}

// TestErrors checks that bad requests get etcd's errors.
func TestErrors(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, func(cfg *server.Config) { cfg.MaxTxnOps = 4; cfg.MaxRequestBytes = 4096 })
	ctx := framework.Context(t)
	cli := c.Client()
	for i := range 5 {
		if _, err := cli.Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rev := mustRev(t, cli)
	if _, err := cli.Compact(ctx, rev-2, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	check := func(name string, err, want error) {
		t.Helper()
		if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
	_, err := cli.Get(ctx, "k", clientv3.WithRev(rev-3))
	check("compacted", err, rpctypes.ErrGRPCCompacted)
	_, err = cli.Get(ctx, "k", clientv3.WithRev(rev+10))
	check("future", err, rpctypes.ErrGRPCFutureRev)
	_, err = cli.Put(ctx, "", "v")
	check("empty key", err, rpctypes.ErrGRPCEmptyKey)
	_, err = cli.Put(ctx, "big", strings.Repeat("x", 5000))
	check("too large", err, rpctypes.ErrGRPCRequestTooLarge)
	var ops []clientv3.Op
	for i := range 5 {
		ops = append(ops, clientv3.OpPut(fmt.Sprint(i), "v"))
	}
	_, err = cli.Txn(ctx).Then(ops...).Commit()
	check("too many ops", err, rpctypes.ErrGRPCTooManyOps)
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("a", "1"), clientv3.OpPut("a", "2")).Commit()
	check("duplicate key", err, rpctypes.ErrGRPCDuplicateKey)
	_, err = cli.Compact(ctx, rev+100)
	check("compact future", err, rpctypes.ErrGRPCFutureRev)
	_, err = cli.MemberRemove(ctx, 12345)
	check("unknown member", err, rpctypes.ErrGRPCMemberNotFound)
	_, err = cli.MemberPromote(ctx, c.Members[0].Embed.Server.ID())
	check("promote voter", err, rpctypes.ErrGRPCMemberNotLearner)
	// The store is unchanged by all of the above.
	if got := mustRev(t, cli); got != rev {
		t.Fatalf("revision %d after bad requests, want %d", got, rev)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil || string(resp.Kvs[0].Value) != "4" || !slices.Equal([]int64{resp.Kvs[0].Version}, []int64{5}) {
		t.Fatalf("k after bad requests: %v %+v", err, resp)
	}
}

// TestWritesBeforeFirstLeader sends writes to the first member of a new
// three-member cluster before the others start, so before any leader can
// be elected: they wait for one and then succeed. It is the regression
// test of writes failing with "leader changed" although they committed: a
// request waiting for a leader was registered under the term it arrived
// in, and the new leader's first entry failed it as if its proposal had
// been lost with an old leader.
func TestWritesBeforeFirstLeader(t *testing.T) {
	t.Parallel()
	c := framework.PlanCluster(t, 3, "m", nil)
	ic := c.InitialCluster()
	c.Start(c.Members[0], ic, "new")
	cli := c.Client(0)
	ctx := framework.Context(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cli.Put(ctx, fmt.Sprintf("early/%d", i), "v"); err != nil {
				errs <- err
			}
		}()
	}
	// The writes are under way (or about to be) on a member that cannot
	// elect a leader alone; now the quorum arrives.
	framework.WaitFor(t, "20 writes waiting for a leader", func() bool { return c.Members[0].Embed.Server.Leader() == 0 })
	c.Start(c.Members[1], ic, "new")
	c.Start(c.Members[2], ic, "new")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("write sent before the first leader: %v", err)
	}
	if n := countPrefix(t, cli, "early/"); n != 20 {
		t.Fatalf("%d of 20 early writes stored", n)
	}
}

// TestLoneMemberElectsItselfAtOnce checks that a one-member cluster, when
// started and when restarted, leads after a tick instead of a whole
// (here 5s) election timeout.
func TestLoneMemberElectsItselfAtOnce(t *testing.T) {
	t.Parallel()
	tune := func(cfg *server.Config) {
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.ElectionTimeout = 5 * time.Second
	}
	start := time.Now()
	c := framework.NewCluster(t, 1, tune)
	first := time.Since(start)
	c.Stop(0)
	start = time.Now()
	c.Restart(0)
	c.WaitLeader()
	again := time.Since(start)
	if first > 2500*time.Millisecond || again > 2500*time.Millisecond {
		t.Fatalf("leader after %v (start) and %v (restart); the election timeout is 5s, the advanced one a tick", first, again)
	}
	t.Logf("leader after %v (start) and %v (restart)", first, again)
}

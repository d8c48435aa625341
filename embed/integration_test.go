package embed

import (
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
)

// TestWritesAndReadsFromEveryMember writes through each member and reads
// every write back from every member, linearizably and serializably.
func TestWritesAndReadsFromEveryMember(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	for i := range c.members {
		cli := c.client(i)
		key := fmt.Sprintf("k%d", i)
		if _, err := cli.Put(ctx, key, fmt.Sprintf("v%d", i)); err != nil {
			t.Fatalf("put via member %d: %v", i, err)
		}
		// Linearizable reads on every member see the write at once.
		for j := range c.members {
			resp, err := c.client(j).Get(ctx, key)
			if err != nil {
				t.Fatalf("get via member %d: %v", j, err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("member %d: linearizable get %s = %v", j, key, resp.Kvs)
			}
			if resp.Header.ClusterId == 0 || resp.Header.MemberId != c.members[j].m.Server.ID() || resp.Header.RaftTerm == 0 {
				t.Fatalf("member %d: bad header %+v", j, resp.Header)
			}
		}
	}
	resp, err := c.client(0).Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil || resp.Count != 3 {
		t.Fatalf("prefix get: %v, %+v", err, resp)
	}
}

// TestLeaderKilledDuringWrites kills the leader while clients write and
// checks that no acknowledged write is lost.
func TestLeaderKilledDuringWrites(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	cli := c.client()
	ctx := ctxT(t)
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
	waitFor(t, "writes before the kill", func() bool { return n.Load() > 50 })
	li := c.leaderIndex()
	c.stop(li)
	before := n.Load()
	waitFor(t, "writes after the kill", func() bool { return n.Load() > before+50 })
	close(stop)
	wg.Wait()
	c.restart(li)
	c.waitLeader()
	for i := range c.members {
		resp, err := c.client(i).Get(ctx, "w", clientv3.WithPrefix(), clientv3.WithKeysOnly())
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

// waitFor polls cond until it holds or 20s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRestartFromDisk restarts every member and finds the data again.
func TestRestartFromDisk(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	cli := c.client(0)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rev := mustRev(t, cli)
	for i := range c.members {
		c.stop(i)
	}
	for i := range c.members {
		c.restart(i)
	}
	c.waitLeader()
	for i := range c.members {
		resp, err := c.client(i).Get(ctx, "k", clientv3.WithPrefix())
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
	resp, err := cli.Get(ctxT(t), "any")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestSnapshotCatchUp stops a member while more than SnapshotCount
// entries are written (so the others compact their logs) and checks it
// catches up by snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *server.Config) {
		cfg.SnapshotCount = 50
		cfg.SnapshotCatchUpEntries = 10
	})
	ctx := ctxT(t)
	li := c.leaderIndex()
	down := (li + 1) % 3
	c.stop(down)
	cli := c.client(li)
	for i := range 300 {
		if _, err := cli.Put(ctx, fmt.Sprintf("s%03d", i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	rev := mustRev(t, cli)
	c.restart(down)
	waitFor(t, "the restarted member to catch up", func() bool {
		resp, err := c.client(down).Get(ctx, "s", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 300 && resp.Header.Revision >= rev
	})
}

// TestSnapshotByLogBytes checks the byte bounds on the raft log: with
// large values a snapshot is taken once SnapshotLogBytes were applied,
// long before SnapshotCount entries, the entries kept behind it are
// bounded by SnapshotCatchUpBytes, and a member that was down meanwhile
// catches up by snapshot, not by a replay of the whole log.
func TestSnapshotByLogBytes(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *server.Config) {
		cfg.SnapshotLogBytes = 2 << 20
		cfg.SnapshotCatchUpBytes = 512 << 10
	})
	ctx := ctxT(t)
	li := c.leaderIndex()
	down := (li + 1) % 3
	c.stop(down)
	cli := c.client(li)
	for i := range 60 {
		if _, err := cli.Put(ctx, fmt.Sprintf("b%03d", i), strings.Repeat("v", 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a snapshot on the leader, triggered by the log's bytes", func() bool {
		snaps, _ := filepath.Glob(filepath.Join(datadir.New(c.members[li].dir, "").Snap(), "*.snap"))
		return len(snaps) > 0
	})
	rev := mustRev(t, cli)
	c.restart(down)
	waitFor(t, "the restarted member to catch up", func() bool {
		resp, err := c.client(down).Get(ctx, "b", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 60 && resp.Header.Revision >= rev
	})
}

// TestMembershipChanges adds a learner, promotes it once it caught up,
// and removes an original member.
func TestMembershipChanges(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	cli := c.client(0, 1, 2)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("m%02d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	nm := &testMember{name: "m3", dir: t.TempDir(), peerURL: "http://" + freeAddr(t), clientAddr: freeAddr(t)}
	add, err := cli.MemberAddAsLearner(ctx, []string{nm.peerURL})
	if err != nil {
		t.Fatal(err)
	}
	c.members = append(c.members, nm)
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
	c.start(nm, ic, "existing")
	if nm.m.Server.ID() != add.Member.ID {
		t.Fatalf("new member has ID %x, want %x", nm.m.Server.ID(), add.Member.ID)
	}
	// Promote through a follower: it forwards to the leader.
	follower := (c.leaderIndex() + 1) % 3
	waitFor(t, "the learner to be promoted", func() bool {
		_, err := c.client(follower).MemberPromote(ctx, add.Member.ID)
		if err != nil && !strings.Contains(err.Error(), "in sync with leader") {
			t.Fatalf("promote: %v", err)
		}
		return err == nil
	})
	// The new member serves linearizable reads once it has applied its
	// own promotion.
	waitFor(t, "the promoted member to serve reads", func() bool {
		resp, err := c.client(3).Get(ctx, "m", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 20
	})
	// Remove a member that is not the leader.
	li := c.leaderIndex()
	victim := (li + 1) % 4
	if _, err := cli.MemberRemove(ctx, c.members[victim].m.Server.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed member to stop", func() bool {
		select {
		case <-c.members[victim].m.Server.Removed():
			return true
		default:
			return false
		}
	})
	c.stop(victim)
	list, err := c.client(li).MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 {
		t.Fatalf("member list after remove: %v", list.Members)
	}
	if _, err := c.client(li).Put(ctx, "after", "remove"); err != nil {
		t.Fatal(err)
	}
}

// TestMoveLeader moves leadership to each follower in turn.
func TestMoveLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t)
	for range 2 {
		li := c.leaderIndex()
		target := c.members[(li+1)%3].m.Server.ID()
		if _, err := c.client(li).MoveLeader(ctx, target); err != nil {
			t.Fatal(err)
		}
		if got := c.waitLeader(); got != target {
			t.Fatalf("leader %x after move, want %x", got, target)
		}
	}
	// Only the leader can move leadership.
	li := c.leaderIndex()
	follower := (li + 1) % 3
	_, err := c.client(follower).MoveLeader(ctx, c.members[li].m.Server.ID())
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrNotLeader) && !strings.Contains(fmt.Sprint(err), "not leader") {
		t.Fatalf("move leader via follower: %v", err)
	}
}

// TestErrors checks that bad requests get etcd's errors.
func TestErrors(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *server.Config) { cfg.MaxTxnOps = 4; cfg.MaxRequestBytes = 4096 })
	ctx := ctxT(t)
	cli := c.client()
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
	_, err = cli.MemberPromote(ctx, c.members[0].m.Server.ID())
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
	c := &testCluster{t: t}
	var initial []string
	for i := range 3 {
		tm := &testMember{name: fmt.Sprintf("m%d", i), dir: filepath.Join(t.TempDir(), fmt.Sprintf("m%d", i)),
			peerURL: "http://" + freeAddr(t), clientAddr: freeAddr(t)}
		c.members = append(c.members, tm)
		initial = append(initial, tm.name+"="+tm.peerURL)
	}
	ic, err := server.ParseInitialCluster(strings.Join(initial, ","))
	if err != nil {
		t.Fatal(err)
	}
	c.start(c.members[0], ic, "new")
	defer func() {
		for _, tm := range c.members {
			if tm.m != nil {
				tm.m.Kill()
			}
		}
	}()
	cli := c.client(0)
	ctx := ctxT(t)
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
	waitFor(t, "20 writes waiting for a leader", func() bool { return c.members[0].m.Server.Leader() == 0 })
	c.start(c.members[1], ic, "new")
	c.start(c.members[2], ic, "new")
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
	tune := func(cfg *server.Config) {
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.ElectionTimeout = 5 * time.Second
	}
	start := time.Now()
	c := newTestCluster(t, 1, tune)
	first := time.Since(start)
	c.stop(0)
	start = time.Now()
	c.restart(0)
	c.waitLeader()
	again := time.Since(start)
	if first > 2500*time.Millisecond || again > 2500*time.Millisecond {
		t.Fatalf("leader after %v (start) and %v (restart); the election timeout is 5s, the advanced one a tick", first, again)
	}
	t.Logf("leader after %v (start) and %v (restart)", first, again)
}

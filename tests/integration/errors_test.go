package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// TestNoQuorumErrors stops two of three members and checks the errors the
// survivor gives: no leader for clients that require one, a timeout for a
// write, and a refused membership change.
func TestNoQuorumErrors(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) { cfg.RequestTimeout = time.Second })
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	survivor := (li + 1) % 3
	cli := c.Client(survivor)
	if _, err := cli.Put(ctx, "before", "x"); err != nil {
		t.Fatal(err)
	}
	// With one member down, adding a voter is refused: the cluster could
	// not reach quorum with it. The leader counts the member as down once
	// its stream to it breaks, a moment after the member stops.
	down := (li + 2) % 3
	downID := c.Members[down].Embed.Server.ID()
	c.Stop(down)
	framework.WaitFor(t, "the leader to see the stopped member down", func() bool { return !c.Members[li].Embed.Server.PeerActive(downID) })
	_, err := cli.MemberAdd(ctx, []string{"http://127.0.0.1:1"})
	if rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCMemberNotEnoughStarted) {
		t.Fatalf("member add with a member down: %v", err)
	}
	c.Stop(li)
	framework.WaitFor(t, "the survivor to lose its leader", func() bool { return c.Members[survivor].Embed.Server.Leader() == 0 })
	_, err = cli.Get(clientv3.WithRequireLeader(ctx), "before")
	if rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader) {
		t.Fatalf("get with require-leader and no leader: %v", err)
	}
	// A serializable read is still served.
	resp, err := cli.Get(ctx, "before", clientv3.WithSerializable())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("serializable get without quorum: %v %v", err, resp)
	}
	// A write times out; clientv3 does not retry writes.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cli.Put(wctx, "after", "x")
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("put without quorum: %v", err)
	}
}

// TestWriteTimesOutOnLeaderWithoutQuorum stops both followers and
// writes to the leader while it still leads: the write is proposed at
// once and can never commit, so it must fail with the request timeout,
// neither sooner nor hanging until the client gives up.
func TestWriteTimesOutOnLeaderWithoutQuorum(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	c := framework.NewCluster(t, 3, func(cfg *server.Config) { cfg.RequestTimeout = timeout })
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	cli := c.Client(li)
	if _, err := cli.Put(ctx, "before", "x"); err != nil {
		t.Fatal(err)
	}
	c.Stop((li + 1) % 3)
	c.Stop((li + 2) % 3)
	wctx, cancel := context.WithTimeout(ctx, 10*timeout)
	defer cancel()
	start := time.Now()
	_, err := cli.Put(wctx, "after", "x")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("put on a leader without quorum: %v after %v", err, took)
	}
	if took < timeout || took > 3*timeout {
		t.Fatalf("put failed after %v, want about the request timeout (%v)", took, timeout)
	}
}

// TestLearnerNotReady checks that a learner that has not caught up (it
// was never started) cannot be promoted.
func TestLearnerNotReady(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	cli := c.Client(c.LeaderIndex())
	add, err := cli.MemberAddAsLearner(ctx, []string{"http://" + framework.FreeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.MemberPromote(ctx, add.Member.ID)
	if rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCLearnerNotReady) {
		t.Fatalf("promote of a learner that never started: %v", err)
	}
	if _, err := cli.MemberAdd(ctx, add.Member.PeerURLs); rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCPeerURLExist) {
		t.Fatalf("adding the same peer URL twice: %v", err)
	}
	if _, err := cli.MemberRemove(ctx, add.Member.ID); err != nil {
		t.Fatalf("removing the learner: %v", err)
	}
}

// TestNoSpaceAlarm fills a member past its quota: writes that store data
// are refused with NOSPACE until the alarm is disarmed, reads and deletes
// go on.
func TestNoSpaceAlarm(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, func(cfg *server.Config) { cfg.QuotaBackendBytes = 1 })
	ctx := framework.Context(t)
	cli := c.Client()
	_, err := cli.Put(ctx, "k", "v")
	if rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCNoSpace) {
		t.Fatalf("put over quota: %v", err)
	}
	framework.WaitFor(t, "the NOSPACE alarm", func() bool {
		resp, err := cli.AlarmList(ctx)
		return err == nil && len(resp.Alarms) == 1 && resp.Alarms[0].Alarm == pb.AlarmType_NOSPACE
	})
	if _, err := cli.Get(ctx, "k"); err != nil {
		t.Fatalf("read under the alarm: %v", err)
	}
	if _, err := cli.Delete(ctx, "k"); err != nil {
		t.Fatalf("a delete under the alarm (which frees space) was refused: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("k", "v")).Commit(); rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCNoSpace) {
		t.Fatalf("a transaction that puts under the alarm: %v", err)
	}
	st, err := cli.Status(ctx, c.Members[0].ClientAddr)
	if err != nil || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "NOSPACE") {
		t.Fatalf("status under the alarm: %v %v", err, st)
	}
	resp, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: c.Members[0].Embed.Server.ID(), Alarm: pb.AlarmType_NOSPACE})
	if err != nil || len(resp.Alarms) != 1 {
		t.Fatalf("disarm: %v %v", err, resp)
	}
	if resp, err := cli.AlarmList(ctx); err != nil || len(resp.Alarms) != 0 {
		t.Fatalf("alarms after disarm: %v %v", err, resp)
	}
}

// TestQuotaMeasuresWhatUsersStored checks that the quota is compared with
// the logical size of the key space and its history, as etcd's with its
// database: a 1 MiB quota holds about 1 MiB of 10 KiB values (less
// etcd's per-put overhead) before NOSPACE, however much more the
// engine's logs and tables take on disk, and Status reports that size
// as dbSizeInUse.
func TestQuotaMeasuresWhatUsersStored(t *testing.T) {
	t.Parallel()
	const quota, size = 1 << 20, 10 << 10
	c := framework.NewCluster(t, 1, func(cfg *server.Config) { cfg.QuotaBackendBytes = quota })
	ctx := framework.Context(t)
	cli := c.Client()
	n := 0
	for ; n < 1000; n++ {
		_, err := cli.Put(ctx, fmt.Sprintf("k%04d", n), strings.Repeat("v", size))
		if rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrGRPCNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if low, high := quota/(size+256+64), quota/size+1; n < low || n > high {
		t.Fatalf("NOSPACE after %d puts of %d bytes under a %d-byte quota; want %d to %d", n, size, quota, low, high)
	}
	st, err := cli.Status(ctx, c.Members[0].ClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	if st.DbSizeInUse < int64(n*size) || st.DbSizeInUse > quota {
		t.Fatalf("dbSizeInUse %d after %d puts of %d bytes, quota %d", st.DbSizeInUse, n, size, quota)
	}
}

// TestNoSpaceRecovers follows etcd's documented recovery from NOSPACE
// (and etcd's TestAlarm): fill the quota with versions of one key,
// compact, defragment and disarm; a small write then goes through, and
// /health names the alarm while it is active.
func TestNoSpaceRecovers(t *testing.T) {
	t.Parallel()
	const page = 4096
	c := framework.NewCluster(t, 1, func(cfg *server.Config) { cfg.QuotaBackendBytes = 13 * page })
	ctx := framework.Context(t)
	cli := c.Client()
	small := strings.Repeat("a", 64)
	if _, err := cli.Put(ctx, "1st_test", small); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		_, err := cli.Put(ctx, "2nd_test", strings.Repeat("b", page))
		if rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrGRPCNoSpace) {
			break
		}
		if err != nil || i > 100 {
			t.Fatalf("put %d of a page: %v (no NOSPACE yet)", i, err)
		}
	}
	health := func() (int, string) {
		resp, err := http.Get("http://" + c.Members[0].ClientAddr + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	framework.WaitFor(t, "/health to name the NOSPACE alarm", func() bool {
		code, body := health()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "ALARM NOSPACE")
	})
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cli.Status(ctx, c.Members[0].ClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if _, err := cli.Defragment(ctx, c.Members[0].ClientAddr); err != nil {
		t.Fatalf("defragment: %v", err)
	}
	for _, a := range alarms.Alarms {
		if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			t.Fatalf("disarm: %v", err)
		}
	}
	if _, err := cli.Put(ctx, "4th_test", small); err != nil {
		st, _ := cli.Status(ctx, c.Members[0].ClientAddr)
		t.Fatalf("a small put after compaction, defragmentation and disarm: %v (db in use %d of quota %d)", err, st.DbSizeInUse, 13*page)
	}
	if code, body := health(); code != http.StatusOK {
		t.Fatalf("/health after the recovery: %d %s", code, body)
	}
}

package integration

import (
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// TestAddVoterToLoneMember checks etcd's documented path for growing a
// cluster restored from one member's backup: the lone member accepts a
// second voter although it is not started yet.
func TestAddVoterToLoneMember(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client()
	add, err := cli.MemberAdd(ctx, []string{"http://" + framework.FreeAddr(t)})
	if err != nil {
		t.Fatalf("adding a voter to a one-member cluster: %v", err)
	}
	if len(add.Members) != 2 {
		t.Fatalf("members after the add: %v", add.Members)
	}
}

// TestStrictReconfigCheckOff checks that --strict-reconfig-check=false
// lets a change through that the check refuses: adding a voter while a
// member of three is down.
func TestStrictReconfigCheckOff(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) { cfg.SkipReconfigCheck = true })
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	down := (li + 1) % 3
	downID := c.Members[down].Embed.Server.ID()
	c.Stop(down)
	framework.WaitFor(t, "the leader to see the stopped member down", func() bool { return !c.Members[li].Embed.Server.PeerActive(downID) })
	if _, err := c.Client(li).MemberAdd(ctx, []string{"http://" + framework.FreeAddr(t)}); err != nil {
		t.Fatalf("member add with a member down and the check off: %v", err)
	}
}

// TestMaxLearners checks --max-learners: the learner beyond the bound is
// refused with etcd's error.
func TestMaxLearners(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client()
	if _, err := cli.MemberAddAsLearner(ctx, []string{"http://" + framework.FreeAddr(t)}); err != nil {
		t.Fatalf("first learner: %v", err)
	}
	_, err := cli.MemberAddAsLearner(ctx, []string{"http://" + framework.FreeAddr(t)})
	if rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCTooManyLearners) {
		t.Fatalf("second learner with --max-learners 1: %v, want %v", err, rpctypes.ErrGRPCTooManyLearners)
	}
}

// TestReadyNotify checks what "ready to serve client requests" promises:
// once ReadyNotify is closed, the member is in the member list under its
// name and knows a leader.
func TestReadyNotify(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	for i, m := range c.Members {
		select {
		case <-m.Embed.Server.ReadyNotify():
		case <-ctx.Done():
			t.Fatalf("%s never became ready", m.Name)
		}
		if m.Embed.Server.Leader() == 0 {
			t.Fatalf("%s is ready without a leader", m.Name)
		}
		// Asked of the member itself: it applied its own publication.
		resp, err := c.Client(i).MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mm := range resp.Members {
			found = found || (mm.ID == m.Embed.Server.ID() && mm.Name == m.Name && len(mm.ClientURLs) > 0)
		}
		if !found {
			t.Fatalf("%s is ready but not published: %v", m.Name, resp.Members)
		}
	}
}

// TestAddWithMemberDown: with one member of three down, adding a voter is
// refused with ErrNotEnoughStarted and adding a learner with
// ErrUnhealthy, as etcd refuses them (the new member counts as down, so
// the change would leave the cluster one failure from losing quorum).
func TestAddWithMemberDown(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	down := (li + 1) % 3
	downID := c.Members[down].Embed.Server.ID()
	c.Stop(down)
	framework.WaitFor(t, "the leader to see the stopped member down", func() bool { return !c.Members[li].Embed.Server.PeerActive(downID) })
	if _, err := c.Client(li).MemberAdd(ctx, []string{"http://" + framework.FreeAddr(t)}); !sameErr(err, rpctypes.ErrGRPCMemberNotEnoughStarted) {
		t.Errorf("voter add with a member down: %v, want %v", err, rpctypes.ErrGRPCMemberNotEnoughStarted)
	}
	if _, err := c.Client(li).MemberAddAsLearner(ctx, []string{"http://" + framework.FreeAddr(t)}); !sameErr(err, rpctypes.ErrGRPCUnhealthy) {
		t.Errorf("learner add with a member down: %v, want %v", err, rpctypes.ErrGRPCUnhealthy)
	}
}

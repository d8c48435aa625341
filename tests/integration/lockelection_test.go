package integration

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/api/v3electionpb"
	"github.com/synod-db/synod/api/v3lockpb"
	"github.com/synod-db/synod/tests/framework"
)

// TestLockService: the member-side lock (etcd's v3lock) excludes: a
// second Lock of the same name, through another member, waits until the
// first holder unlocks; a holder whose lease is revoked loses the lock.
func TestLockService(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	a := v3lockpb.NewLockClient(c.Client(0).ActiveConnection())
	b := v3lockpb.NewLockClient(c.Client(1).ActiveConnection())
	leaseA, leaseB := grant(t, c.Client(0), 60), grant(t, c.Client(1), 60)

	held, err := a.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mu"), Lease: int64(leaseA)})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *v3lockpb.LockResponse, 1)
	go func() {
		resp, err := b.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mu"), Lease: int64(leaseB)})
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	select {
	case <-got:
		t.Fatal("a second holder got the lock while the first held it")
	case <-time.After(300 * time.Millisecond): // the waiter is blocked, as it must be
	}
	if _, err := a.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
		t.Fatal(err)
	}
	second := <-got
	if second == nil || string(second.Key) == string(held.Key) || second.Header.Revision <= held.Header.Revision {
		t.Fatalf("second holder: %v (first %v)", second, held)
	}
	// A lock held by a revoked lease is free again.
	if _, err := c.Client(1).Revoke(ctx, leaseB); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.Lock(lctx, &v3lockpb.LockRequest{Name: []byte("mu"), Lease: int64(leaseA)}); err != nil {
		t.Fatalf("lock after the holder's lease was revoked: %v", err)
	}
}

// TestElectionService: the member-side election (etcd's v3election): a
// campaign leads, Leader and Observe report its proclamations, a second
// campaigner waits and leads once the first resigns, and requests
// without a leader key or on an election without a leader get etcd's
// errors.
func TestElectionService(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	e0 := v3electionpb.NewElectionClient(c.Client(0).ActiveConnection())
	e1 := v3electionpb.NewElectionClient(c.Client(1).ActiveConnection())
	name := []byte("election")

	first, err := e0.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(grant(t, c.Client(0), 60)), Value: []byte("v1")})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := e1.Observe(ctx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	expectObserved := func(value string) {
		t.Helper()
		resp, err := obs.Recv()
		if err != nil || string(resp.Kv.Value) != value {
			t.Fatalf("observed %v, %v; want %q", resp, err, value)
		}
	}
	expectObserved("v1")
	if _, err := e0.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: first.Leader, Value: []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	expectObserved("v2")
	if l, err := e1.Leader(ctx, &v3electionpb.LeaderRequest{Name: name}); err != nil || string(l.Kv.Value) != "v2" || string(l.Kv.Key) != string(first.Leader.Key) {
		t.Fatalf("leader: %v, %v", l, err)
	}

	next := make(chan *v3electionpb.CampaignResponse, 1)
	go func() {
		resp, err := e1.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(grant(t, c.Client(1), 60)), Value: []byte("w1")})
		if err != nil {
			t.Error(err)
		}
		next <- resp
	}()
	select {
	case <-next:
		t.Fatal("a second campaigner led while the first did")
	case <-time.After(300 * time.Millisecond): // waiting, as it must
	}
	if _, err := e0.Resign(ctx, &v3electionpb.ResignRequest{Leader: first.Leader}); err != nil {
		t.Fatal(err)
	}
	if second := <-next; second == nil || string(second.Leader.Key) == string(first.Leader.Key) {
		t.Fatalf("second leader: %v", second)
	}
	expectObserved("w1")

	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"proclaim without a leader key", func() error {
			_, err := e0.Proclaim(ctx, &v3electionpb.ProclaimRequest{Value: []byte("x")})
			return err
		}(), `"leader" field must be provided`},
		{"resign without a leader key", func() error { _, err := e0.Resign(ctx, &v3electionpb.ResignRequest{}); return err }(), `"leader" field must be provided`},
		{"leader of an empty election", func() error {
			_, err := e0.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("nobody")})
			return err
		}(), "election: no leader"},
		{"proclaim by a former leader", func() error {
			_, err := e0.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: first.Leader, Value: []byte("x")})
			return err
		}(), "election: not leader"},
	} {
		if s, _ := status.FromError(tc.err); s.Code() != codes.Unknown || s.Message() != tc.want {
			t.Errorf("%s: %v, want Unknown %q (etcd's)", tc.name, tc.err, tc.want)
		}
	}
}

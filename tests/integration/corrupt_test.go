package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// TestCorruptionDetected: with --corrupt-check-time, a follower whose key
// space silently differs (a write that bypassed raft, as a bad disk or a
// bug would) is found by the leader's periodic hash check: the CORRUPT
// alarm names it and every write is refused with etcd's error, while
// reads go on. When the leader is the one that differs, the followers
// that agree outvote it.
func TestCorruptionDetected(t *testing.T) {
	t.Parallel()
	for _, who := range []string{"follower", "leader"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			c := framework.NewCluster(t, 3, func(cfg *server.Config) { cfg.CorruptCheckTime = 50 * time.Millisecond })
			ctx := framework.Context(t)
			cli := c.Client(c.LeaderIndex())
			for i := range 10 {
				if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
					t.Fatal(err)
				}
			}
			victim := c.Members[c.LeaderIndex()].Embed.Server
			if who == "follower" {
				victim = c.Members[(c.LeaderIndex()+1)%len(c.Members)].Embed.Server
			}
			// The bad write shifts the victim's revisions by one from here on.
			if _, _, err := victim.KV().Put(0, []byte("k0"), []byte("bit rot"), 0, mvcc.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				// The check may find the corruption before the last put.
				if _, err := cli.Put(ctx, "after", "v"); err != nil && !errors.Is(err, rpctypes.ErrCorrupt) {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, err := cli.AlarmList(ctx)
				if err == nil && len(resp.Alarms) > 0 {
					a := resp.Alarms[0]
					if a.Alarm != pb.AlarmType_CORRUPT || a.MemberID != victim.ID() {
						t.Fatalf("alarm %v, want CORRUPT for member %x", a, victim.ID())
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no CORRUPT alarm raised (last: %v, %v)", resp, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := cli.Put(ctx, "more", "v"); !errors.Is(err, rpctypes.ErrCorrupt) {
				t.Fatalf("put with the CORRUPT alarm raised: %v, want %v", err, rpctypes.ErrCorrupt)
			}
			// Reads go on.
			if _, err := cli.Get(ctx, "k1", clientv3.WithSerializable()); err != nil {
				t.Fatalf("read with the CORRUPT alarm raised: %v", err)
			}
		})
	}
}

// TestInitialCorruptCheck: a member whose data went bad (a write around
// raft shifts its revisions by one) and that restarts while the others
// moved on refuses to start with the InitialCorruptCheck gate, naming
// the inconsistency; a healthy member restarts with it.
func TestInitialCorruptCheck(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) { cfg.InitialCorruptCheck = true })
	ctx := framework.Context(t)
	lead := c.LeaderIndex()
	cli := c.Client(lead)
	for i := range 10 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	healthy, victim := (lead+1)%3, (lead+2)%3
	c.Kill(healthy)
	if err := c.RestartMember(healthy); err != nil {
		t.Fatalf("a healthy member with the initial check: %v", err)
	}
	if _, _, err := c.Members[victim].Embed.Server.KV().Put(0, []byte("k0"), []byte("bit rot"), 0, mvcc.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "after", "v"); err != nil {
		t.Fatal(err)
	}
	c.Kill(victim)
	if _, err := cli.Put(ctx, "while down", "v"); err != nil {
		t.Fatal(err)
	}
	err := c.RestartMember(victim)
	if err == nil || !strings.Contains(err.Error(), "found data inconsistency with peers") {
		t.Fatalf("restart on corrupted data: %v, want a refusal", err)
	}
}

package integration

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// TestSnapshotSaveAndRestore saves a snapshot through the Maintenance API,
// restores it into a new 3-member cluster and reads the keys back.
func TestSnapshotSaveAndRestore(t *testing.T) {
	t.Parallel()
	src := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := src.Client()
	for i := range 10 {
		if _, err := cli.Put(ctx, fmt.Sprintf("r%d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc.Snapshot); err != nil {
		t.Fatal(err)
	}
	rc.Snapshot.Close()
	f.Close()

	c := framework.PlanCluster(t, 3, "n", nil)
	ic := c.InitialCluster()
	for _, tm := range c.Members {
		err := server.Restore(server.RestoreConfig{SnapshotPath: path, Name: tm.Name, DataDir: tm.Dir, PeerURLs: []string{tm.PeerURL}, InitialCluster: ic, InitialClusterToken: "restored"})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A second restore into the same directory is refused.
	if err := server.Restore(server.RestoreConfig{SnapshotPath: path, Name: "n0", DataDir: c.Members[0].Dir, PeerURLs: []string{c.Members[0].PeerURL}, InitialCluster: ic}); err == nil {
		t.Fatal("restore over an existing data directory succeeded")
	}
	for _, tm := range c.Members {
		c.Start(tm, nil, "new")
	}
	c.WaitLeader()
	for i := range c.Members {
		resp, err := c.Client(i).Get(ctx, "r", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 10 {
			t.Fatalf("restored member %d has %d keys, want 10", i, resp.Count)
		}
	}
	if _, err := c.Client(0).Put(ctx, "after", "restore"); err != nil {
		t.Fatal(err)
	}
	list, err := c.Client(1).MemberList(ctx)
	if err != nil || len(list.Members) != 3 {
		t.Fatalf("member list of the restored cluster: %v %v", err, list)
	}
}

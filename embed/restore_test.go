package embed

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/server"
)

// TestSnapshotSaveAndRestore saves a snapshot through the Maintenance API,
// restores it into a new 3-member cluster and reads the keys back.
func TestSnapshotSaveAndRestore(t *testing.T) {
	src := newTestCluster(t, 1, nil)
	ctx := ctxT(t)
	cli := src.client()
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

	before := runtime.NumGoroutine()
	c := &testCluster{t: t}
	var initial []string
	for i := range 3 {
		tm := &testMember{name: fmt.Sprintf("n%d", i), dir: filepath.Join(t.TempDir(), "d"), peerURL: "http://" + freeAddr(t), clientAddr: freeAddr(t)}
		c.members = append(c.members, tm)
		initial = append(initial, tm.name+"="+tm.peerURL)
	}
	ic, err := server.ParseInitialCluster(strings.Join(initial, ","))
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range c.members {
		err := server.Restore(server.RestoreConfig{SnapshotPath: path, Name: tm.name, DataDir: tm.dir, PeerURLs: []string{tm.peerURL}, InitialCluster: ic, InitialClusterToken: "restored"})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A second restore into the same directory is refused.
	if err := server.Restore(server.RestoreConfig{SnapshotPath: path, Name: "n0", DataDir: c.members[0].dir, PeerURLs: []string{c.members[0].peerURL}, InitialCluster: ic}); err == nil {
		t.Fatal("restore over an existing data directory succeeded")
	}
	t.Cleanup(func() {
		for _, tm := range c.members {
			if tm.m != nil {
				tm.m.Kill()
			}
		}
		checkNoLeak(t, before)
	})
	for _, tm := range c.members {
		c.start(tm, nil, "new")
	}
	c.waitLeader()
	for i := range c.members {
		resp, err := c.client(i).Get(ctx, "r", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 10 {
			t.Fatalf("restored member %d has %d keys, want 10", i, resp.Count)
		}
	}
	if _, err := c.client(0).Put(ctx, "after", "restore"); err != nil {
		t.Fatal(err)
	}
	list, err := c.client(1).MemberList(ctx)
	if err != nil || len(list.Members) != 3 {
		t.Fatalf("member list of the restored cluster: %v %v", err, list)
	}
}

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// childEnv carries a member's settings to a re-executed test binary.
const childEnv = "SYNOD_INTEGRATION_CHILD"

// childConfig is what a child member process needs.
type childConfig struct {
	Name, Dir, PeerURL, ClientAddr, InitialCluster string
}

// runChild serves one member until killed.
func runChild(raw string) {
	var cc childConfig
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ic, err := server.ParseInitialCluster(cc.InitialCluster)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_, err = embed.Start(embed.Config{
		Config: server.Config{
			Name: cc.Name, DataDir: cc.Dir,
			HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, PreVote: true,
			SnapshotCount: 200, SnapshotCatchUpEntries: 50,
			PeerURLs: []string{cc.PeerURL}, ClientURLs: []string{"http://" + cc.ClientAddr},
			InitialCluster: ic,
		},
		ListenPeerURLs:   []string{cc.PeerURL},
		ListenClientURLs: []string{"http://" + cc.ClientAddr},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	select {}
}

// TestKill9 runs three members as processes, kills members (the leader
// among them) with SIGKILL while clients write, restarts them, and checks
// that every acknowledged write survived on every member and that all
// members hold the same key space.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short")
	}
	type proc struct {
		cc  childConfig
		cmd *exec.Cmd
		log string
	}
	var procs []*proc
	var initial []string
	for i := range 3 {
		p := &proc{cc: childConfig{Name: fmt.Sprintf("k%d", i), Dir: filepath.Join(t.TempDir(), "data"), PeerURL: "http://" + framework.FreeAddr(t), ClientAddr: framework.FreeAddr(t)}}
		p.log = filepath.Join(t.TempDir(), "log")
		procs = append(procs, p)
		initial = append(initial, p.cc.Name+"="+p.cc.PeerURL)
	}
	start := func(p *proc) {
		p.cc.InitialCluster = strings.Join(initial, ",")
		raw, _ := json.Marshal(p.cc)
		f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p.cmd = exec.Command(os.Args[0], "-test.run=^$")
		p.cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
		p.cmd.Stdout, p.cmd.Stderr = f, f
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	kill := func(p *proc) {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
	for _, p := range procs {
		start(p)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			kill(p)
		}
		if t.Failed() {
			for _, p := range procs {
				b, _ := os.ReadFile(p.log)
				t.Logf("log of %s:\n%s", p.cc.Name, b)
			}
		}
	})
	var eps []string
	for _, p := range procs {
		eps = append(eps, p.cc.ClientAddr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
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
				key := fmt.Sprintf("w%d-%05d", w, i)
				if _, err := cli.Put(ctx, key, "x"); err == nil {
					acked.Store(key, true)
					n.Add(1)
				}
			}
		}()
	}
	leaderOf := func() int {
		for i, p := range procs {
			st, err := cli.Status(ctx, p.cc.ClientAddr)
			if err == nil && st.Leader == st.Header.MemberId {
				return i
			}
		}
		return -1
	}
	for round := range 4 {
		framework.WaitFor(t, "writes", func() bool { return n.Load() > int64(100*(round+1)) })
		victim := round % 3
		if round%2 == 0 {
			if li := leaderOf(); li >= 0 {
				victim = li
			}
		}
		kill(procs[victim])
		before := n.Load()
		framework.WaitFor(t, "writes with a member down", func() bool { return n.Load() > before+50 })
		start(procs[victim])
	}
	close(stop)
	wg.Wait()

	// Every member converges to the same revision and hash, with every
	// acknowledged write.
	var rev int64
	framework.WaitFor(t, "members to converge", func() bool {
		var revs []int64
		var hashes []uint32
		for _, p := range procs {
			resp, err := cli.HashKV(ctx, p.cc.ClientAddr, 0)
			if err != nil {
				return false
			}
			revs = append(revs, resp.Header.Revision)
			hashes = append(hashes, resp.Hash)
		}
		rev = revs[0]
		return revs[0] == revs[1] && revs[1] == revs[2] && hashes[0] == hashes[1] && hashes[1] == hashes[2]
	})
	for _, p := range procs {
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{p.cc.ClientAddr}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := one.Get(ctx, "w", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable())
		one.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = true
		}
		lost := 0
		acked.Range(func(k, _ any) bool {
			if !got[k.(string)] {
				lost++
			}
			return true
		})
		if lost > 0 {
			t.Fatalf("member %s lost %d acknowledged writes", p.cc.Name, lost)
		}
	}
	t.Logf("%d acknowledged writes, 4 kill -9 rounds, converged at revision %d", n.Load(), rev)
}

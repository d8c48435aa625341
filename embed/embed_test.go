package embed_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/tests/framework"
)

// TestUnixSockets runs a three-member cluster whose peers and clients
// all speak over unix sockets (unix:// URLs, as etcd's flags take them):
// each member, in turn, takes a write and reads back every write so far,
// linearizably (so through its peers' sockets too).
func TestUnixSockets(t *testing.T) {
	dir := t.TempDir()
	sock := func(name string) string { return "unix://" + filepath.Join(dir, name) }
	names := []string{"a", "b", "c"}
	ic := map[string][]string{}
	for _, n := range names {
		ic[n] = []string{sock(n + ".peer")}
	}
	for _, n := range names {
		m, err := embed.Start(embed.Config{
			Config: server.Config{
				Name:                n,
				DataDir:             filepath.Join(dir, n),
				HeartbeatInterval:   10 * time.Millisecond,
				ElectionTimeout:     100 * time.Millisecond,
				PeerURLs:            ic[n],
				ClientURLs:          []string{sock(n + ".client")},
				InitialCluster:      ic,
				InitialClusterState: "new",
				Logger:              framework.Logger(t).With("m", n),
			},
			ListenPeerURLs:   ic[n],
			ListenClientURLs: []string{sock(n + ".client")},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, n := range names {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{sock(n + ".client")}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		key := fmt.Sprintf("k%d", i)
		if _, err := cli.Put(ctx, key, n); err != nil {
			t.Fatalf("put through %s: %v", n, err)
		}
		resp, err := cli.Get(ctx, "k", clientv3.WithPrefix())
		if err != nil || resp.Count != int64(i+1) {
			t.Fatalf("get through %s: %v, %v", n, resp, err)
		}
	}
}

// TestHTTPListeners: a member started with --listen-metrics-urls and
// --listen-client-http-urls (both on unix sockets here) serves /metrics
// and /health on each, as plain HTTP, besides its client URL; and it runs
// on a file system whose syncs do nothing (--unsafe-no-fsync).
func TestHTTPListeners(t *testing.T) {
	dir := t.TempDir()
	url := func(name string) string { return "unix://" + filepath.Join(dir, name) }
	m, err := embed.Start(embed.Config{
		Config: server.Config{
			Name:                "a",
			DataDir:             filepath.Join(dir, "a"),
			HeartbeatInterval:   10 * time.Millisecond,
			ElectionTimeout:     100 * time.Millisecond,
			PeerURLs:            []string{url("peer")},
			ClientURLs:          []string{url("client")},
			InitialCluster:      map[string][]string{"a": {url("peer")}},
			InitialClusterState: "new",
			FS:                  diskfs.NoSync(diskfs.Default),
			Logger:              framework.Logger(t),
		},
		ListenPeerURLs:       []string{url("peer")},
		ListenClientURLs:     []string{url("client")},
		ListenClientHTTPURLs: []string{url("http")},
		ListenMetricsURLs:    []string{url("metrics")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(time.Second)
	for _, sock := range []string{"client", "http", "metrics"} {
		path := filepath.Join(dir, sock)
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := hc.Get("http://member/health")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`) {
					break
				}
				err = fmt.Errorf("%s: %s", resp.Status, body)
			}
			if time.Now().After(deadline) {
				t.Fatalf("/health on %s: %v", sock, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		resp, err := hc.Get("http://member/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "etcd_server_has_leader 1") {
			t.Errorf("/metrics on %s lacks etcd_server_has_leader 1:\n%s", sock, body)
		}
		hc.CloseIdleConnections()
	}
}

// TestDiscovery: three members that know only a discovery cluster and a
// token (etcd's v3 discovery) find each other and form one cluster; a
// fourth, once the size is reached, is refused.
func TestDiscovery(t *testing.T) {
	ds := framework.NewCluster(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const token = "8A591FAB"
	if _, err := ds.Client(0).Put(ctx, "/_etcd/registry/"+token+"/_config/size", "3"); err != nil {
		t.Fatal(err)
	}
	endpoints, _ := ds.Endpoints()
	dir := t.TempDir()
	sock := func(name string) string { return "unix://" + filepath.Join(dir, name) }
	start := func(name string) (*embed.Member, error) {
		return embed.Start(embed.Config{
			Config: server.Config{
				Name:              name,
				DataDir:           filepath.Join(dir, name),
				HeartbeatInterval: 10 * time.Millisecond,
				ElectionTimeout:   100 * time.Millisecond,
				PeerURLs:          []string{sock(name + ".peer")},
				ClientURLs:        []string{sock(name + ".client")},
				InitialCluster:    map[string][]string{name: {sock(name + ".peer")}},
				Logger:            framework.Logger(t).With("m", name),
			},
			ListenPeerURLs:     []string{sock(name + ".peer")},
			ListenClientURLs:   []string{sock(name + ".client")},
			DiscoveryEndpoints: endpoints,
			DiscoveryToken:     token,
		})
	}
	members := make([]*embed.Member, 3)
	errs := make(chan error, 3)
	for i := range members {
		go func() {
			m, err := start(fmt.Sprintf("d%d", i))
			members[i] = m
			errs <- err
		}()
	}
	for range members {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		defer m.Close(time.Second)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{sock("d0.client")}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	list, err := cli.MemberList(ctx)
	if err != nil || len(list.Members) != 3 {
		t.Fatalf("member list: %v, %v", list, err)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := start("d3"); err == nil || !strings.Contains(err.Error(), "discovery: cluster is full") {
		t.Fatalf("a fourth member: %v, want the cluster is full", err)
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// watchFake is a client whose Watch replays canned responses.
type watchFake struct {
	etcdClient
	mu    sync.Mutex
	key   string
	op    clientv3.Op
	resps []clientv3.WatchResponse
}

func (f *watchFake) Close() error { return nil }

func (f *watchFake) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	f.mu.Lock()
	f.key, f.op = key, clientv3.OpGet(key, opts...)
	f.mu.Unlock()
	ch := make(chan clientv3.WatchResponse)
	go func() {
		defer close(ch)
		for _, r := range f.resps {
			select {
			case ch <- r:
			case <-ctx.Done():
				return
			}
		}
		<-ctx.Done()
	}()
	return ch
}

func (f *watchFake) RequestProgress(context.Context) error { return nil }

// runWatch runs synodctl with args against dial until the output holds
// until (or the command ends), then interrupts it.
func runWatch(t *testing.T, dial dialFunc, until string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb syncBuffer
	a := &app{stdout: &out, stderr: &errb, lookupEnv: func(string) (string, bool) { return "", false }, dial: dial}
	root := a.rootCommand()
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	codec := make(chan int, 1)
	go func() { codec <- execute(ctx, root, &errb) }()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(out.String(), until) {
		select {
		case code := <-codec:
			return out.String(), errb.String(), code
		case <-deadline:
			t.Fatalf("synodctl %s: no %q in output:\n%s\nstderr: %s", strings.Join(args, " "), until, out.String(), errb.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	return out.String(), errb.String(), <-codec
}

func fakeDial(f *watchFake) dialFunc {
	return func(clientv3.Config) (etcdClient, error) { return f, nil }
}

// TestWatchCommandOutput checks the simple and JSON output, the flags'
// translation into watch options, and the errors.
func TestWatchCommandOutput(t *testing.T) {
	hdr := &pb.ResponseHeader{Revision: 9}
	f := &watchFake{resps: []clientv3.WatchResponse{
		{Header: hdr, Events: []*clientv3.Event{
			{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte("k1"), Value: []byte("v1"), ModRevision: 8}},
			{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("k0"), ModRevision: 8}, PrevKv: &mvccpb.KeyValue{Key: []byte("k0"), Value: []byte("old")}},
		}},
		{Header: hdr},
	}}
	out, stderr, code := runWatch(t, fakeDial(f), "progress notify: 9", "watch", "k", "--prefix", "--rev", "5", "--prev-kv", "--progress-notify")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "PUT\nk1\nv1\nDELETE\nk0\nold\nk0\n\nprogress notify: 9\n"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	if f.key != "k" || string(f.op.RangeBytes()) != "l" || f.op.Rev() != 5 || !f.op.IsPrevKV() {
		t.Fatalf("watch %q end %q rev %d prevKV %v", f.key, f.op.RangeBytes(), f.op.Rev(), f.op.IsPrevKV())
	}

	out, _, code = runWatch(t, fakeDial(f), "\n", "watch", "-w", "json", "k")
	if code != 0 || !strings.HasPrefix(out, `{"Header":{"revision":9}`) || !strings.Contains(out, `"Events":[`) {
		t.Fatalf("json output (exit %d): %s", code, out)
	}

	compacted := &watchFake{resps: []clientv3.WatchResponse{{Header: hdr, CompactRevision: 7, Canceled: true}}}
	_, stderr, code = runWatch(t, fakeDial(compacted), "never", "watch", "k", "--rev", "2")
	if code != exitError || !strings.Contains(stderr, "compacted") || !strings.Contains(stderr, "--rev=7") {
		t.Fatalf("compacted watch: exit %d, stderr %q", code, stderr)
	}

	for _, args := range [][]string{
		{"watch"},
		{"watch", "a", "b", "c"},
		{"watch", "a", "--rev", "-1"},
		{"watch", "a", "b", "--prefix"},
		{"watch", "a", "--prefix", "--from-key"},
	} {
		_, stderr, code := runWatch(t, fakeDial(f), "never", args...)
		if code != exitError || !strings.Contains(stderr, "Usage:") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// TestWatchCommandAgainstSynod runs synodctl watch against a real
// one-member synod: history from --rev, then live changes, until
// interrupted.
func TestWatchCommandAgainstSynod(t *testing.T) {
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clientLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerURL := "http://" + peerLn.Addr().String()
	m, err := embed.Start(embed.Config{
		Config: server.Config{
			Name: "m0", DataDir: filepath.Join(t.TempDir(), "m0"),
			HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
			PeerURLs: []string{peerURL}, ClientURLs: []string{"http://" + clientLn.Addr().String()},
			InitialCluster: map[string][]string{"m0": {peerURL}},
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
		PeerListener: peerLn, ClientListeners: []net.Listener{clientLn},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	ep := clientLn.Addr().String()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for { // the first proposal may meet the election
		if _, err = cli.Put(ctx, "warm-up", ""); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	put, err := cli.Put(ctx, "w/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		cli.Put(ctx, "w/b", "2")
		cli.Delete(ctx, "w/a")
		cli.Put(ctx, "x", "not watched")
		cli.Put(ctx, "w/end", "3")
	}()
	out, stderr, code := runWatch(t, dialEtcd, "w/end\n3\n", "--endpoints", ep, "watch", "w/", "--prefix", "--prev-kv", "--rev", strconv.FormatInt(put.Header.Revision, 10))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "PUT\nw/a\n1\nPUT\nw/b\n2\nDELETE\nw/a\n1\nw/a\n\nPUT\nw/end\n3\n"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}

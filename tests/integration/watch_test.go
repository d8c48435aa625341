package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server"
	"github.com/synod-db/synod/server/watch"
	"github.com/synod-db/synod/tests/framework"
)

// withWatchOptions returns a config tuner setting the watch hub options.
func withWatchOptions(o watch.Options) func(*server.Config) {
	return func(cfg *server.Config) { cfg.Watch = o }
}

// watchCreated opens a watch and returns once the member created it, so
// that every write after it reaches it.
func watchCreated(t *testing.T, ctx context.Context, cli *clientv3.Client, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	t.Helper()
	wch := cli.Watch(ctx, key, append(opts, clientv3.WithCreatedNotify())...)
	if r := nextResp(t, wch); !r.Created {
		t.Fatalf("watch of %q: first response %+v, want its creation", key, r)
	}
	return wch
}

// nextResp waits for the next watch response.
func nextResp(t *testing.T, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return resp
	case <-time.After(20 * time.Second):
		t.Fatal("no watch response within 20s")
	}
	return clientv3.WatchResponse{}
}

// nextEvents reads responses until n events arrived and returns them.
func nextEvents(t *testing.T, wch clientv3.WatchChan, n int) []*clientv3.Event {
	t.Helper()
	var evs []*clientv3.Event
	for len(evs) < n {
		resp := nextResp(t, wch)
		if err := resp.Err(); err != nil {
			t.Fatalf("watch error after %d events: %v", len(evs), err)
		}
		evs = append(evs, resp.Events...)
	}
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	return evs
}

func evString(e *clientv3.Event) string {
	s := fmt.Sprintf("%v %s@%d", e.Type, e.Kv.Key, e.Kv.ModRevision)
	if e.Type == clientv3.EventTypePut {
		s += "=" + string(e.Kv.Value)
	}
	if e.PrevKv != nil {
		s += fmt.Sprintf(" (prev %s@%d)", e.PrevKv.Value, e.PrevKv.ModRevision)
	}
	return s
}

func evStrings(evs []*clientv3.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = evString(e)
	}
	return out
}

// TestWatchFromPastThenLive watches a prefix from a past revision: the
// history first, then live events with no gap or duplicate, checked
// against the revisions the writes returned; the header carries the
// cluster, member and term.
func TestWatchFromPastThenLive(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client(0)
	var want []string
	var first int64
	for i := range 10 {
		resp, err := cli.Put(ctx, fmt.Sprintf("p/%d", i%3), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = resp.Header.Revision
		}
		want = append(want, fmt.Sprintf("PUT p/%d@%d=%d", i%3, resp.Header.Revision, i))
		if _, err := cli.Put(ctx, "other", "x"); err != nil {
			t.Fatal(err)
		}
	}
	wch := cli.Watch(ctx, "p/", clientv3.WithPrefix(), clientv3.WithRev(first))
	for i := 10; i < 20; i++ {
		resp, err := cli.Put(ctx, fmt.Sprintf("p/%d", i%3), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("PUT p/%d@%d=%d", i%3, resp.Header.Revision, i))
	}
	resp, err := cli.Delete(ctx, "p/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"p/0", "p/1", "p/2"} {
		want = append(want, fmt.Sprintf("DELETE %s@%d", k, resp.Header.Revision))
	}
	var got []*clientv3.Event
	var hdr *pb.ResponseHeader
	for len(got) < len(want) {
		r := nextResp(t, wch)
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		hdr = r.Header
		got = append(got, r.Events...)
	}
	if !slices.Equal(evStrings(got), want) {
		t.Fatalf("got %q\nwant %q", evStrings(got), want)
	}
	m := c.Members[0].Embed.Server
	if hdr.ClusterId != m.ClusterID() || hdr.MemberId != m.ID() || hdr.RaftTerm == 0 || hdr.Revision != resp.Header.Revision {
		t.Fatalf("header %+v", hdr)
	}
}

// TestWatchCompactedResume watches from a compacted revision: the watch
// ends with ErrCompacted and a CompactRevision from which watching
// works, and misses nothing after it; with prev_kv, etcd's rule at the
// compacted revision holds.
func TestWatchCompactedResume(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client(0)
	var revs []int64
	for i := range 10 {
		resp, err := cli.Put(ctx, "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, resp.Header.Revision)
	}
	if _, err := cli.Compact(ctx, revs[5]); err != nil {
		t.Fatal(err)
	}
	resp := nextResp(t, cli.Watch(ctx, "k", clientv3.WithRev(revs[0])))
	if !errors.Is(resp.Err(), rpctypes.ErrCompacted) || !resp.Canceled || resp.CompactRevision != revs[5] {
		t.Fatalf("watch from a compacted revision: err %v, canceled %v, compact revision %d", resp.Err(), resp.Canceled, resp.CompactRevision)
	}
	// The compacted revision itself can still be watched.
	evs := nextEvents(t, cli.Watch(ctx, "k", clientv3.WithRev(resp.CompactRevision)), 5)
	for i, e := range evs {
		if e.Kv.ModRevision != revs[5+i] || string(e.Kv.Value) != fmt.Sprint(5+i) {
			t.Fatalf("resumed watch: %q", evStrings(evs))
		}
	}
	// With prev_kv, the event at the compacted revision has none (the
	// revision before it is compacted), as in etcd; the next ones have.
	evs = nextEvents(t, cli.Watch(ctx, "k", clientv3.WithRev(resp.CompactRevision), clientv3.WithPrevKV()), 5)
	want := []string{fmt.Sprintf("PUT k@%d=5", revs[5])}
	for i := 6; i < 10; i++ {
		want = append(want, fmt.Sprintf("PUT k@%d=%d (prev %d@%d)", revs[i], i, i-1, revs[i-1]))
	}
	if got := evStrings(evs); !slices.Equal(got, want) {
		t.Fatalf("prev_kv watch from the compacted revision: got %q, want %q", got, want)
	}
}

// TestWatchPrevKVAndFilters checks prev_kv and the NOPUT / NODELETE
// filters through the client.
func TestWatchPrevKVAndFilters(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client(0)
	prev := watchCreated(t, ctx, cli, "k", clientv3.WithPrevKV())
	noPut := watchCreated(t, ctx, cli, "k", clientv3.WithFilterPut())
	noDel := watchCreated(t, ctx, cli, "k", clientv3.WithFilterDelete())
	plain := watchCreated(t, ctx, cli, "k")
	r1, _ := cli.Put(ctx, "k", "v1")
	r2, _ := cli.Put(ctx, "k", "v2")
	r3, err := cli.Delete(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := r1.Header.Revision, r2.Header.Revision, r3.Header.Revision
	check := func(name string, wch clientv3.WatchChan, want ...string) {
		t.Helper()
		if got := evStrings(nextEvents(t, wch, len(want))); !slices.Equal(got, want) {
			t.Fatalf("%s: got %q, want %q", name, got, want)
		}
	}
	check("prev_kv", prev, fmt.Sprintf("PUT k@%d=v1", a), fmt.Sprintf("PUT k@%d=v2 (prev v1@%d)", b, a), fmt.Sprintf("DELETE k@%d (prev v2@%d)", d, b))
	check("noput", noPut, fmt.Sprintf("DELETE k@%d", d))
	check("nodelete", noDel, fmt.Sprintf("PUT k@%d=v1", a), fmt.Sprintf("PUT k@%d=v2", b))
	check("plain", plain, fmt.Sprintf("PUT k@%d=v1", a), fmt.Sprintf("PUT k@%d=v2", b), fmt.Sprintf("DELETE k@%d", d))
}

// TestWatchFragment deletes 300 keys of 1 KiB in one revision with a
// 64 KiB request limit: with WithFragment the member splits the
// response (seen on a raw stream) and the client joins the pieces into
// one response of 300 events; without it one large response comes.
func TestWatchFragment(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, func(cfg *server.Config) { cfg.MaxRequestBytes = 64 << 10 })
	ctx := framework.Context(t)
	cli := c.Client(0)
	val := strings.Repeat("v", 1024)
	for i := range 300 {
		if _, err := cli.Put(ctx, fmt.Sprintf("f/%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	frag := watchCreated(t, ctx, cli, "f/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithFragment())
	whole := watchCreated(t, ctx, cli, "f/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	raw, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("f/"), RangeEnd: []byte("f0"), PrevKv: true, Fragment: true,
	}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := raw.Recv(); err != nil || !r.Created {
		t.Fatalf("raw create: %v %v", r, err)
	}
	del, err := cli.Delete(ctx, "f/", clientv3.WithPrefix())
	if err != nil || del.Deleted != 300 {
		t.Fatal(err, del)
	}
	for name, wch := range map[string]clientv3.WatchChan{"fragment": frag, "whole": whole} {
		resp := nextResp(t, wch)
		if len(resp.Events) != 300 || resp.Events[299].PrevKv == nil || len(resp.Events[299].PrevKv.Value) != 1024 {
			t.Fatalf("%s: one response with %d events", name, len(resp.Events))
		}
		for _, e := range resp.Events {
			if e.Kv.ModRevision != del.Header.Revision {
				t.Fatalf("%s: event at %d", name, e.Kv.ModRevision)
			}
		}
	}
	var pieces, events int
	for events < 300 {
		r, err := raw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		pieces++
		events += len(r.Events)
		if r.Fragment != (events < 300) || proto.Size(r) > 64<<10+1024 {
			t.Fatalf("piece %d: fragment %v with %d of 300 events, %d bytes", pieces, r.Fragment, events, proto.Size(r))
		}
	}
	if pieces < 5 {
		t.Fatalf("%d pieces for ~600 KiB under a 64 KiB limit", pieces)
	}
	t.Logf("300 events (~600 KiB) in %d fragments", pieces)
}

// TestWatchProgress checks periodic progress notifications and
// RequestProgress through the client.
func TestWatchProgress(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, withWatchOptions(watch.Options{ProgressInterval: 100 * time.Millisecond}))
	ctx := framework.Context(t)
	cli := c.Client(0)
	put, err := cli.Put(ctx, "x", "1")
	if err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(ctx, "k", clientv3.WithProgressNotify())
	resp := nextResp(t, wch)
	if !resp.IsProgressNotify() || resp.Header.Revision != put.Header.Revision {
		t.Fatalf("periodic progress: %+v", resp)
	}
	// RequestProgress reaches every watcher of the stream (same context).
	plain := watchCreated(t, ctx, cli, "other")
	put, err = cli.Put(ctx, "x", "2")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		resp = nextResp(t, plain)
		if resp.IsProgressNotify() && resp.Header.Revision == put.Header.Revision {
			break
		}
		if !resp.IsProgressNotify() {
			t.Fatalf("plain watcher got %+v", resp)
		}
	}
}

// TestWatchOnFollower watches on every member of a cluster while writes
// go through the leader: all see the same events, and follower headers
// name the follower.
func TestWatchOnFollower(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	var chans []clientv3.WatchChan
	for i := range c.Members {
		chans = append(chans, c.Client(i).Watch(ctx, "k", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(2)))
	}
	cli := c.Client(li)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i%4), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	var first []string
	for i, wch := range chans {
		var got []*clientv3.Event
		for len(got) < 20 {
			resp := nextResp(t, wch)
			if resp.Err() != nil {
				t.Fatal(resp.Err())
			}
			if resp.Header.MemberId != c.Members[i].Embed.Server.ID() {
				t.Fatalf("member %d answered with header %+v", i, resp.Header)
			}
			got = append(got, resp.Events...)
		}
		if i == 0 {
			first = evStrings(got)
		} else if !slices.Equal(evStrings(got), first) {
			t.Fatalf("member %d saw %q\nmember 0 saw %q", i, evStrings(got), first)
		}
	}
}

// TestWatchRequireLeader loses quorum under a member: its
// WithRequireLeader watch ends with ErrNoLeader, its plain watch stays.
func TestWatchRequireLeader(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	survivor := (li + 1) % 3
	cli := c.Client(survivor)
	rl := cli.Watch(clientv3.WithRequireLeader(ctx), "k")
	plainCtx, cancelPlain := context.WithCancel(ctx)
	defer cancelPlain()
	plain := cli.Watch(plainCtx, "k")
	if _, err := c.Client(li).Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	nextEvents(t, rl, 1)
	nextEvents(t, plain, 1)
	c.Stop(li)
	c.Stop((li + 2) % 3)
	start := time.Now()
	resp := nextResp(t, rl)
	if !errors.Is(resp.Err(), rpctypes.ErrNoLeader) || !resp.Canceled {
		t.Fatalf("require-leader watch after quorum loss: %+v, err %v", resp, resp.Err())
	}
	t.Logf("require-leader watch canceled %v after quorum loss", time.Since(start).Round(time.Millisecond))
	select {
	case resp := <-plain:
		t.Fatalf("plain watch got %+v", resp)
	case <-time.After(300 * time.Millisecond):
	}
}

// rawWatch opens a watch stream without clientv3, to send what the
// client library never sends.
func rawWatch(t *testing.T, ctx context.Context, cli *clientv3.Client) pb.Watch_WatchClient {
	t.Helper()
	ws, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func rawCreate(t *testing.T, ws pb.Watch_WatchClient, cr *pb.WatchCreateRequest) {
	t.Helper()
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}); err != nil {
		t.Fatal(err)
	}
}

func rawRecv(t *testing.T, ws pb.Watch_WatchClient) *pb.WatchResponse {
	t.Helper()
	r, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWatchBadInput sends malformed and hostile requests on a raw
// stream: each gets etcd's answer (or none, for a cancel of an unknown
// ID), and the stream keeps working.
func TestWatchBadInput(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client(0)
	for i := range 5 {
		if _, err := cli.Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	rev := mustRev(t, cli)
	if _, err := cli.Compact(ctx, rev-1); err != nil {
		t.Fatal(err)
	}
	ws := rawWatch(t, ctx, cli)

	// Compacted start revision: created, then canceled with the first
	// revision that can be watched.
	rawCreate(t, ws, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 2})
	if r := rawRecv(t, ws); !r.Created || r.Canceled || r.WatchId != 0 {
		t.Fatalf("created: %+v", r)
	}
	if r := rawRecv(t, ws); !r.Canceled || r.CompactRevision != rev-1 || r.WatchId != 0 {
		t.Fatalf("compacted: %+v", r)
	}

	// An empty create request (on the wire: a create with every field
	// zero) watches the empty key, which no write can touch, as etcd.
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{}}); err != nil {
		t.Fatal(err)
	}
	if r := rawRecv(t, ws); !r.Created || r.Canceled {
		t.Fatalf("empty create: %+v", r)
	}

	refusals := []struct {
		name string
		req  *pb.WatchRequest
		want string
	}{
		{"range end before key", createReq(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}), "watcher range is empty"},
		{"negative start", createReq(&pb.WatchCreateRequest{Key: []byte("b"), StartRevision: -1}), "start revision is negative"},
		{"negative id", createReq(&pb.WatchCreateRequest{Key: []byte("b"), WatchId: -7}), "watch ID is negative"},
		{"unknown filter", createReq(&pb.WatchCreateRequest{Key: []byte("b"), Filters: []pb.WatchCreateRequest_FilterType{7}}), "unknown filter type 7"},
	}
	for _, tc := range refusals {
		if err := ws.Send(tc.req); err != nil {
			t.Fatal(err)
		}
		r := rawRecv(t, ws)
		if !r.Created || !r.Canceled || r.WatchId != -1 || !strings.Contains(r.CancelReason, tc.want) {
			t.Fatalf("%s: %+v", tc.name, r)
		}
	}
	// Ignored: an empty request, a nil cancel, a cancel of an unknown ID.
	for _, req := range []*pb.WatchRequest{
		{},
		{RequestUnion: &pb.WatchRequest_CancelRequest{}},
		{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 12345}}},
	} {
		if err := ws.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	// A duplicate client-chosen ID.
	rawCreate(t, ws, &pb.WatchCreateRequest{Key: []byte("k"), WatchId: 9})
	if r := rawRecv(t, ws); !r.Created || r.WatchId != 9 {
		t.Fatalf("id 9: %+v", r)
	}
	rawCreate(t, ws, &pb.WatchCreateRequest{Key: []byte("k"), WatchId: 9})
	if r := rawRecv(t, ws); !r.Canceled || r.WatchId != -1 || !strings.Contains(r.CancelReason, "duplicate watch ID") {
		t.Fatalf("duplicate: %+v", r)
	}
	// The stream still works, and nothing answered the ignored requests.
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
		t.Fatal(err)
	}
	if r := rawRecv(t, ws); r.WatchId != -1 || r.Created || r.Canceled || r.Header.Revision != rev {
		t.Fatalf("progress: %+v", r)
	}
	put, err := cli.Put(ctx, "k", "after")
	if err != nil {
		t.Fatal(err)
	}
	if r := rawRecv(t, ws); r.WatchId != 9 || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != put.Header.Revision {
		t.Fatalf("event: %+v", r)
	}
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 9}}}); err != nil {
		t.Fatal(err)
	}
	if r := rawRecv(t, ws); r.WatchId != 9 || !r.Canceled || r.CancelReason != "" {
		t.Fatalf("cancel: %+v", r)
	}
	// A client that closes its sending side still gets its stream ended
	// cleanly when it goes away.
	if err := ws.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

func createReq(cr *pb.WatchCreateRequest) *pb.WatchRequest {
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}
}

// TestWatchSnapshotInstall starts watchers on a member that is far
// behind and catches up by snapshot while they run: they still get every
// event from their start revision.
func TestWatchSnapshotInstall(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, func(cfg *server.Config) {
		cfg.SnapshotCount = 50
		cfg.SnapshotCatchUpEntries = 10
	})
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	down := (li + 1) % 3
	cli := c.Client(li)
	if _, err := cli.Put(ctx, "s/first", "x"); err != nil {
		t.Fatal(err)
	}
	start := mustRev(t, cli)
	c.Stop(down)
	for i := range 300 {
		if _, err := cli.Put(ctx, fmt.Sprintf("s/%03d", i%50), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.Restart(down)
	wch := c.Client(down).Watch(ctx, "s/", clientv3.WithPrefix(), clientv3.WithRev(start))
	resp, err := cli.Put(ctx, "s/last", "y")
	if err != nil {
		t.Fatal(err)
	}
	evs := nextEvents(t, wch, 302)
	if string(evs[0].Kv.Key) != "s/first" || evs[301].Kv.ModRevision != resp.Header.Revision {
		t.Fatalf("first %s, last at %d", evString(evs[0]), evs[301].Kv.ModRevision)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Kv.ModRevision != evs[i-1].Kv.ModRevision+1 {
			t.Fatalf("gap or duplicate: %s then %s", evString(evs[i-1]), evString(evs[i]))
		}
	}
}

// TestWatchLatency measures put-to-event latency through the client on
// a three-member cluster, the writer on the leader and the watcher on
// the leader or a follower: from just before the put is sent to the
// event's arrival (etcd's benchmark watch-latency measures the same).
//
// With SYNOD_WATCH_LATENCY_ENDPOINTS=leader,follower it measures an
// external cluster instead (synod or etcd processes), for side-by-side
// figures.
func TestWatchLatency(t *testing.T) {
	ctx := framework.Context(t)
	if eps := os.Getenv("SYNOD_WATCH_LATENCY_ENDPOINTS"); eps != "" {
		var clis []*clientv3.Client
		for _, ep := range strings.Split(eps, ",") {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			clis = append(clis, cli)
		}
		for i, cli := range clis {
			measureWatchLatency(t, ctx, clis[0], cli, fmt.Sprintf("endpoint %d", i), 2000)
		}
		return
	}
	c := framework.NewCluster(t, 3, nil)
	li := c.LeaderIndex()
	measureWatchLatency(t, ctx, c.Client(li), c.Client(li), "leader", 500)
	measureWatchLatency(t, ctx, c.Client(li), c.Client((li+1)%3), "follower", 500)
}

// measureWatchLatency puts n times through writer, one put at a time,
// and logs the percentiles of the delay until watcher's event arrives.
func measureWatchLatency(t *testing.T, ctx context.Context, writer, watcher *clientv3.Client, name string, n int) {
	key := fmt.Sprintf("lat/%d", time.Now().UnixNano())
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := watcher.Watch(wctx, key, clientv3.WithCreatedNotify())
	nextResp(t, wch) // created
	arrived := make(chan time.Time, n)
	go func() {
		for resp := range wch {
			for range resp.Events {
				arrived <- time.Now()
			}
		}
	}()
	lat := make([]time.Duration, 0, n)
	puts := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := writer.Put(ctx, key, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		puts = append(puts, time.Since(start))
		select {
		case at := <-arrived:
			lat = append(lat, at.Sub(start))
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
	}
	pct := func(d []time.Duration, p int) time.Duration {
		return d[len(d)*p/100].Round(time.Microsecond)
	}
	slices.Sort(lat)
	slices.Sort(puts)
	t.Logf("watcher on the %s: put→event p50 %v p90 %v p99 %v max %v (the put itself: p50 %v p99 %v)", name,
		pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[n-1].Round(time.Microsecond), pct(puts, 50), pct(puts, 99))
}

// TestWatchIdleMemory opens 100 raw gRPC watch streams with 1,000
// watchers each on one member and reports the heap per idle watcher,
// server and client side of the streams together (clientv3 is not used:
// it spends a goroutine per watcher on the client side). Set
// SYNOD_WATCH_MEM=n to change the number of watchers.
func TestWatchIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("creates many watchers")
	}
	total := 100000
	if v := os.Getenv("SYNOD_WATCH_MEM"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	const nStreams = 100
	c := framework.NewCluster(t, 1, nil)
	ctx := framework.Context(t)
	cli := c.Client(0)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	streams := make([]pb.Watch_WatchClient, nStreams)
	for i := range streams {
		streams[i] = rawWatch(t, ctx, cli)
	}
	var wg sync.WaitGroup
	errc := make(chan error, nStreams)
	for s, ws := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := total / nStreams
			// Pipeline the creations, then read the answers.
			go func() {
				for i := range n {
					key := fmt.Appendf(nil, "/services/s%03d/w%05d", s, i)
					if err := ws.Send(createReq(&pb.WatchCreateRequest{Key: key})); err != nil {
						errc <- err
						return
					}
				}
			}()
			for range n {
				r, err := ws.Recv()
				if err != nil || !r.Created || r.Canceled {
					errc <- fmt.Errorf("create: %v %v", r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	per := float64(int64(ms.HeapAlloc)-int64(before)) / float64(total)
	st := c.Members[0].Embed.Server.WatchHub().Stats()
	t.Logf("%d idle watchers on %d gRPC streams: %.0f bytes of heap each (process total: member and client)", total, nStreams, per)
	if st.Synced != total {
		t.Fatalf("hub stats %+v", st)
	}
	if per > 1024 {
		t.Errorf("%.0f bytes per idle watcher, want at most 1024", per)
	}
	for _, ws := range streams {
		ws.CloseSend()
	}
}

// propWatcher is one watcher of TestWatchPropertyCluster.
type propWatcher struct {
	key, end string // clientv3 range (end "" single key, "\x00" from key)
	start    int64
	noPut    bool
	noDelete bool
	prevKV   bool
	member   int

	// Results: segments of events, a new one after each compaction error
	// (the watcher then resumes from the compact revision).
	segments []propSegment
}

type propSegment struct {
	from      int64
	events    []*clientv3.Event
	perResp   []map[int64]int // events per revision, per response
	compacted int64           // CompactRevision that ended it, 0 if none
}

func (w *propWatcher) contains(k string) bool {
	switch {
	case w.end == "":
		return k == w.key
	case w.end == "\x00":
		return k >= w.key
	}
	return k >= w.key && k < w.end
}

// TestWatchPropertyCluster runs random writers (puts, deletes, range
// deletes, transactions) through every member of a three-member cluster
// while watchers on every member start at random revisions with random
// ranges and filters; compactions are interleaved and one member is
// restarted (its watchers resume through the client). The global
// history is read back from a member's store before each compaction;
// every watcher's stream must be exactly its slice of it (resuming after
// a compaction error from the CompactRevision), and atomic per revision.
// SYNOD_WATCH_SEED changes the seed.
func TestWatchPropertyCluster(t *testing.T) {
	t.Parallel()
	seed := framework.Seed(t, "watch", 1)
	rng := rand.New(rand.NewSource(seed))
	c := framework.NewCluster(t, 3, withWatchOptions(watch.Options{StreamMaxResponses: 4, SyncLimit: 50, RecentRevisions: 8}))
	ctx := framework.Context(t)
	li := c.LeaderIndex()
	oracleIdx := li            // never restarted
	restartIdx := (li + 1) % 3 // restarted mid-way
	keys := []string{"a", "ab", "abc", "b", "ba", "c", "d"}

	// The oracle: the full history, read from a member's store up to a
	// revision before anything compacts it.
	var histMu sync.Mutex
	var history []mvcc.Event
	next := int64(2)
	collectTo := func(to int64) {
		histMu.Lock()
		defer histMu.Unlock()
		kv := c.Members[oracleIdx].Embed.Server.KV()
		framework.WaitFor(t, "the oracle to apply", func() bool { return kv.Rev() >= to })
		for next <= to {
			res, err := kv.History(next, to, mvcc.HistoryOptions{End: []byte{0}, PrevKV: true})
			if err != nil {
				t.Fatalf("seed %d: oracle history: %v", seed, err)
			}
			history = append(history, res.Events...)
			next = res.Next
		}
	}

	// Writers.
	var compacted int64
	var compactMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		cli := c.Client((li + w) % 3)
		if (li+w)%3 == restartIdx {
			cli = c.Client(li)
		}
		r := rand.New(rand.NewSource(seed*10 + int64(w)))
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[r.Intn(len(keys))]
				val := fmt.Sprintf("w%d-%d", w, i)
				var err error
				switch x := r.Intn(10); {
				case x < 5:
					_, err = cli.Put(ctx, k, val)
				case x < 7:
					_, err = cli.Delete(ctx, k)
				case x < 8:
					_, err = cli.Delete(ctx, k, clientv3.WithPrefix())
				default:
					k2 := keys[r.Intn(len(keys))]
					if k2 == k {
						k2 += "z"
					}
					_, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(k), ">", 0)).
						Then(clientv3.OpPut(k, val), clientv3.OpDelete(k2)).
						Else(clientv3.OpPut(k2, val)).Commit()
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("seed %d: writer %d: %v", seed, w, err)
					return
				}
			}
		}()
	}

	// Watchers, started at random times on random members, one client
	// per member (progress requests go to that client's streams).
	clis := []*clientv3.Client{c.Client(0), c.Client(1), c.Client(2)}
	var watchers []*propWatcher
	var wwg sync.WaitGroup
	startWatcher := func(w *propWatcher) {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			runPropWatcher(ctx, clis[w.member], w, stop)
		}()
	}
	// Steps paced by the writers' progress: each waits for a random
	// number of new revisions, then starts a watcher or compacts. The
	// restart comes halfway.
	const steps = 50
	lc := c.Client(li)
	restarted, onRestarted := false, 0
	for step := range steps {
		from, gap := mustRev(t, lc), int64(2+rng.Intn(20))
		var rev int64
		framework.WaitFor(t, "the writers to make new revisions", func() bool {
			rev = mustRev(t, lc)
			return rev >= from+gap
		})
		switch x := rng.Intn(10); {
		case x < 7:
			w := &propWatcher{key: keys[rng.Intn(len(keys))], member: rng.Intn(3), noPut: rng.Intn(6) == 0, noDelete: rng.Intn(6) == 0, prevKV: rng.Intn(2) == 0}
			switch rng.Intn(3) {
			case 1:
				w.end = w.key + "\xff"
			case 2:
				w.end = "\x00"
			}
			compactMu.Lock()
			w.start = max(compacted+1, rev-int64(rng.Intn(40)))
			compactMu.Unlock()
			if w.member == restartIdx && restarted {
				w.member = li
			} else if w.member == restartIdx {
				onRestarted++
			}
			watchers = append(watchers, w)
			startWatcher(w)
		default:
			// Compact, after saving the history it removes.
			target := rev - int64(rng.Intn(30))
			compactMu.Lock()
			if target > compacted+1 {
				collectTo(target)
				if _, err := lc.Compact(ctx, target, clientv3.WithCompactPhysical()); err != nil {
					t.Fatalf("seed %d: compact %d: %v", seed, target, err)
				}
				compacted = target
			}
			compactMu.Unlock()
		}
		if !restarted && step == steps/2 {
			// Its watchers' streams break; the client resumes them from
			// the next revision each one expects once it is back.
			restarted = true
			downID := c.Members[restartIdx].Embed.Server.ID()
			c.Stop(restartIdx)
			other := c.Members[(restartIdx+1)%len(c.Members)].Embed.Server
			framework.WaitFor(t, "the others to see the stopped member down", func() bool { return !other.PeerActive(downID) })
			c.Restart(restartIdx)
		}
	}
	close(stop)
	wg.Wait()
	final := mustRev(t, c.Client(li))
	collectTo(final)
	// Each watcher stops once a progress notification says it has seen
	// everything up to final.
	done := make(chan struct{})
	go func() { wwg.Wait(); close(done) }()
	for {
		select {
		case <-done:
		case <-time.After(200 * time.Millisecond):
			for _, cli := range clis {
				cli.RequestProgress(ctx)
			}
			continue
		case <-ctx.Done():
			t.Fatalf("seed %d: watchers did not reach revision %d", seed, final)
		}
		break
	}
	histMu.Lock()
	defer histMu.Unlock()
	var nEvents, nResumed int
	for i, w := range watchers {
		for _, sg := range w.segments {
			nEvents += len(sg.events)
		}
		nResumed += len(w.segments) - 1
		checkPropWatcher(t, seed, i, w, history, final)
	}
	t.Logf("seed %d: final revision %d, compacted %d, %d watchers (%d on the restarted member before its restart: %v), %d events checked, %d resumed after a compaction",
		seed, final, compacted, len(watchers), onRestarted, restarted, nEvents, nResumed)
}

// runPropWatcher runs w until a progress notification at or after the
// final revision (known once stop is closed) shows it has seen it all.
func runPropWatcher(ctx context.Context, cli *clientv3.Client, w *propWatcher, stop chan struct{}) {
	from := w.start
	for {
		opts := []clientv3.OpOption{clientv3.WithRev(from)}
		if w.end != "" {
			opts = append(opts, clientv3.WithRange(w.end))
		}
		if w.noPut {
			opts = append(opts, clientv3.WithFilterPut())
		}
		if w.noDelete {
			opts = append(opts, clientv3.WithFilterDelete())
		}
		if w.prevKV {
			opts = append(opts, clientv3.WithPrevKV())
		}
		wctx, cancel := context.WithCancel(ctx)
		sg := propSegment{from: from}
		resumed := false
		for resp := range cli.Watch(wctx, w.key, opts...) {
			if resp.CompactRevision != 0 {
				sg.compacted = resp.CompactRevision
				from = resp.CompactRevision
				resumed = true
				break
			}
			if err := resp.Err(); err != nil {
				sg.compacted = -1 // an unexpected error: the check reports it
				break
			}
			sg.events = append(sg.events, resp.Events...)
			if len(resp.Events) > 0 {
				m := map[int64]int{}
				for _, e := range resp.Events {
					m[e.Kv.ModRevision]++
				}
				sg.perResp = append(sg.perResp, m)
			}
			if resp.IsProgressNotify() {
				select {
				case <-stop:
					// The writers are done: a progress notification at the
					// final revision (or later) ends the watcher.
					if final := finalRev(ctx, cli); final > 0 && resp.Header.Revision >= final {
						cancel()
						w.segments = append(w.segments, sg)
						return
					}
				default:
				}
			}
		}
		cancel()
		w.segments = append(w.segments, sg)
		if !resumed || ctx.Err() != nil {
			return
		}
	}
}

func finalRev(ctx context.Context, cli *clientv3.Client) int64 {
	resp, err := cli.Get(ctx, "\x00", clientv3.WithSerializable(), clientv3.WithCountOnly())
	if err != nil {
		return 0
	}
	return resp.Header.Revision
}

// checkPropWatcher compares w's segments with the history.
func checkPropWatcher(t *testing.T, seed int64, i int, w *propWatcher, history []mvcc.Event, final int64) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, watcher %d (%q..%q from %d on member %d, noPut %v noDelete %v prevKV %v): %s", seed, i, w.key, w.end, w.start, w.member, w.noPut, w.noDelete, w.prevKV, fmt.Sprintf(format, args...))
	}
	wantCounts := map[int64]int{}
	// noPrevAt is a compacted revision the segment resumed from: the
	// versions before its events were compacted away, so they come
	// without prev_kv (as in etcd).
	want := func(from, to, noPrevAt int64) []string {
		var out []string
		for _, ev := range history {
			r := ev.KV.ModRevision
			if r < from || r > to || !w.contains(string(ev.KV.Key)) {
				continue
			}
			if (ev.Type == mvcc.EventPut && w.noPut) || (ev.Type == mvcc.EventDelete && w.noDelete) {
				continue
			}
			e := &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: ev.KV.Key, Value: ev.KV.Value, ModRevision: r}}
			if ev.Type == mvcc.EventDelete {
				e.Type = mvccpb.DELETE
			}
			if w.prevKV && ev.PrevKV != nil && r != noPrevAt {
				e.PrevKv = &mvccpb.KeyValue{Value: ev.PrevKV.Value, ModRevision: ev.PrevKV.ModRevision}
			}
			out = append(out, evString(e))
			wantCounts[r]++
		}
		return out
	}
	if len(w.segments) == 0 {
		fail("no result")
	}
	for si, sg := range w.segments {
		last := len(w.segments) - 1
		to := final
		if sg.compacted != 0 {
			if sg.compacted < 0 || si == last {
				fail("segment %d ended with an error", si)
			}
			// It must have been behind the compaction: its events are
			// the history from its start up to some point at or before
			// the compacted revision.
			to = sg.compacted - 1
		}
		got := evStrings(sg.events)
		var noPrevAt int64
		if si > 0 {
			noPrevAt = sg.from
		}
		exp := want(sg.from, to, noPrevAt)
		ok := slices.Equal(got, exp)
		if sg.compacted > 0 {
			// Its position (at least past its last event) was compacted.
			pos := sg.from
			if n := len(sg.events); n > 0 {
				pos = max(pos, sg.events[n-1].Kv.ModRevision+1)
			}
			ok = len(got) <= len(exp) && slices.Equal(got, exp[:len(got)]) && pos <= sg.compacted-1
		}
		if !ok {
			fail("segment %d from %d to %d:\n got %q\nwant %q", si, sg.from, to, got, exp)
		}
		// Atomic: each response holds all of a revision's events.
		for _, m := range sg.perResp {
			for r, n := range m {
				if n != wantCounts[r] {
					fail("segment %d: a response holds %d of the %d events of revision %d", si, n, wantCounts[r], r)
				}
			}
		}
	}
}

package integration

import (
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/tests/framework"
)

// TestRangeStream reads a 16 MiB range through clientv3's GetStream from
// a follower: it arrives in pages of about the member's request size
// limit (1.5 MiB), which merged are the Get of the same range; and a sort the stream cannot keep is refused as
// Unimplemented (etcd's answer, on which clients fall back to Get).
func TestRangeStream(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	ctx := framework.Context(t)
	lead := c.LeaderIndex()
	follower := (lead + 1) % len(c.Members)
	cli := c.Client(follower)
	value := strings.Repeat("v", 64<<10)
	for i := range 256 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	var resps []clientv3.RangeStreamResponse
	ch, err := cli.GetStream(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for r := range ch {
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		resps = append(resps, r)
	}
	if len(resps) < 8 {
		t.Errorf("16 MiB came in %d pages, want pages of about 1.5 MiB", len(resps))
	}
	merged, err := clientv3.GetStreamToGetResponse(sliceChan(resps))
	if err != nil {
		t.Fatal(err)
	}
	if merged.Count != 256 || len(merged.Kvs) != 256 || merged.More {
		t.Fatalf("merged stream: count %d, %d kvs, more %v", merged.Count, len(merged.Kvs), merged.More)
	}
	keysOnly, err := cli.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(merged.Header.Revision))
	if err != nil {
		t.Fatal(err)
	}
	for i, kv := range keysOnly.Kvs {
		got := merged.Kvs[i]
		if string(got.Key) != string(kv.Key) || got.ModRevision != kv.ModRevision || string(got.Value) != value {
			t.Fatalf("kv %d: %q mod %d, want %q mod %d", i, got.Key, got.ModRevision, kv.Key, kv.ModRevision)
		}
	}
	if merged.Header.MemberId == 0 || merged.Header.ClusterId == 0 || merged.Header.RaftTerm == 0 {
		t.Errorf("header not filled: %v", merged.Header)
	}

	limited, err := cli.GetStream(ctx, "k", clientv3.WithPrefix(), clientv3.WithLimit(100), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	got, err := clientv3.GetStreamToGetResponse(limited)
	if err != nil {
		t.Fatal(err)
	}
	want, err := cli.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithLimit(100), clientv3.WithKeysOnly(), clientv3.WithRev(got.Header.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != want.Count || got.More != want.More || len(got.Kvs) != len(want.Kvs) || string(got.Kvs[99].Key) != string(want.Kvs[99].Key) {
		t.Errorf("limited stream: count %d, %d kvs, more %v; Get: count %d, %d kvs, more %v", got.Count, len(got.Kvs), got.More, want.Count, len(want.Kvs), want.More)
	}

	sorted, err := cli.GetStream(ctx, "k", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend))
	if err == nil {
		for r := range sorted {
			err = r.Err()
		}
	}
	if status.Code(err) != codes.Unimplemented || rpctypes.ErrorDesc(err) != "RangeStream does not support custom sort orders" {
		t.Errorf("sorted stream: %v, want Unimplemented", err)
	}
}

func sliceChan(resps []clientv3.RangeStreamResponse) clientv3.GetStreamChan {
	ch := make(chan clientv3.RangeStreamResponse, len(resps))
	for _, r := range resps {
		ch <- r
	}
	close(ch)
	return ch
}

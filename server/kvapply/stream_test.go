package kvapply

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// TestRangeStreamMergesToRange is the contract of RangeStream: for random
// key spaces, ranges, limits, keys_only, revisions, sort targets and page
// sizes, the pages merged (proto.Merge, as a client may merge them) are
// exactly the Range answer at the stream's start, even though every page
// is followed by writes, deletes included, to the keys still to come.
// Only the last page carries the header, more and count; every page but
// the last carries keys.
func TestRangeStreamMergesToRange(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			s := openStore(t)
			for range 20 + rng.IntN(300) {
				mustPut(t, s, randKey(rng), string(make([]byte, rng.IntN(2000))))
			}
			for range 10 {
				req := &pb.RangeRequest{Key: []byte(randKey(rng)), KeysOnly: rng.IntN(4) == 0}
				switch rng.IntN(3) {
				case 0:
					req.Key, req.RangeEnd = []byte{0}, []byte{0} // everything
				case 1:
					req.RangeEnd = []byte(randKey(rng))
				}
				if rng.IntN(2) == 0 {
					req.Limit = int64(rng.IntN(80))
				}
				if rng.IntN(3) == 0 {
					req.Revision = s.Rev() - int64(rng.IntN(10))
				}
				if rng.IntN(4) == 0 {
					// Sorted with no order: etcd sorts ascending.
					req.SortTarget = pb.RangeRequest_SortTarget(rng.IntN(len(pb.RangeRequest_SortTarget_name)))
				}
				want, err := Range(s, proto.Clone(req).(*pb.RangeRequest))
				if err != nil {
					t.Fatal(err)
				}
				got := &pb.RangeResponse{}
				pages := 0
				pageBytes := 1 + rng.IntN(20000)
				err = RangeStream(s, proto.Clone(req).(*pb.RangeRequest), pageBytes, func(page *pb.RangeResponse) error {
					pages++
					if got.Header != nil {
						return errors.New("a page after the one with the header")
					}
					if page.Header == nil && len(page.Kvs) == 0 {
						return errors.New("an empty page before the last")
					}
					proto.Merge(got, page)
					// Writes between pages must not show in the pages.
					mustPut(t, s, randKey(rng), "late")
					if _, err := doDelete(s, &pb.DeleteRangeRequest{Key: []byte(randKey(rng))}); err != nil {
						t.Fatal(err)
					}
					return nil
				})
				if err != nil {
					t.Fatalf("request %v: %v", req, err)
				}
				if !proto.Equal(got, want) {
					t.Fatalf("request %v, %d-byte pages: merged %d pages\n%v\nwant\n%v", req, pageBytes, pages, got, want)
				}
			}
		})
	}
}

func randKey(rng *rand.Rand) string { return fmt.Sprintf("k%03d", rng.IntN(400)) }

// TestRangeStreamPages shows the paging itself: a large range leaves in
// pages of about the size asked for, not in one message, and the first
// page is small so that it leaves at once.
func TestRangeStreamPages(t *testing.T) {
	s := openStore(t)
	value := string(make([]byte, 1000))
	for i := range 1000 {
		mustPut(t, s, fmt.Sprintf("k%04d", i), value)
	}
	var sizes []int
	err := RangeStream(s, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}, 100_000, func(page *pb.RangeResponse) error {
		sizes = append(sizes, proto.Size(page))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sizes[0] > firstPageKeys*1100 {
		t.Errorf("first page is %d bytes, want at most %d keys' worth", sizes[0], firstPageKeys)
	}
	for i, n := range sizes[1 : len(sizes)-1] {
		if n < 50_000 || n > 200_000 {
			t.Errorf("page %d is %d bytes, want about 100000 (pages %v)", i+1, n, sizes)
		}
	}
}

// TestRangeStreamRefuses shows what RangeStream cannot answer: a sort
// other than by key ascending, revision filters, and a send that fails
// (the client went away) ends the stream with its error.
func TestRangeStreamRefuses(t *testing.T) {
	for _, tc := range []struct {
		req  *pb.RangeRequest
		want error
	}{
		{&pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_DESCEND}, ErrStreamSort},
		{&pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_MOD}, ErrStreamSort},
		{&pb.RangeRequest{Key: []byte("a"), MinModRevision: 2}, ErrStreamFilter},
		{&pb.RangeRequest{Key: []byte("a"), MaxCreateRevision: 2}, ErrStreamFilter},
		{&pb.RangeRequest{}, errEmptyKey},
	} {
		if err := ValidateRangeStream(tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v, want %v", tc.req, err, tc.want)
		}
	}
	for _, ok := range []*pb.RangeRequest{
		{Key: []byte("a")},
		{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND},
		{Key: []byte("a"), SortOrder: pb.RangeRequest_NONE, SortTarget: pb.RangeRequest_VALUE},
	} {
		if err := ValidateRangeStream(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	s := openStore(t)
	for i := range 100 {
		mustPut(t, s, fmt.Sprintf("k%03d", i), "v")
	}
	gone := errors.New("client went away")
	pages := 0
	err := RangeStream(s, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}, 10, func(*pb.RangeResponse) error {
		pages++
		return gone
	})
	if !errors.Is(err, gone) || pages != 1 {
		t.Fatalf("stream after a failed send: %v after %d pages", err, pages)
	}
}

package kvapply

import (
	"errors"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/synod-db/synod/mvcc"
)

// Refusals of RangeStream, which pages through the store in key order and
// so cannot sort or filter the whole result. They are etcd's words; the
// API layer answers them as Unimplemented, as etcd does, so that a client
// falls back to Range.
var (
	ErrStreamSort   = errors.New("RangeStream does not support custom sort orders")
	ErrStreamFilter = errors.New("RangeStream does not support revision filters")

	errStreamSort   = Refuse(ErrStreamSort)
	errStreamFilter = Refuse(ErrStreamFilter)
)

// ValidateRangeStream checks a RangeStream request: a valid Range in the
// natural key order (ascending or unsorted) without revision filters.
func ValidateRangeStream(req *pb.RangeRequest) error {
	if err := ValidateRange(req); err != nil {
		return err
	}
	if req.SortOrder != pb.RangeRequest_NONE && (req.SortTarget != pb.RangeRequest_KEY || req.SortOrder != pb.RangeRequest_ASCEND) {
		return errStreamSort
	}
	if req.MinModRevision != 0 || req.MaxModRevision != 0 || req.MinCreateRevision != 0 || req.MaxCreateRevision != 0 {
		return errStreamFilter
	}
	return nil
}

// firstPageKeys is the size of a stream's first page: small, so that the
// first bytes leave at once whatever the size of the values.
const firstPageKeys = 16

// RangeStream answers a validated RangeStream request in pages of about
// pageBytes each, calling send for each page in order. Merged, the pages
// are the RangeResponse Range would give: the pages' kvs concatenated,
// and on the last page only, the header (its revision alone; the caller
// fills the rest), more and count.
//
// Every page reads at one revision (the request's, or the store's current
// revision when the stream starts), so the pages form one consistent
// view whatever is written meanwhile. The total count is taken once, on
// the first page; later pages stop at their limit (mvcc's NoTotal), so
// that paging through n keys costs O(n), not O(n) per page.
func RangeStream(s *mvcc.Store, req *pb.RangeRequest, pageBytes int, send func(*pb.RangeResponse) error) error {
	if s == nil {
		return errNilStore
	}
	if req.CountOnly {
		resp, err := Range(s, req)
		if err != nil {
			return err
		}
		return send(&pb.RangeResponse{Header: &pb.ResponseHeader{Revision: resp.Header.Revision}, Count: resp.Count})
	}
	if req.SortTarget != pb.RangeRequest_KEY {
		return sendSorted(s, req, pageBytes, send)
	}
	want := req.Limit // keys the client asked for in all
	if want <= 0 {
		want = math.MaxInt64
	}
	v := view{s: s}
	key, at := req.Key, req.Revision
	var headerRev, total, sent int64
	limit := min(int64(firstPageKeys), want)
	for page := 0; ; page++ {
		res, err := v.read(key, req.RangeEnd, mvcc.RangeOptions{Limit: limit, Rev: at, KeysOnly: req.KeysOnly, NoTotal: page > 0})
		if err != nil {
			return storeError(err)
		}
		if page == 0 {
			// Pin the revision, and keep the total: the count of
			// [req.Key, end) at that revision.
			headerRev, total = res.Rev, res.Count
			if at <= 0 {
				at = res.Rev
			}
		}
		sent += int64(len(res.KVs))
		out := &pb.RangeResponse{Kvs: toPBKVs(res.KVs)}
		done := !res.More || sent >= want
		if done {
			out.Header = &pb.ResponseHeader{Revision: headerRev}
			out.More = res.More
			out.Count = total
		}
		if err := send(out); err != nil {
			return err
		}
		if done {
			return nil
		}
		last := res.KVs[len(res.KVs)-1].Key
		key = append(append(make([]byte, 0, len(last)+1), last...), 0)
		limit = min(nextPageKeys(limit, res.KVs, pageBytes), want-sent)
	}
}

// sendSorted answers a request sorted by something other than the key
// (with no sort order, which etcd sorts ascending): the sort needs the
// whole result, so it is read at once, as Range reads it, and only sent
// in pages. (etcd sorts each page alone, which is the same only while
// the result fits in one.)
func sendSorted(s *mvcc.Store, req *pb.RangeRequest, pageBytes int, send func(*pb.RangeResponse) error) error {
	resp, err := Range(s, req)
	if err != nil {
		return err
	}
	kvs := resp.Kvs
	for {
		n, bytes := 0, 0
		for n < len(kvs) && (n == 0 || bytes < pageBytes) {
			bytes += len(kvs[n].Key) + len(kvs[n].Value) + kvOverhead
			n++
		}
		page := &pb.RangeResponse{Kvs: kvs[:n:n]}
		kvs = kvs[n:]
		if len(kvs) == 0 {
			page.Header, page.More, page.Count = resp.Header, resp.More, resp.Count
		}
		if err := send(page); err != nil || len(kvs) == 0 {
			return err
		}
	}
}

// kvOverhead is roughly what a KeyValue costs on the wire besides its key
// and value (revisions, version, lease, tags).
const kvOverhead = 24

// nextPageKeys sizes the next page from the keys of the last one, so that
// it carries about pageBytes: the page's average key-value size predicts
// the next. It grows at most eightfold a page, so that a run of small
// values ahead of large ones cannot make one huge page.
func nextPageKeys(last int64, kvs []mvcc.KeyValue, pageBytes int) int64 {
	bytes := 0
	for i := range kvs {
		bytes += len(kvs[i].Key) + len(kvs[i].Value) + kvOverhead
	}
	next := int64(pageBytes) * int64(len(kvs)) / int64(max(bytes, 1))
	return max(1, min(next, 8*last))
}

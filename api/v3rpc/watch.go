package v3rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/synod-db/synod/mvcc"
	"github.com/synod-db/synod/server/watch"
)

// watchServer is the Watch service: each gRPC stream is one watch.Stream
// of the member's hub. A receiving goroutine turns requests into hub
// calls; the handler's goroutine sends what the hub queues, so a client
// that reads slowly only ever delays its own stream.
type watchServer struct {
	pb.UnimplementedWatchServer
	s watchMember
}

func newWatchServer(s watchMember) *watchServer { return &watchServer{s: s} }

// errLeaderLost is the cause a require-leader stream is ended with.
var errLeaderLost = errors.New("watch stream requires a leader and the member lost it")

// Watch serves one bidirectional watch stream until the client goes
// away, the member stops, or (for WithRequireLeader streams) the member
// has had no leader for two election timeouts.
func (ws *watchServer) Watch(stream pb.Watch_WatchServer) error {
	st := ws.s.WatchHub().NewStream()
	defer st.Close()
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	if requireLeader(stream.Context()) {
		go ws.monitorLeader(ctx, cancel)
	}
	go ws.recvLoop(stream, st, cancel)
	for {
		r, ok, err := st.Next(ctx.Done())
		if err != nil {
			return rpctypes.ErrGRPCStopped
		}
		if !ok {
			if errors.Is(context.Cause(ctx), errLeaderLost) {
				return rpctypes.ErrGRPCNoLeader
			}
			return ctx.Err()
		}
		for _, msg := range ws.toPB(&r) {
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
}

// recvLoop reads the client's requests. It ends when the stream does;
// a client that only closes its sending side keeps receiving events.
func (ws *watchServer) recvLoop(stream pb.Watch_WatchServer, st *watch.Stream, cancel context.CancelCauseFunc) {
	for {
		// A client that does not read its answers waits here rather than
		// making the member queue them without bound.
		st.WaitRoom(stream.Context().Done())
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			cancel(err)
			return
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest == nil {
				st.Refuse(errors.New("watch: empty create request"))
				continue
			}
			r, err := createRequest(u.CreateRequest)
			if err != nil {
				st.Refuse(err)
				continue
			}
			st.Watch(r) // refusals are answered on the stream
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest != nil {
				st.Cancel(u.CancelRequest.WatchId) // unknown IDs are ignored, as etcd
			}
		case *pb.WatchRequest_ProgressRequest:
			st.RequestProgress()
		default:
			// An empty or unknown request: ignored rather than ending a
			// stream that may carry many watchers, as etcd does.
		}
	}
}

// createRequest translates a WatchCreateRequest.
func createRequest(c *pb.WatchCreateRequest) (watch.Request, error) {
	r := watch.Request{
		ID:             c.WatchId,
		Key:            c.Key,
		End:            c.RangeEnd,
		StartRev:       c.StartRevision,
		PrevKV:         c.PrevKv,
		ProgressNotify: c.ProgressNotify,
		Fragment:       c.Fragment,
	}
	for _, f := range c.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			r.NoPut = true
		case pb.WatchCreateRequest_NODELETE:
			r.NoDelete = true
		default:
			return r, fmt.Errorf("watch: unknown filter type %d", int32(f))
		}
	}
	return r, nil
}

// monitorLeader ends the stream (cause errLeaderLost) once the member
// has had no leader for two election timeouts: long enough not to cut
// streams during an ordinary election, short enough that a partitioned
// member's watchers learn soon that they may be stale.
func (ws *watchServer) monitorLeader(ctx context.Context, cancel context.CancelCauseFunc) {
	grace := 2 * ws.s.Config().ElectionTimeout
	for {
		changed := ws.s.LeaderChanged()
		if ws.s.Leader() == 0 {
			t := time.NewTimer(grace)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
				if ws.s.Leader() == 0 {
					cancel(errLeaderLost)
					return
				}
			case <-changed:
				t.Stop()
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// toPB turns a hub response into the messages to send: one, or several
// fragments when the watcher allows it and the response is larger than
// the member's request size limit (the client joins them again).
func (ws *watchServer) toPB(r *watch.Response) []*pb.WatchResponse {
	hdr := &pb.ResponseHeader{
		ClusterId: ws.s.ClusterID(),
		MemberId:  ws.s.ID(),
		Revision:  r.Revision,
		RaftTerm:  ws.s.Term(),
	}
	resp := &pb.WatchResponse{
		Header:          hdr,
		WatchId:         r.WatchID,
		Created:         r.Created,
		Canceled:        r.Canceled,
		CompactRevision: r.CompactRevision,
		CancelReason:    r.CancelReason,
	}
	if len(r.Events) > 0 {
		resp.Events = make([]*mvccpb.Event, len(r.Events))
		for i := range r.Events {
			resp.Events[i] = toPBEvent(&r.Events[i], r.PrevKV)
		}
	}
	limit := ws.s.Config().MaxRequestBytes
	if !r.Fragment || len(resp.Events) < 2 || proto.Size(resp) <= limit {
		return []*pb.WatchResponse{resp}
	}
	var out []*pb.WatchResponse
	events := resp.Events
	for len(events) > 0 {
		n, size := 0, 0
		for n < len(events) {
			sz := proto.Size(events[n]) + 8
			if n > 0 && size+sz > limit {
				break
			}
			n, size = n+1, size+sz
		}
		out = append(out, &pb.WatchResponse{Header: hdr, WatchId: r.WatchID, Events: events[:n], Fragment: n < len(events)})
		events = events[n:]
	}
	return out
}

func toPBEvent(e *mvcc.Event, prevKV bool) *mvccpb.Event {
	out := &mvccpb.Event{Type: mvccpb.PUT, Kv: toPBKV(&e.KV)}
	if e.Type == mvcc.EventDelete {
		out.Type = mvccpb.DELETE
	}
	if prevKV && e.PrevKV != nil {
		out.PrevKv = toPBKV(e.PrevKV)
	}
	return out
}

func toPBKV(kv *mvcc.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Value:          kv.Value,
		Lease:          kv.Lease,
	}
}

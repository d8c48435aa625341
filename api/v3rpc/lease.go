package v3rpc

import (
	"context"
	"errors"
	"io"
	"net/url"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/server"
)

// leaseServer is the Lease service. Grants and revocations go through
// raft from any member. Keep-alives and TimeToLive need the leader's
// clock: a follower forwards them to the leader's client URL (one stream
// to the leader per client stream, all over one shared connection), so
// that clients — which keep a single keep-alive stream to whichever
// member they picked — never have to know who leads.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s     leaseMember
	conns connPool
}

func newLeaseServer(s leaseMember) *leaseServer {
	return &leaseServer{s: s, conns: connPool{conns: map[string]*pooledConn{}}}
}

// connPool shares one client connection per leader address among the
// streams forwarded to it: requests of many client streams then travel
// together in the connection's writes instead of one system call each.
// A connection is closed when its last user releases it.
type connPool struct {
	mu    sync.Mutex
	conns map[string]*pooledConn
}

type pooledConn struct {
	conn *grpc.ClientConn
	refs int
}

// get returns a connection to the leader's client URL and the function
// that releases it.
func (p *connPool) get(s Member) (*grpc.ClientConn, func(), error) {
	target, err := leaderTarget(s)
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.conns[target]
	if pc == nil {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		pc = &pooledConn{conn: conn}
		p.conns[target] = pc
	}
	pc.refs++
	var once sync.Once
	return pc.conn, func() { once.Do(func() { p.release(target, pc) }) }, nil
}

func (p *connPool) release(target string, pc *pooledConn) {
	p.mu.Lock()
	pc.refs--
	last := pc.refs == 0
	if last {
		delete(p.conns, target)
	}
	p.mu.Unlock()
	if last {
		pc.conn.Close()
	}
}

// forwardedKey marks a request a follower forwarded to the leader: the
// leader answers it or fails it, but never forwards it again (no loops
// while members disagree about who leads).
const forwardedKey = "synod-lease-forwarded"

func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > lease.MaxTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	return l.s.LeaseGrant(ctx, r)
}

func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return l.s.LeaseRevoke(ctx, r.ID)
}

func (l *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	return l.s.LeaseLeases(ctx)
}

func (l *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := l.s.LeaseTimeToLive(ctx, r)
	if errors.Is(err, server.ErrNotLeader) && !isForwarded(ctx) {
		return l.forwardTimeToLive(ctx, r)
	}
	return resp, err
}

// forwardTimeToLive asks the leader, which alone knows the remaining time.
func (l *leaseServer) forwardTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	conn, release, err := l.conns.get(l.s)
	if err != nil {
		return nil, err
	}
	defer release()
	resp, err := pb.NewLeaseClient(conn).LeaseTimeToLive(forwardContext(ctx), r)
	return resp, err // the leader's status errors pass unchanged
}

// forwardContext marks an outgoing forwarded request.
func forwardContext(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
}

// leaderTarget returns the address of the leader's first client URL.
func leaderTarget(s Member) (string, error) {
	lead := s.Leader()
	if lead == 0 {
		return "", rpctypes.ErrGRPCNoLeader
	}
	for _, m := range s.Members() {
		if m.ID == lead && len(m.ClientURLs) > 0 {
			if u, err := url.Parse(m.ClientURLs[0]); err == nil && u.Host != "" {
				return u.Host, nil
			}
		}
	}
	return "", rpctypes.ErrGRPCNotLeader // its client URLs are not published yet
}

// LeaseKeepAlive renews leases for as long as the client streams
// requests. Each request gets one response: the lease's TTL, or TTL 0 if
// the lease does not exist (clientv3 then closes its keep-alive channel).
// On a follower the requests are forwarded to the leader and its answers
// relayed back; if that fails the request is dropped, and the client,
// which repeats unanswered keep-alives every half second, tries again.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	fwd := &keepAliveForwarder{s: l.s, pool: &l.conns, client: stream}
	defer fwd.close()
	forwarded := isForwarded(ctx)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			// The client sends no more, but still waits for the
			// answers to what it sent: relay the leader's.
			fwd.drain(ctx)
			return nil
		}
		if err != nil {
			return err
		}
		ttl, err := l.s.LeaseRenew(ctx, req.ID)
		switch {
		case errors.Is(err, server.ErrNotLeader) && !forwarded:
			fwd.forward(ctx, req)
			continue
		case errors.Is(err, lease.ErrLeaseNotFound):
			ttl = 0
		case err != nil:
			return err
		}
		if err := fwd.reply(&pb.LeaseKeepAliveResponse{Header: l.s.Header(), ID: req.ID, TTL: ttl}); err != nil {
			return err
		}
	}
}

// keepAliveForwarder relays one client keep-alive stream to the leader.
// The handler goroutine sends requests; a goroutine per leader stream
// copies the leader's answers back. Both write to the client stream, so
// writes are serialized.
type keepAliveForwarder struct {
	s      Member
	pool   *connPool
	client pb.Lease_LeaseKeepAliveServer
	sendMu sync.Mutex

	// The stream to the current leader (handler goroutine only).
	lead    uint64
	release func() // of the pooled connection
	stream  pb.Lease_LeaseKeepAliveClient
	cancel  context.CancelFunc
	done    chan struct{} // closed when the relay goroutine ends
}

// reply sends a response to the client.
func (f *keepAliveForwarder) reply(resp *pb.LeaseKeepAliveResponse) error {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	return f.client.Send(resp)
}

// forward sends req to the leader, (re)opening the stream to it when the
// leader changed or the previous stream failed.
func (f *keepAliveForwarder) forward(ctx context.Context, req *pb.LeaseKeepAliveRequest) {
	lead := f.s.Leader()
	if f.stream != nil {
		select {
		case <-f.done:
			f.close() // broken
		default:
			if f.lead != lead {
				f.close()
			}
		}
	}
	if f.stream == nil {
		if !f.open(ctx, lead) {
			return
		}
	}
	if err := f.stream.Send(req); err != nil {
		f.close()
	}
}

// open starts a stream to the leader lead and its relay goroutine.
func (f *keepAliveForwarder) open(ctx context.Context, lead uint64) bool {
	conn, release, err := f.pool.get(f.s)
	if err != nil {
		return false
	}
	sctx, cancel := context.WithCancel(forwardContext(ctx))
	stream, err := pb.NewLeaseClient(conn).LeaseKeepAlive(sctx)
	if err != nil {
		cancel()
		release()
		return false
	}
	f.lead, f.release, f.stream, f.cancel, f.done = lead, release, stream, cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			if f.reply(resp) != nil {
				return
			}
		}
	}(f.done)
	return true
}

// drain half-closes the stream to the leader, if any, and waits until
// the leader has answered every request forwarded on it and ended the
// stream, so that a client that closed its side right after a request
// still gets the answer; or until ctx ends or a request's time is up.
func (f *keepAliveForwarder) drain(ctx context.Context) {
	if f.stream == nil || f.stream.CloseSend() != nil {
		return
	}
	timeout := time.NewTimer(f.s.Config().RequestTimeout)
	defer timeout.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
	case <-timeout.C:
	}
}

// close ends the stream to the leader, if any, and waits for its relay.
func (f *keepAliveForwarder) close() {
	if f.stream == nil {
		return
	}
	f.cancel()
	<-f.done
	f.release()
	f.stream, f.release, f.cancel, f.done = nil, nil, nil, nil
}

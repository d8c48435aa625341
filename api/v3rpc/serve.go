package v3rpc

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/synod-db/synod/api/v3electionpb"
	"github.com/synod-db/synod/api/v3lockpb"
)

// ClientServer serves one client listener: gRPC and HTTP on one port.
type ClientServer struct {
	split   *splitListener
	grpc    *grpc.Server
	http    *http.Server
	self    *selfConn
	gateway *gateway // nil if disabled
	wg      sync.WaitGroup
}

// Options tune the client API server; zero fields take etcd's defaults.
type Options struct {
	// EnablePprof serves /debug/pprof.
	EnablePprof bool
	// KeepAliveMinTime is the shortest interval at which a client may
	// ping (etcd's --grpc-keepalive-min-time, default 5s); a client that
	// pings more often is disconnected.
	KeepAliveMinTime time.Duration
	// KeepAliveInterval and KeepAliveTimeout are how often the server
	// pings an idle connection and how long it waits for the answer
	// before closing it (--grpc-keepalive-interval, default 2h, and
	// --grpc-keepalive-timeout, default 20s).
	KeepAliveInterval, KeepAliveTimeout time.Duration
	// MaxConcurrentStreams bounds the streams of one client connection
	// (--max-concurrent-streams, default unbounded).
	MaxConcurrentStreams uint32
	// DisableGateway turns the JSON gateway (/v3/...) off
	// (--enable-grpc-gateway=false).
	DisableGateway bool
	// HostWhitelist and CORS guard the HTTP side of the client URLs
	// (--host-whitelist, --cors; see accessControl).
	HostWhitelist, CORS []string
	// WarnUnaryDuration is how long a unary request may take before it
	// is logged as slow (--warning-unary-request-duration, default
	// 300ms).
	WarnUnaryDuration time.Duration
}

// withDefaults fills zero fields with etcd's defaults.
func (o Options) withDefaults() Options {
	if o.KeepAliveMinTime == 0 {
		o.KeepAliveMinTime = 5 * time.Second
	}
	if o.KeepAliveInterval == 0 {
		o.KeepAliveInterval = 2 * time.Hour
	}
	if o.KeepAliveTimeout == 0 {
		o.KeepAliveTimeout = 20 * time.Second
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = math.MaxUint32
	}
	if o.WarnUnaryDuration == 0 {
		o.WarnUnaryDuration = 300 * time.Millisecond
	}
	return o
}

// Serve starts serving member s's client API on ln, counting requests in
// m (one Metrics for all of a member's listeners). Stop ends it.
func Serve(s Backend, m *Metrics, ln net.Listener, o Options) (*ClientServer, error) {
	self, err := newSelfConn(s.Config().MaxRequestBytes)
	if err != nil {
		return nil, err
	}
	c := &ClientServer{
		split: newSplitListener(ln),
		grpc:  NewGRPCServer(s, m, o),
		self:  self,
	}
	v3lockpb.RegisterLockServer(c.grpc, &lockServer{cli: self.cli})
	v3electionpb.RegisterElectionServer(c.grpc, &electionServer{cli: self.cli})
	if !o.DisableGateway {
		gw, err := newGateway(self.conn)
		if err != nil {
			self.close()
			return nil, err
		}
		c.gateway = gw
	}
	c.http = &http.Server{Handler: withAccessControl(NewHTTPHandler(s, m, o.EnablePprof, c.Gateway()), o), ReadHeaderTimeout: 10 * time.Second}
	c.wg.Add(4)
	go func() { defer c.wg.Done(); _ = c.grpc.Serve(self.listener()) }()
	go func() { defer c.wg.Done(); c.split.serve() }()
	go func() { defer c.wg.Done(); _ = c.grpc.Serve(sub{l: c.split, conns: c.split.grpcConns}) }()
	go func() { defer c.wg.Done(); _ = c.http.Serve(sub{l: c.split, conns: c.split.httpConns}) }()
	return c, nil
}

// Gateway is the JSON gateway of c (nil if disabled), to serve on other
// listeners too (--listen-client-http-urls).
func (c *ClientServer) Gateway() http.Handler {
	if c.gateway == nil {
		return nil
	}
	return c.gateway
}

// Stop closes the listener and every client connection and waits for
// the serving goroutines.
func (c *ClientServer) Stop() {
	c.split.Close()
	c.self.close()
	c.grpc.Stop()
	c.http.Close()
	c.wg.Wait()
}

// HTTPServer serves the HTTP endpoints alone on a listener of its own:
// etcd's --listen-metrics-urls, where monitoring scrapes /metrics and
// probes /health, /livez and /readyz without reaching the client port,
// and --listen-client-http-urls.
type HTTPServer struct {
	http *http.Server
	done chan struct{}
}

// ServeHTTP starts serving /metrics, /health, /livez, /readyz and
// /version of member s on ln; with client options (not nil) also the
// client port's HTTP side: /debug/pprof if asked, the JSON gateway if
// given, behind the host whitelist and CORS. Stop ends it.
func ServeHTTP(s Backend, m *Metrics, ln net.Listener, client *Options, gateway http.Handler) *HTTPServer {
	var h http.Handler
	if client == nil {
		h = NewHTTPHandler(s, m, false, nil)
	} else {
		h = withAccessControl(NewHTTPHandler(s, m, client.EnablePprof, gateway), *client)
	}
	hs := &HTTPServer{
		http: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(hs.done)
		_ = hs.http.Serve(ln)
	}()
	return hs
}

// Stop closes the listener and its connections and waits for the
// serving goroutine.
func (h *HTTPServer) Stop() {
	h.http.Close()
	<-h.done
}

package v3rpc

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// ClientServer serves one client listener: gRPC and HTTP on one port.
type ClientServer struct {
	split *splitListener
	grpc  *grpc.Server
	http  *http.Server
	wg    sync.WaitGroup
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
	return o
}

// Serve starts serving member s's client API on ln. Stop ends it.
func Serve(s Backend, ln net.Listener, o Options) *ClientServer {
	m := NewMetrics(s)
	c := &ClientServer{
		split: newSplitListener(ln),
		grpc:  NewGRPCServer(s, m, o),
		http:  &http.Server{Handler: NewHTTPHandler(s, m, o.EnablePprof), ReadHeaderTimeout: 10 * time.Second},
	}
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.split.serve() }()
	go func() { defer c.wg.Done(); _ = c.grpc.Serve(sub{l: c.split, conns: c.split.grpcConns}) }()
	go func() { defer c.wg.Done(); _ = c.http.Serve(sub{l: c.split, conns: c.split.httpConns}) }()
	return c
}

// Stop closes the listener and every client connection and waits for
// the serving goroutines.
func (c *ClientServer) Stop() {
	c.split.Close()
	c.grpc.Stop()
	c.http.Close()
	c.wg.Wait()
}

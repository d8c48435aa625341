package v3rpc

import (
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

// Serve starts serving member s's client API on ln. Stop ends it.
func Serve(s Backend, ln net.Listener, enablePprof bool) *ClientServer {
	m := NewMetrics(s)
	c := &ClientServer{
		split: newSplitListener(ln),
		grpc:  NewGRPCServer(s, m),
		http:  &http.Server{Handler: NewHTTPHandler(s, m, enablePprof), ReadHeaderTimeout: 10 * time.Second},
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

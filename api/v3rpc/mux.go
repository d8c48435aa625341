package v3rpc

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// http2Preface is what every HTTP/2 connection (gRPC) begins with.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// splitListener serves gRPC and plain HTTP on one port, as etcd does: it
// peeks at the first bytes of each connection and hands HTTP/2 ones to
// the gRPC listener and the rest to the HTTP listener. gRPC connections
// thus reach grpc.Server.Serve directly (its fast path), not through
// net/http.
type splitListener struct {
	ln        net.Listener
	grpcConns chan net.Conn
	httpConns chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// errListenerClosed is returned by Accept after Close.
var errListenerClosed = errors.New("v3rpc: listener closed")

func newSplitListener(ln net.Listener) *splitListener {
	return &splitListener{ln: ln, grpcConns: make(chan net.Conn), httpConns: make(chan net.Conn), closed: make(chan struct{})}
}

// serve accepts connections until the listener is closed.
func (l *splitListener) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			l.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.route(c)
		}()
	}
}

// route classifies one connection by its first bytes.
func (l *splitListener) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, len(http2Preface))
	head, err := br.Peek(len(http2Preface))
	_ = c.SetReadDeadline(time.Time{})
	if err != nil && len(head) == 0 {
		c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: br}
	target := l.httpConns
	if bytes.Equal(head, http2Preface) {
		target = l.grpcConns
	}
	select {
	case target <- pc:
	case <-l.closed:
		c.Close()
	}
}

// Close stops accepting and waits for connections being classified.
func (l *splitListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.ln.Close()
	})
	l.wg.Wait()
	return nil
}

// sub is one side (gRPC or HTTP) of a splitListener.
type sub struct {
	l     *splitListener
	conns chan net.Conn
}

func (s sub) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.l.closed:
		return nil, errListenerClosed
	}
}

func (s sub) Close() error   { return nil }
func (s sub) Addr() net.Addr { return s.l.ln.Addr() }

// peekedConn replays the bytes peeked at before the rest of the stream.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

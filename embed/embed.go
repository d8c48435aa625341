// Package embed runs a complete synod member in a process: listeners,
// the server, and the client API. cmd/synod is a thin layer of flags over
// it, and tests start whole clusters in one process with it.
package embed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/synod-db/synod/api/v3rpc"
	"github.com/synod-db/synod/server"
)

// Config is a member's configuration: the server's plus where to listen.
type Config struct {
	server.Config
	// ListenPeerURLs and ListenClientURLs are the addresses to bind
	// (etcd's --listen-peer-urls and --listen-client-urls).
	ListenPeerURLs, ListenClientURLs []string
	// PeerListener and ClientListeners, if set, are used instead of
	// binding the URLs above (tests bind port 0 first).
	PeerListener    net.Listener
	ClientListeners []net.Listener
	// API tunes the client API: /debug/pprof, gRPC keepalive and stream
	// limits (etcd's --enable-pprof, --grpc-keepalive-*,
	// --max-concurrent-streams).
	API v3rpc.Options
}

// Member is a running member.
type Member struct {
	Server  *server.Server
	clients []*v3rpc.ClientServer
	addrs   []net.Addr
	once    sync.Once
}

// Start binds the listeners, opens the data directory and starts serving.
func Start(cfg Config) (*Member, error) {
	peerLn := cfg.PeerListener
	var err error
	if peerLn == nil {
		if len(cfg.ListenPeerURLs) != 1 {
			return nil, fmt.Errorf("give exactly one listen peer URL, got %d", len(cfg.ListenPeerURLs))
		}
		if peerLn, err = listen(cfg.ListenPeerURLs[0]); err != nil {
			return nil, err
		}
	}
	clientLns := cfg.ClientListeners
	if clientLns == nil {
		for _, u := range cfg.ListenClientURLs {
			ln, err := listen(u)
			if err != nil {
				peerLn.Close()
				for _, l := range clientLns {
					l.Close()
				}
				return nil, err
			}
			clientLns = append(clientLns, ln)
		}
	}
	if len(clientLns) == 0 {
		peerLn.Close()
		return nil, errors.New("no client listener: give at least one listen client URL")
	}
	s, err := server.New(cfg.Config, peerLn)
	if err != nil {
		peerLn.Close()
		for _, l := range clientLns {
			l.Close()
		}
		return nil, err
	}
	s.Start()
	m := &Member{Server: s}
	for _, ln := range clientLns {
		m.addrs = append(m.addrs, ln.Addr())
		m.clients = append(m.clients, v3rpc.Serve(s, ln, cfg.API))
	}
	return m, nil
}

// listen binds an http://host:port URL.
func listen(raw string) (net.Listener, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("listen URL %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("listen URL %q: scheme must be http (TLS is not supported yet)", raw)
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", u.Host, err)
	}
	return ln, nil
}

// ClientAddrs are the bound client addresses.
func (m *Member) ClientAddrs() []net.Addr { return m.addrs }

// Close stops the member gracefully: a leader first hands leadership to
// the most up-to-date voter (bounded by timeout), then client serving
// stops, then the server.
func (m *Member) Close(timeout time.Duration) {
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		m.Server.TransferLeadershipOnStop(ctx)
		cancel()
		m.Kill()
	})
}

// Kill stops the member at once, without handing leadership over.
func (m *Member) Kill() {
	for _, c := range m.clients {
		c.Stop()
	}
	m.Server.Stop()
}

// Package embed runs a complete synod member in a process: listeners,
// the server, and the client API. cmd/synod is a thin layer of flags over
// it, and tests start whole clusters in one process with it.
package embed

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/synod-db/synod/api/v3rpc"
	"github.com/synod-db/synod/datadir"
	"github.com/synod-db/synod/discovery"
	"github.com/synod-db/synod/internal/endpoint"
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
	// ListenClientHTTPURLs are extra listeners for the client API's HTTP
	// endpoints alone (etcd's --listen-client-http-urls); the client URLs
	// serve them too.
	ListenClientHTTPURLs []string
	// DiscoveryEndpoints and DiscoveryToken, if set, find a new cluster's
	// members through a discovery cluster (etcd's v3 discovery) instead
	// of InitialCluster; a member that has data already ignores them.
	DiscoveryEndpoints   []string
	DiscoveryToken       string
	DiscoveryDialTimeout time.Duration
	// ReusePort and ReuseAddress set SO_REUSEPORT and SO_REUSEADDR on
	// the TCP listeners (etcd's --socket-reuse-port and
	// --socket-reuse-address).
	ReusePort, ReuseAddress bool
	// ListenMetricsURLs are extra plain HTTP listeners for /metrics and
	// the health endpoints (etcd's --listen-metrics-urls).
	ListenMetricsURLs []string
	// API tunes the client API: /debug/pprof, gRPC keepalive and stream
	// limits (etcd's --enable-pprof, --grpc-keepalive-*,
	// --max-concurrent-streams).
	API v3rpc.Options
}

// Member is a running member.
type Member struct {
	Server  *server.Server
	clients []*v3rpc.ClientServer
	https   []*v3rpc.HTTPServer // client HTTP and metrics listeners
	addrs   []net.Addr
	once    sync.Once
}

// Start binds the listeners, opens the data directory and starts serving.
func Start(cfg Config) (*Member, error) {
	var lns []net.Listener // everything bound, to close on failure
	fail := func(err error) (*Member, error) {
		for _, l := range lns {
			l.Close()
		}
		return nil, err
	}
	bind := func(urls []string) ([]net.Listener, error) {
		var out []net.Listener
		for _, u := range urls {
			ln, err := endpoint.Listen(u, endpoint.Socket{ReusePort: cfg.ReusePort, ReuseAddress: cfg.ReuseAddress})
			if err != nil {
				return nil, err
			}
			lns = append(lns, ln)
			out = append(out, ln)
		}
		return out, nil
	}
	if cfg.PeerListener != nil {
		lns = append(lns, cfg.PeerListener)
	}
	lns = append(lns, cfg.ClientListeners...)
	peerLn := cfg.PeerListener
	if peerLn == nil {
		if len(cfg.ListenPeerURLs) == 0 {
			return fail(errors.New("no peer listener: give at least one listen peer URL"))
		}
		lns, err := bind(cfg.ListenPeerURLs)
		if err != nil {
			return fail(err)
		}
		peerLn = endpoint.Merge(lns...)
	}
	clientLns := cfg.ClientListeners
	if clientLns == nil {
		var err error
		if clientLns, err = bind(cfg.ListenClientURLs); err != nil {
			return fail(err)
		}
	}
	if len(clientLns) == 0 {
		return fail(errors.New("no client listener: give at least one listen client URL"))
	}
	httpLns, err := bind(cfg.ListenClientHTTPURLs)
	if err != nil {
		return fail(err)
	}
	metricsLns, err := bind(cfg.ListenMetricsURLs)
	if err != nil {
		return fail(err)
	}
	if len(cfg.DiscoveryEndpoints) > 0 {
		if err := discover(&cfg); err != nil {
			return fail(err)
		}
	}
	s, err := server.New(cfg.Config, peerLn)
	if err != nil {
		return fail(err)
	}
	s.Start()
	m := &Member{Server: s}
	if cfg.Config.InitialCorruptCheck {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Config.RequestTimeout+5*time.Second)
		err := s.CheckInitialHash(ctx)
		cancel()
		if err != nil {
			s.Stop()
			return fail(err)
		}
	}
	metrics := v3rpc.NewMetrics(s)
	for i, ln := range clientLns {
		c, err := v3rpc.Serve(s, metrics, ln, cfg.API)
		if err != nil {
			for _, l := range clientLns[i:] {
				l.Close()
			}
			for _, l := range append(httpLns, metricsLns...) {
				l.Close()
			}
			m.Kill()
			return nil, err
		}
		m.addrs = append(m.addrs, ln.Addr())
		m.clients = append(m.clients, c)
	}
	for _, ln := range httpLns {
		m.https = append(m.https, v3rpc.ServeHTTP(s, metrics, ln, &cfg.API, m.clients[0].Gateway()))
	}
	for _, ln := range metricsLns {
		m.https = append(m.https, v3rpc.ServeHTTP(s, metrics, ln, nil, nil))
	}
	return m, nil
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
	for _, h := range m.https {
		h.Stop()
	}
	m.Server.Stop()
}

// discover fills cfg's initial cluster from the discovery service, unless
// the member has data already (a restart ignores discovery, as in etcd).
func discover(cfg *Config) error {
	layout := datadir.New(cfg.DataDir, cfg.WALDir)
	if _, err := os.Stat(layout.Member()); err == nil {
		return nil
	}
	ic, err := discovery.Join(context.Background(), discovery.Config{
		Endpoints:   cfg.DiscoveryEndpoints,
		Token:       cfg.DiscoveryToken,
		ID:          server.MemberID(cfg.PeerURLs, cfg.InitialClusterToken, 0),
		Name:        cfg.Name,
		PeerURLs:    cfg.PeerURLs,
		DialTimeout: cfg.DiscoveryDialTimeout,
	})
	if err != nil {
		return err
	}
	cfg.InitialCluster, cfg.InitialClusterState = ic, "new"
	return nil
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdClient is the part of *clientv3.Client that synodctl uses. Commands
// depend on it rather than on the concrete client so tests can run them
// against fakes.
type etcdClient interface {
	clientv3.KV
	clientv3.Cluster
	clientv3.Maintenance
	Close() error
}

// dialFunc creates a client for cfg.Endpoints.
type dialFunc func(cfg clientv3.Config) (etcdClient, error)

// dialEtcd is the dialFunc of the real program.
func dialEtcd(cfg clientv3.Config) (etcdClient, error) {
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// clientConfig returns the client configuration for endpoints under the
// global flags.
func (a *app) clientConfig(endpoints []string) (clientv3.Config, error) {
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: a.g.dialTimeout,
		// The client library logs at info level (e.g. every snapshot
		// download); its errors reach us as return values instead.
		Logger: zap.NewNop(),
	}
	if a.g.user != "" {
		name, pass, hasPass := strings.Cut(a.g.user, ":")
		if !hasPass {
			pass = a.g.password
		} else if a.g.password != "" {
			return cfg, errors.New("password given twice: in --user name:password and in --password")
		}
		if name == "" {
			return cfg, errors.New("--user needs a user name")
		}
		if pass == "" {
			return cfg, fmt.Errorf("no password for user %q: give --user %s:<password> or --password", name, name)
		}
		cfg.Username, cfg.Password = name, pass
	} else if a.g.password != "" {
		return cfg, errors.New("--password given without --user")
	}
	tlsCfg, err := a.g.tlsConfig(endpoints)
	if err != nil {
		return cfg, err
	}
	cfg.TLS = tlsCfg
	return cfg, nil
}

// tlsConfig returns the TLS configuration asked for by the flags, or nil for
// plain connections. TLS is used when any TLS flag is set or any endpoint is
// an https:// URL.
func (g *globalFlags) tlsConfig(endpoints []string) (*tls.Config, error) {
	use := g.cacert != "" || g.cert != "" || g.key != "" || g.insecureSkipTLSVerify
	for _, ep := range endpoints {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			use = true
		}
	}
	if !use {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: g.insecureSkipTLSVerify} //nolint:gosec // the user asked for it
	if g.cacert != "" {
		pem, err := os.ReadFile(g.cacert)
		if err != nil {
			return nil, fmt.Errorf("reading --cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s holds no PEM certificate", g.cacert)
		}
		cfg.RootCAs = pool
	}
	if (g.cert == "") != (g.key == "") {
		return nil, errors.New("--cert and --key must be given together")
	}
	if g.cert != "" {
		pair, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// connect dials endpoints (the global --endpoints when nil).
func (a *app) connect(endpoints []string) (etcdClient, error) {
	if endpoints == nil {
		endpoints = a.g.endpoints
	}
	cfg, err := a.clientConfig(endpoints)
	if err != nil {
		return nil, err
	}
	c, err := a.dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", strings.Join(endpoints, ","), err)
	}
	return c, nil
}

// requestContext returns a context bounded by --command-timeout.
func (a *app) requestContext(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, a.g.commandTimeout)
}

// explain adds a hint to errors whose bare text would leave the user
// guessing, such as a deadline hit because no server answered.
func (a *app) explain(err error, endpoints []string) error {
	if err == nil {
		return nil
	}
	if endpoints == nil {
		endpoints = a.g.endpoints
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (no answer from %s within --command-timeout=%v: is the server up and reachable?)",
			err, strings.Join(endpoints, ","), a.g.commandTimeout.Round(time.Millisecond))
	}
	return err
}

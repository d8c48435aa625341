// Package discovery finds a new cluster's members through a discovery
// service, as etcd's v3 discovery does (--discovery-endpoints,
// --discovery-token): an existing etcd (or synod) cluster where each
// starting member registers itself under the token and waits until the
// expected number have, then bootstraps with them as its initial cluster.
//
// The layout in the discovery cluster is etcd's, so that either system
// can serve the other:
//
//	/_etcd/registry/<token>/_config/size        the number of members
//	/_etcd/registry/<token>/members/<member ID> "name=peer-url,..."
//
// The first size members to register (by creation revision) form the
// cluster; a member that comes after them is refused.
package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors in etcd's words.
var (
	ErrSizeNotFound = errors.New("discovery: size key not found")
	ErrBadSizeKey   = errors.New("discovery: size key is bad")
	ErrFullCluster  = errors.New("discovery: cluster is full")
)

const registry = "/_etcd/registry"

// Config is what a member needs to discover its cluster.
type Config struct {
	// Endpoints are the discovery service's client URLs.
	Endpoints []string
	// Token names the cluster being formed.
	Token string
	// ID, Name and PeerURLs describe this member.
	ID       uint64
	Name     string
	PeerURLs []string
	// DialTimeout bounds connecting to the service (default 2s).
	DialTimeout time.Duration
}

func sizeKey(token string) string       { return path.Join(registry, token, "_config/size") }
func membersPrefix(token string) string { return path.Join(registry, token, "members") + "/" }

// Join registers this member under the token and waits until the
// cluster's size of members have registered, then returns the initial
// cluster: each member's name and peer URLs. It waits until ctx ends.
func Join(ctx context.Context, cfg Config) (map[string][]string, error) {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("discovery: connect to %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	defer cli.Close()

	resp, err := cli.Get(ctx, sizeKey(cfg.Token))
	if err != nil {
		return nil, fmt.Errorf("discovery: read the cluster size: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w (%s); set it in the discovery cluster first", ErrSizeNotFound, sizeKey(cfg.Token))
	}
	size, err := strconv.Atoi(string(resp.Kvs[0].Value))
	if err != nil || size <= 0 {
		return nil, fmt.Errorf("%w: %q", ErrBadSizeKey, resp.Kvs[0].Value)
	}

	self := membersPrefix(cfg.Token) + strconv.FormatUint(cfg.ID, 16)
	entries := make([]string, len(cfg.PeerURLs))
	for i, u := range cfg.PeerURLs {
		entries[i] = cfg.Name + "=" + u
	}
	members, _, err := registered(ctx, cli, cfg.Token)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(members, func(kv member) bool { return kv.key == self }) {
		if len(members) >= size {
			return nil, fmt.Errorf("%w: %d of %d members registered under %s", ErrFullCluster, len(members), size, cfg.Token)
		}
		if _, err := cli.Put(ctx, self, strings.Join(entries, ",")); err != nil {
			return nil, fmt.Errorf("discovery: register %s: %w", self, err)
		}
	}
	for {
		var rev int64
		if members, rev, err = registered(ctx, cli, cfg.Token); err != nil {
			return nil, err
		}
		if len(members) >= size {
			break
		}
		// Wait for the next registration.
		wctx, cancel := context.WithCancel(ctx)
		for w := range cli.Watch(wctx, membersPrefix(cfg.Token), clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if w.Err() != nil || len(w.Events) > 0 {
				break
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("discovery: waiting for %d members, %d registered: %w", size, len(members), err)
		}
	}
	members = members[:size]
	if !slices.ContainsFunc(members, func(kv member) bool { return kv.key == self }) {
		return nil, fmt.Errorf("%w: %d members registered before this one", ErrFullCluster, size)
	}
	out := map[string][]string{}
	for _, m := range members {
		for _, entry := range strings.Split(m.value, ",") {
			name, u, ok := strings.Cut(entry, "=")
			if !ok {
				return nil, fmt.Errorf("discovery: member %s registered %q, want name=peer-url", m.key, m.value)
			}
			out[name] = append(out[name], u)
		}
	}
	return out, nil
}

type member struct {
	key, value string
	created    int64
}

// registered lists the members registered under token, first come first,
// and the revision of the read.
func registered(ctx context.Context, cli *clientv3.Client, token string) ([]member, int64, error) {
	resp, err := cli.Get(ctx, membersPrefix(token), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("discovery: list the registered members: %w", err)
	}
	out := make([]member, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = member{key: string(kv.Key), value: string(kv.Value), created: kv.CreateRevision}
	}
	slices.SortFunc(out, func(a, b member) int { return cmp.Compare(a.created, b.created) })
	return out, resp.Header.Revision, nil
}

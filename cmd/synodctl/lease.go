package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file holds the lease commands: grant, revoke, timetolive, list and
// keep-alive, with etcdctl's output.

func (a *app) leaseCommand() *cobra.Command {
	return groupCommand("lease", "Grant, revoke, inspect and keep alive leases",
		a.leaseGrantCommand(),
		a.leaseRevokeCommand(),
		a.leaseTimeToLiveCommand(),
		a.leaseListCommand(),
		a.leaseKeepAliveCommand(),
	)
}

// leaseClient connects and returns the client's lease API. Commands that
// do not use leases keep working with clients that lack it (test fakes),
// so it is asserted here rather than required of every etcdClient.
func (a *app) leaseClient() (clientv3.Lease, func() error, error) {
	c, err := a.connect(nil)
	if err != nil {
		return nil, nil, err
	}
	lc, ok := c.(clientv3.Lease)
	if !ok {
		c.Close()
		return nil, nil, errors.New("this client has no lease API")
	}
	return lc, c.Close, nil
}

// leaseCall connects, makes one lease request with the request timeout
// and prints the response: as JSON when asked, else with text.
func leaseCall[R any](a *app, cmd *cobra.Command, call func(context.Context, clientv3.Lease) (R, error), text func(*printer, R) error) error {
	lc, closeFn, err := a.leaseClient()
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, cancel := a.requestContext(cmd.Context())
	defer cancel()
	resp, err := call(ctx, lc)
	if err != nil {
		return a.explain(err, nil)
	}
	p := a.printer()
	if p.format == formatJSON {
		return p.json(resp)
	}
	return text(p, resp)
}

// leaseArg parses the one <leaseID> argument.
func leaseArg(cmd *cobra.Command, args []string) (clientv3.LeaseID, error) {
	id, err := parseLeaseID(args[0])
	if err != nil {
		return 0, usageErrorf(cmd, "%v", err)
	}
	return id, nil
}

func (a *app) leaseGrantCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "grant <ttl>",
		Short: "Grant a lease of <ttl> seconds and print its ID",
		Long: `Grant creates a lease that lives <ttl> seconds unless kept alive. Keys put
with --lease <ID> are deleted when it expires or is revoked. The server may
raise a TTL below its minimum (one and a half election timeouts).`,
		Args: argsBetween(1, 1, "<ttl>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ttl, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return usageErrorf(cmd, "bad TTL %q: want a number of seconds", args[0])
			}
			return leaseCall(a, cmd, func(ctx context.Context, lc clientv3.Lease) (*clientv3.LeaseGrantResponse, error) {
				return lc.Grant(ctx, ttl)
			}, func(p *printer, resp *clientv3.LeaseGrantResponse) error {
				p.linef("lease %016x granted with TTL(%ds)", resp.ID, resp.TTL)
				return nil
			})
		},
	}
}

func (a *app) leaseRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke <leaseID>",
		Short: "Revoke a lease, deleting every key attached to it",
		Args:  argsBetween(1, 1, "<leaseID>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseArg(cmd, args)
			if err != nil {
				return err
			}
			return leaseCall(a, cmd, func(ctx context.Context, lc clientv3.Lease) (*clientv3.LeaseRevokeResponse, error) {
				return lc.Revoke(ctx, id)
			}, func(p *printer, _ *clientv3.LeaseRevokeResponse) error {
				p.linef("lease %016x revoked", id)
				return nil
			})
		},
	}
}

func (a *app) leaseTimeToLiveCommand() *cobra.Command {
	var keys bool
	cmd := &cobra.Command{
		Use:   "timetolive <leaseID>",
		Short: "Print a lease's granted and remaining TTL (and, with --keys, its keys)",
		Args:  argsBetween(1, 1, "<leaseID>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseArg(cmd, args)
			if err != nil {
				return err
			}
			var opts []clientv3.LeaseOption
			if keys {
				opts = append(opts, clientv3.WithAttachedKeys())
			}
			return leaseCall(a, cmd, func(ctx context.Context, lc clientv3.Lease) (*clientv3.LeaseTimeToLiveResponse, error) {
				return lc.TimeToLive(ctx, id, opts...)
			}, func(p *printer, resp *clientv3.LeaseTimeToLiveResponse) error {
				return p.timeToLive(resp, keys)
			})
		},
	}
	cmd.Flags().BoolVar(&keys, "keys", false, "also list the keys attached to the lease")
	return cmd
}

// timeToLive prints etcdctl's line: the TTLs and, if asked, the keys; or
// that the lease expired (the server answers TTL -1 for unknown leases).
func (p *printer) timeToLive(resp *clientv3.LeaseTimeToLiveResponse, keys bool) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	if resp.TTL == -1 && resp.GrantedTTL == 0 {
		p.linef("lease %016x already expired", resp.ID)
		return nil
	}
	line := fmt.Sprintf("lease %016x granted with TTL(%ds), remaining(%ds)", resp.ID, resp.GrantedTTL, resp.TTL)
	if keys {
		names := make([]string, len(resp.Keys))
		for i, k := range resp.Keys {
			names[i] = p.bytes(k)
		}
		line += fmt.Sprintf(", attached keys(%v)", names)
	}
	p.linef("%s", line)
	return nil
}

func (a *app) leaseListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the IDs of all leases",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return leaseCall(a, cmd, func(ctx context.Context, lc clientv3.Lease) (*clientv3.LeaseLeasesResponse, error) {
				return lc.Leases(ctx)
			}, func(p *printer, resp *clientv3.LeaseLeasesResponse) error {
				p.linef("found %d leases", len(resp.Leases))
				for _, l := range resp.Leases {
					p.linef("%016x", l.ID)
				}
				return nil
			})
		},
	}
}

func (a *app) leaseKeepAliveCommand() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keep-alive <leaseID>",
		Short: "Keep a lease alive until interrupted (or renew it once with --once)",
		Long: `keep-alive renews the lease whenever a third of its TTL has passed and prints
each new TTL, until interrupted or until the lease expires or is revoked.
With --once it renews the lease once and exits.`,
		Args: argsBetween(1, 1, "<leaseID>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseArg(cmd, args)
			if err != nil {
				return err
			}
			lc, closeFn, err := a.leaseClient()
			if err != nil {
				return err
			}
			defer closeFn()
			p := a.printer()
			if once {
				ctx, cancel := a.requestContext(cmd.Context())
				defer cancel()
				resp, err := lc.KeepAliveOnce(ctx, id)
				if err != nil {
					return a.explain(err, nil)
				}
				return p.keepAlive(resp)
			}
			return a.keepAliveLoop(cmd.Context(), lc, id, p)
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "renew the lease once and exit")
	return cmd
}

// keepAliveLoop prints every renewal of id until ctx ends (success) or
// the lease is gone.
func (a *app) keepAliveLoop(ctx context.Context, lc clientv3.Lease, id clientv3.LeaseID, p *printer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := lc.KeepAlive(ctx, id)
	if err != nil {
		return a.explain(err, nil)
	}
	for resp := range ch {
		if err := p.keepAlive(resp); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	if p.format != formatJSON {
		p.linef("lease %016x expired or revoked.", id)
	}
	return nil
}

// keepAlive prints one renewal.
func (p *printer) keepAlive(resp *clientv3.LeaseKeepAliveResponse) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	p.linef("lease %016x keepalived with TTL(%d)", resp.ID, resp.TTL)
	return nil
}

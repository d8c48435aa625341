package main

import (
	"strconv"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) compactionCommand() *cobra.Command {
	var physical bool
	cmd := &cobra.Command{
		Use:     "compaction <revision>",
		Aliases: []string{"compact"},
		Short:   "Discard the key history before a revision",
		Long: `Compaction discards every key version older than <revision>; reads and
watches at earlier revisions fail afterwards. With --physical it returns only
once the space is reclaimed on the server.`,
		Args: argsBetween(1, 1, "<revision>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rev, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || rev <= 0 {
				return usageErrorf(cmd, "bad revision %q: want a positive integer", args[0])
			}
			var opts []clientv3.CompactOption
			if physical {
				opts = append(opts, clientv3.WithCompactPhysical())
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()
			resp, err := c.Compact(ctx, rev, opts...)
			if err != nil {
				return a.explain(err, nil)
			}
			return a.printer().compaction(resp, rev)
		},
	}
	cmd.Flags().BoolVar(&physical, "physical", false, "wait until the compacted space is reclaimed")
	return cmd
}

// compaction prints "compacted revision N".
func (p *printer) compaction(resp *clientv3.CompactResponse, rev int64) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	p.linef("compacted revision %d", rev)
	return nil
}

package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// defragResult is the outcome of defragmenting one endpoint (and its JSON
// output).
type defragResult struct {
	Endpoint string                       `json:"endpoint"`
	Response *clientv3.DefragmentResponse `json:"response,omitempty"`
	Error    string                       `json:"error,omitempty"`
}

func (a *app) defragCommand() *cobra.Command {
	var cluster bool
	cmd := &cobra.Command{
		Use:   "defrag",
		Short: "Reclaim free space in the storage of each endpoint",
		Long: `Defrag asks each endpoint in --endpoints (or with --cluster, each member) to
compact its storage file, one endpoint after another. A member may stall
while it defragments: avoid running it on all members of a busy cluster at
once, and raise --command-timeout for large databases.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := a.targetEndpoints(cmd.Context(), cluster)
			if err != nil {
				return err
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			var results []defragResult
			failed := 0
			for _, ep := range eps {
				ctx, cancel := a.requestContext(cmd.Context())
				resp, err := c.Defragment(ctx, ep)
				cancel()
				r := defragResult{Endpoint: ep, Response: resp}
				if err != nil {
					failed++
					r.Error = a.explain(err, []string{ep}).Error()
				}
				results = append(results, r)
			}
			if err := a.printer().defrag(results, a.stderr); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("failed to defragment %d of %d endpoints", failed, len(eps))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&cluster, "cluster", false, "defragment every member (its client URLs from member list) instead of --endpoints")
	return cmd
}

// defrag prints one line per endpoint; failures go to errw in simple output.
func (p *printer) defrag(results []defragResult, errw io.Writer) error {
	if p.format == formatJSON {
		return p.json(results)
	}
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(errw, "Failed to defragment member %s: %s\n", r.Endpoint, r.Error)
			continue
		}
		p.linef("Finished defragmenting member %s", r.Endpoint)
	}
	return nil
}

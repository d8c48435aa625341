package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) moveLeaderCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "move-leader <transferee-member-id>",
		Short: "Hand the leadership over to another member",
		Long: `Move-leader asks the current leader to transfer its leadership to the member
with the given ID (hex, as member list prints it). The leader is found by
asking the endpoints for their status; it need not be among --endpoints, as
long as one of them can tell who it is.`,
		Args: argsBetween(1, 1, "<transferee-member-id> (hex, as member list prints it)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := parseMemberID(args[0])
			if err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()

			// Find the leader: an endpoint that is the leader itself, or
			// else the leader any endpoint reports, reached through its
			// client URLs from member list.
			var leaderID uint64
			var leaderEndpoints []string
			var lastErr error
			for _, ep := range a.g.endpoints {
				st, err := c.Status(ctx, ep)
				if err != nil {
					lastErr = err
					continue
				}
				if st.Leader == 0 {
					continue
				}
				leaderID = st.Leader
				if st.Header.GetMemberId() == st.Leader {
					leaderEndpoints = []string{ep}
					break
				}
			}
			if leaderID == 0 {
				if lastErr != nil {
					return fmt.Errorf("finding the leader: %w", a.explain(lastErr, nil))
				}
				return fmt.Errorf("no endpoint of %s knows a leader (the cluster may be electing one); try again", strings.Join(a.g.endpoints, ","))
			}
			if leaderID == target {
				return fmt.Errorf("member %s is already the leader", memberIDString(target))
			}
			if leaderEndpoints == nil {
				list, err := c.MemberList(ctx)
				if err != nil {
					return fmt.Errorf("finding the leader's client URLs: %w", a.explain(err, nil))
				}
				for _, m := range list.Members {
					if m.GetID() == leaderID {
						leaderEndpoints = m.GetClientURLs()
					}
				}
				if len(leaderEndpoints) == 0 {
					return fmt.Errorf("the leader %s has no client URL in member list; pass its address in --endpoints", memberIDString(leaderID))
				}
			}
			lc, err := a.connect(leaderEndpoints)
			if err != nil {
				return err
			}
			defer lc.Close()
			resp, err := lc.MoveLeader(ctx, target)
			if err != nil {
				return a.explain(err, leaderEndpoints)
			}
			return a.printer().moveLeader(resp, leaderID, target)
		},
	}
	return cmd
}

// moveLeader prints "Leadership transferred from <old> to <new>".
func (p *printer) moveLeader(resp *clientv3.MoveLeaderResponse, from, to uint64) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	p.linef("Leadership transferred from %s to %s", memberIDString(from), memberIDString(to))
	return nil
}

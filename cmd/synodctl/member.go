package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) memberCommand() *cobra.Command {
	return groupCommand("member", "List and change the members of the cluster",
		a.memberListCommand(),
		a.memberAddCommand(),
		a.memberRemoveCommand(),
		a.memberUpdateCommand(),
		a.memberPromoteCommand(),
	)
}

func (a *app) memberListCommand() *cobra.Command {
	var consistency string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the members of the cluster",
		Long: `List prints one line per member: ID (hex), status (started, or unstarted for a
member added but not yet running), name, peer URLs, client URLs, and whether
it is a learner.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []clientv3.OpOption
			switch strings.ToLower(consistency) {
			case "l":
			case "s":
				opts = append(opts, clientv3.WithSerializable())
			default:
				return usageErrorf(cmd, "unknown --consistency %q: want l (linearizable) or s (serializable)", consistency)
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()
			resp, err := c.MemberList(ctx, opts...)
			if err != nil {
				return a.explain(err, nil)
			}
			return a.printer().memberList(resp)
		},
	}
	cmd.Flags().StringVar(&consistency, "consistency", "l", "l (linearizable) or s (serializable: answered by the endpoint alone)")
	return setFormats(cmd, formatSimple, formatJSON, formatTable)
}

func (a *app) memberAddCommand() *cobra.Command {
	var peerURLs []string
	var learner bool
	cmd := &cobra.Command{
		Use:   "add <name> --peer-urls=<url>[,<url>...]",
		Short: "Add a member to the cluster",
		Long: `Add announces a new member to the cluster, then prints the settings the new
member must start with (ETCD_NAME, ETCD_INITIAL_CLUSTER, ...). Start it with
those right away: until it joins, the cluster counts it in its quorum (unless it
was added with --learner).`,
		Args: argsBetween(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if strings.TrimSpace(name) == "" {
				return usageErrorf(cmd, "the member name must not be empty")
			}
			if len(peerURLs) == 0 {
				return usageErrorf(cmd, "member add needs --peer-urls")
			}
			if err := checkURLs("--peer-urls", peerURLs); err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()
			var resp *clientv3.MemberAddResponse
			if learner {
				resp, err = c.MemberAddAsLearner(ctx, peerURLs)
			} else {
				resp, err = c.MemberAdd(ctx, peerURLs)
			}
			if err != nil {
				return a.explain(err, nil)
			}
			members := resp.Members
			if len(members) == 0 && a.g.writeOut == formatSimple {
				// The response should list the members; ask if it does not.
				if list, lerr := c.MemberList(ctx); lerr == nil {
					members = list.Members
				}
			}
			return a.printer().memberAdd(resp, name, members, a.stderr)
		},
	}
	cmd.Flags().StringSliceVar(&peerURLs, "peer-urls", nil, "the new member's peer URLs, comma separated")
	cmd.Flags().BoolVar(&learner, "learner", false, "add the member as a learner (non-voting until promoted)")
	return cmd
}

func (a *app) memberRemoveCommand() *cobra.Command {
	return a.memberByIDCommand("remove", "Remove a member from the cluster", "removed from",
		func(ctx context.Context, c etcdClient, id uint64) (any, *pb.ResponseHeader, error) {
			resp, err := c.MemberRemove(ctx, id)
			return resp, (*pb.MemberRemoveResponse)(resp).GetHeader(), err
		})
}

// memberByIDCommand builds a command that changes one member, given by
// its hex ID, with call and reports the change with verb.
func (a *app) memberByIDCommand(use, short, verb string, call func(ctx context.Context, c etcdClient, id uint64) (any, *pb.ResponseHeader, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " <member-id>",
		Short: short,
		Args:  argsBetween(1, 1, "<member-id> (hex, as member list prints it)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseMemberID(args[0])
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
			resp, header, err := call(ctx, c, id)
			if err != nil {
				return a.explain(err, nil)
			}
			return a.printer().memberChange(resp, header, id, verb)
		},
	}
}

func (a *app) memberUpdateCommand() *cobra.Command {
	var peerURLs []string
	cmd := &cobra.Command{
		Use:   "update <member-id> --peer-urls=<url>[,<url>...]",
		Short: "Change the peer URLs of a member",
		Args:  argsBetween(1, 1, "<member-id> (hex, as member list prints it)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseMemberID(args[0])
			if err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			if len(peerURLs) == 0 {
				return usageErrorf(cmd, "member update needs --peer-urls")
			}
			if err := checkURLs("--peer-urls", peerURLs); err != nil {
				return &usageError{cmd: cmd, msg: err.Error()}
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := a.requestContext(cmd.Context())
			defer cancel()
			resp, err := c.MemberUpdate(ctx, id, peerURLs)
			if err != nil {
				return a.explain(err, nil)
			}
			return a.printer().memberChange(resp, (*pb.MemberUpdateResponse)(resp).GetHeader(), id, "updated in")
		},
	}
	cmd.Flags().StringSliceVar(&peerURLs, "peer-urls", nil, "the member's new peer URLs, comma separated")
	return cmd
}

func (a *app) memberPromoteCommand() *cobra.Command {
	return a.memberByIDCommand("promote", "Promote a learner to a voting member", "promoted in",
		func(ctx context.Context, c etcdClient, id uint64) (any, *pb.ResponseHeader, error) {
			resp, err := c.MemberPromote(ctx, id)
			return resp, (*pb.MemberPromoteResponse)(resp).GetHeader(), err
		})
}

// parseMemberID parses a member ID written in hexadecimal.
func parseMemberID(s string) (uint64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	id, err := strconv.ParseUint(t, 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("bad member ID %q: want a non-zero hexadecimal ID as member list prints it, e.g. 8e9e05c52164694d", s)
	}
	return id, nil
}

// checkURLs checks that each of urls is an absolute http(s) or unix(s) URL
// with a host.
func checkURLs(flag string, urls []string) error {
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs") {
			return fmt.Errorf("bad %s entry %q: want a URL such as http://10.0.0.4:2380", flag, s)
		}
	}
	return nil
}

// memberStatus is "started", or "unstarted" for a member that was added but
// has not joined yet (it has no name until it does).
func memberStatus(m *pb.Member) string {
	if m.GetName() == "" {
		return "unstarted"
	}
	return "started"
}

// memberRow is a member's fields as member list prints them.
func memberRow(m *pb.Member) []string {
	return []string{
		memberIDString(m.GetID()),
		memberStatus(m),
		m.GetName(),
		strings.Join(m.GetPeerURLs(), ","),
		strings.Join(m.GetClientURLs(), ","),
		strconv.FormatBool(m.GetIsLearner()),
	}
}

// memberList prints one member per line (simple), as a table, or as JSON.
func (p *printer) memberList(resp *clientv3.MemberListResponse) error {
	switch p.format {
	case formatJSON:
		return p.json(resp)
	case formatTable:
		rows := make([][]string, 0, len(resp.Members))
		for _, m := range resp.Members {
			rows = append(rows, memberRow(m))
		}
		return p.table([]string{"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"}, rows)
	}
	for _, m := range resp.Members {
		p.linef("%s", strings.Join(memberRow(m), ", "))
	}
	return nil
}

// memberAdd prints the outcome of member add: a confirmation, then the
// environment the new member must start with. Warnings go to warn.
func (p *printer) memberAdd(resp *clientv3.MemberAddResponse, name string, members []*pb.Member, warn io.Writer) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	m := resp.Member
	kind := "Member"
	if m.GetIsLearner() {
		kind = "Learner member"
	}
	p.linef("%s %s added to cluster %s", kind, memberIDString(m.GetID()), memberIDString(resp.Header.GetClusterId()))
	cluster, skipped := initialCluster(members, m.GetID(), name, m.GetPeerURLs())
	for _, id := range skipped {
		fmt.Fprintf(warn, "Warning: member %s has not started yet (it has no name), so it is left out of ETCD_INITIAL_CLUSTER; start it first or add it by hand\n", memberIDString(id))
	}
	p.linef("")
	p.linef("ETCD_NAME=%q", name)
	p.linef("ETCD_INITIAL_CLUSTER=%q", cluster)
	p.linef("ETCD_INITIAL_ADVERTISE_PEER_URLS=%q", strings.Join(m.GetPeerURLs(), ","))
	p.linef("ETCD_INITIAL_CLUSTER_STATE=%q", "existing")
	return nil
}

// initialCluster builds the name=peerURL list a new member starts with: every
// peer URL of every member, naming the new member newName. Other members
// without a name (added but not started) cannot be listed; their IDs are
// returned in skipped.
func initialCluster(members []*pb.Member, newID uint64, newName string, newPeerURLs []string) (cluster string, skipped []uint64) {
	var parts []string
	sawNew := false
	for _, m := range members {
		name := m.GetName()
		if m.GetID() == newID {
			name, sawNew = newName, true
		}
		if name == "" {
			skipped = append(skipped, m.GetID())
			continue
		}
		for _, u := range m.GetPeerURLs() {
			parts = append(parts, name+"="+u)
		}
	}
	if !sawNew {
		for _, u := range newPeerURLs {
			parts = append(parts, newName+"="+u)
		}
	}
	return strings.Join(parts, ","), skipped
}

// memberChange prints "Member <id> <verb> cluster <cluster-id>" for remove,
// update and promote.
func (p *printer) memberChange(resp any, header *pb.ResponseHeader, id uint64, verb string) error {
	if p.format == formatJSON {
		return p.json(resp)
	}
	p.linef("Member %s %s cluster %s", memberIDString(id), verb, memberIDString(header.GetClusterId()))
	return nil
}

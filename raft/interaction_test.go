package raft_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/synod-db/synod/raft"
	"github.com/synod-db/synod/raft/rafttest"
)

// TestInteraction runs the scripts in testdata/interaction: scenarios of
// a whole cluster on rafttest's deterministic network, written as
// commands and the state they must leave. Rewrite the expected output
// after an intended change with
//
//	go test ./raft -run TestInteraction -rewrite
//
// Commands (ids are member IDs):
//
//	cluster voters=(1,2,3) [learners=(4)] [prevote] [checkquorum]
//	elect <id>            campaign and stabilize; <id> must win
//	campaign <id>         start an election, deliver nothing
//	propose <id> <data>   propose a normal entry
//	stabilize             process and deliver until nothing moves
//	deliver               one round of message delivery
//	tick <id>|all [n=<k>] tick a member (or all) k times (default 1)
//	partition (ids) (ids)...   cut every link between the groups
//	heal                  mend every link
//	crash <id>            lose the member's volatile state
//	restart <id>          start it again from its storage
//	transfer-leader <from> <to>
//	compact <id> keep=<n> compact the member's log, keeping n entries
//	status                one line per member: role, term, leader,
//	                      commit, applied, last index, snapshot index
//	data <id>             the data of the normal entries it applied
func TestInteraction(t *testing.T) {
	datadriven.Walk(t, "testdata/interaction", func(t *testing.T, path string) {
		var c *rafttest.Cluster
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "cluster" && c == nil {
				d.Fatalf(t, "%s before cluster", d.Cmd)
			}
			out, err := interact(t, &c, d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

func interact(t *testing.T, cp **rafttest.Cluster, d *datadriven.TestData) (string, error) {
	c := *cp
	id := func(i int) uint64 {
		if len(d.CmdArgs) <= i {
			d.Fatalf(t, "%s needs a member ID", d.Cmd)
		}
		v, err := strconv.ParseUint(d.CmdArgs[i].Key, 10, 64)
		if err != nil {
			d.Fatalf(t, "%s: member ID %q: %v", d.Cmd, d.CmdArgs[i].Key, err)
		}
		return v
	}
	switch d.Cmd {
	case "cluster":
		var voters, learners []uint64
		opts := rafttest.Options{}
		for _, a := range d.CmdArgs {
			switch a.Key {
			case "voters":
				voters = parseIDs(t, d, a.Vals)
			case "learners":
				learners = parseIDs(t, d, a.Vals)
			case "prevote":
				opts.PreVote = true
			case "checkquorum":
				opts.CheckQuorum = true
			default:
				d.Fatalf(t, "cluster: unknown argument %q", a.Key)
			}
		}
		nc, err := rafttest.New(opts, voters, learners)
		if err != nil {
			return "", err
		}
		*cp = nc
		return "ok\n", nil
	case "elect":
		if err := c.ElectLeader(id(0)); err != nil {
			return "", err
		}
		return clusterStatus(c), nil
	case "campaign":
		return "ok\n", c.Campaign(id(0))
	case "propose":
		if len(d.CmdArgs) != 2 {
			d.Fatalf(t, "propose <id> <data>")
		}
		return "ok\n", c.Propose(id(0), []byte(d.CmdArgs[1].Key))
	case "stabilize":
		if err := c.Stabilize(); err != nil {
			return "", err
		}
		return clusterStatus(c), nil
	case "deliver":
		c.DeliverRound()
		if _, err := c.ProcessAll(); err != nil {
			return "", err
		}
		return clusterStatus(c), nil
	case "tick":
		n := 1
		if d.HasArg("n") {
			d.ScanArgs(t, "n", &n)
		}
		for range n {
			if d.CmdArgs[0].Key == "all" {
				c.TickAll()
			} else {
				c.Tick(id(0))
			}
		}
		return "ok\n", nil
	case "partition":
		var groups [][]uint64
		for _, a := range d.CmdArgs {
			groups = append(groups, parseIDs(t, d, strings.Split(strings.Trim(a.Key, "()"), ",")))
		}
		c.Net.Partition(groups...)
		return "ok\n", nil
	case "heal":
		c.Net.Heal()
		return "ok\n", nil
	case "crash":
		c.Crash(id(0))
		return "ok\n", nil
	case "restart":
		return "ok\n", c.Restart(id(0))
	case "transfer-leader":
		c.TransferLeader(id(0), id(1))
		return "ok\n", nil
	case "compact":
		var keep uint64
		d.ScanArgs(t, "keep", &keep)
		return "ok\n", c.Compact(id(0), keep)
	case "status":
		return clusterStatus(c), nil
	case "data":
		var b strings.Builder
		for _, x := range c.Member(id(0)).Data {
			fmt.Fprintf(&b, "%s\n", x)
		}
		return b.String(), nil
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return "", nil
}

func parseIDs(t *testing.T, d *datadriven.TestData, vals []string) []uint64 {
	var ids []uint64
	for _, v := range vals {
		x, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			d.Fatalf(t, "member ID %q: %v", v, err)
		}
		ids = append(ids, x)
	}
	return ids
}

// clusterStatus prints one line per member, in ID order.
func clusterStatus(c *rafttest.Cluster) string {
	var b strings.Builder
	ids := slices.Clone(c.IDs())
	slices.Sort(ids)
	for _, id := range ids {
		m := c.Member(id)
		if m.Node == nil {
			fmt.Fprintf(&b, "%d: crashed\n", id)
			continue
		}
		st := m.Node.BasicStatus()
		last, _ := m.Storage.LastIndex()
		snap, _ := m.Storage.Snapshot()
		fmt.Fprintf(&b, "%d: %s term=%d lead=%d commit=%d applied=%d last=%d snap=%d\n",
			id, roleName(st.RaftState), st.Term, st.Lead, st.Commit, m.AppliedIndex, last, snap.Metadata.Index)
	}
	return b.String()
}

func roleName(s raft.StateType) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "State"))
}

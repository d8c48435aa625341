package compat

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hexID formats a member ID the way etcdctl prints and parses it.
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

// TestMemberListStatusMoveLeader checks member list (simple, table, json,
// serializable), endpoint status/health/hashkv with --cluster, and
// move-leader to a follower and back.
func TestMemberListStatusMoveLeader(t *testing.T) {
	c := newCluster(t, 3)
	eps := c.endpoints()

	// Members publish their names through raft after they start.
	var ml memberListResp
	eventually(t, settleTimeout, "all members listed as started", func() error {
		ml = memberListResp{}
		if err := c.tryJSON(nil, &ml, "member", "list"); err != nil {
			return err
		}
		for _, m := range c.members {
			if ml.byName(m.name) == nil {
				return fmt.Errorf("%s is not listed by name: %+v", m.name, ml.Members)
			}
		}
		return nil
	})
	if ml.Header.ClusterID == 0 || len(ml.Members) != 3 {
		t.Fatalf("member list: want 3 members and a cluster ID, got %+v", ml)
	}
	ids := map[uint64]*member{}
	for _, m := range c.members {
		mj := ml.byName(m.name)
		if mj == nil {
			t.Fatalf("member list has no %s: %+v", m.name, ml.Members)
		}
		if mj.ID == 0 || ids[mj.ID] != nil {
			t.Fatalf("member %s has ID %x, zero or not unique", m.name, mj.ID)
		}
		ids[mj.ID] = m
		if !slices.Equal(mj.PeerURLs, []string{m.peerURL}) || !slices.Equal(mj.ClientURLs, []string{m.clientURL}) || mj.IsLearner {
			t.Fatalf("member %s: got %+v, want peer %s client %s, not a learner", m.name, *mj, m.peerURL, m.clientURL)
		}
	}
	idOf := func(m *member) uint64 { return ml.byName(m.name).ID }

	// Simple format: "ID, started, name, peer URLs, client URLs, is learner".
	simple := c.must(nil, "member", "list")
	for _, m := range c.members {
		line := fmt.Sprintf("%x, started, %s, %s, %s, false", idOf(m), m.name, m.peerURL, m.clientURL)
		if !hasLine(simple, line) {
			t.Errorf("member list lacks the line %q:\n%s", line, simple)
		}
	}
	// Table format: a header and one row per member.
	table := c.must(nil, "member", "list", "-w", "table")
	if rows := tableRows(table); len(rows) != 4 ||
		!slices.Equal(rows[0], []string{"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"}) {
		t.Errorf("member list -w table: want a header and 3 rows, got %q", rows)
	} else {
		for _, m := range c.members {
			want := []string{hexID(idOf(m)), "started", m.name, m.peerURL, m.clientURL, "false"}
			if !slices.ContainsFunc(rows[1:], func(r []string) bool { return slices.Equal(r, want) }) {
				t.Errorf("member list -w table lacks the row %q:\n%s", want, table)
			}
		}
	}
	// Every member answers a serializable member list the same way.
	for _, ep := range eps {
		eventually(t, settleTimeout, "serializable member list on "+ep, func() error {
			var l memberListResp
			if err := c.tryJSON(one(ep), &l, "member", "list", "--consistency=s"); err != nil {
				return err
			}
			if l.Header.ClusterID != ml.Header.ClusterID || len(l.Members) != 3 {
				return fmt.Errorf("got %+v, want %+v", l, ml)
			}
			for _, m := range l.Members {
				if w := ml.byID(m.ID); w == nil || w.Name != m.Name {
					return fmt.Errorf("got %+v, want %+v", l, ml)
				}
			}
			return nil
		})
	}

	// endpoint status --cluster, given one endpoint, reports all three.
	// (Polled until the three agree on the leader, which they do not for
	// a moment after an election.)
	var st []epStatus
	var lead epStatus
	eventually(t, settleTimeout, "endpoint status --cluster", func() error {
		st = nil
		if err := c.tryJSON(one(eps[0]), &st, "endpoint", "status", "--cluster"); err != nil {
			return err
		}
		if len(st) != 3 {
			return fmt.Errorf("want 3 entries, got %+v", st)
		}
		for _, s := range st {
			if s.Status.Leader != st[0].Status.Leader {
				return fmt.Errorf("members disagree on the leader: %+v", st)
			}
			if s.Status.Leader == s.Status.Header.MemberID {
				lead = s
			}
		}
		return nil
	})
	leaders := 0
	for _, s := range st {
		m := ids[s.Status.Header.MemberID]
		if m == nil || m.clientURL != s.Endpoint {
			t.Fatalf("endpoint status: %s reports member ID %x, which is not its own", s.Endpoint, s.Status.Header.MemberID)
		}
		if s.Status.Header.ClusterID != ml.Header.ClusterID || s.Status.Leader != lead.Status.Leader ||
			s.Status.RaftTerm == 0 || s.Status.RaftIndex == 0 || s.Status.RaftAppliedIndex == 0 ||
			s.Status.DBSize <= 0 || s.Status.Version == "" || s.Status.IsLearner || len(s.Status.Errors) != 0 {
			t.Fatalf("endpoint status of %s: unexpected %+v (leader %x, cluster %x)", s.Endpoint, s.Status, lead.Status.Leader, ml.Header.ClusterID)
		}
		if s.Status.Leader == s.Status.Header.MemberID {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("endpoint status: %d members are the leader, want 1", leaders)
	}
	statusTable := c.must(one(eps[0]), "endpoint", "status", "--cluster", "-w", "table")
	simpleStatus := c.must(one(eps[0]), "endpoint", "status", "--cluster")
	for _, s := range st {
		if !strings.Contains(statusTable, s.Endpoint) {
			t.Errorf("endpoint status -w table lacks %s:\n%s", s.Endpoint, statusTable)
		}
		isLeader := s.Status.Leader == s.Status.Header.MemberID
		prefix := fmt.Sprintf("%s, %x, %s, ", s.Endpoint, s.Status.Header.MemberID, s.Status.Version)
		found := false
		for _, l := range strings.Split(simpleStatus, "\n") {
			if strings.HasPrefix(l, prefix) && strings.Contains(l, fmt.Sprintf(", %v, false, ", isLeader)) {
				found = true
			}
		}
		if !found {
			t.Errorf("endpoint status lacks a line %q... (is leader %v, not a learner):\n%s", prefix, isLeader, simpleStatus)
		}
	}

	// endpoint health --cluster.
	var hs []epHealth
	c.mustJSON(one(eps[0]), &hs, "endpoint", "health", "--cluster")
	var healthy []string
	for _, h := range hs {
		if h.Health && h.Error == "" {
			healthy = append(healthy, h.Endpoint)
		}
	}
	slices.Sort(healthy)
	if want := slices.Sorted(slices.Values(eps)); !slices.Equal(healthy, want) {
		t.Fatalf("endpoint health --cluster: healthy %v, want %v (%+v)", healthy, want, hs)
	}
	health := c.must(one(eps[0]), "endpoint", "health", "--cluster")
	for _, ep := range eps {
		if !strings.Contains(health, ep+" is healthy: successfully committed proposal: took = ") {
			t.Errorf("endpoint health lacks %s:\n%s", ep, health)
		}
	}

	// endpoint hashkv --cluster: every member hashes the same key space at
	// the same revision once it has applied the writes.
	for i := range 3 {
		c.must(nil, "put", fmt.Sprintf("h/%d", i), "v")
	}
	rev := c.getJSON(nil, "h/0").Header.Revision
	eventually(t, settleTimeout, "equal hashkv", func() error {
		var hk []epHashKV
		if err := c.tryJSON(one(eps[0]), &hk, "endpoint", "hashkv", "--cluster"); err != nil {
			return err
		}
		if len(hk) != 3 {
			return fmt.Errorf("want 3 hashes, got %+v", hk)
		}
		for _, h := range hk {
			if h.HashKV.HashRevision != rev || h.HashKV.Hash != hk[0].HashKV.Hash || h.HashKV.Hash == 0 {
				return fmt.Errorf("want one nonzero hash at revision %d, got %+v", rev, hk)
			}
		}
		return nil
	})

	// move-leader: etcdctl sends it to the leader among --endpoints.
	oldLeader := c.byURL(lead.Endpoint)
	var target *member
	var followerEPs []string
	for _, m := range c.members {
		if m != oldLeader {
			followerEPs = append(followerEPs, m.clientURL)
			if target == nil {
				target = m
			}
		}
	}
	r := c.ctl(followerEPs, "", "move-leader", hexID(idOf(target)))
	if r.code == 0 || !strings.Contains(r.stderr, "Error: no leader endpoint given at ") {
		t.Fatalf("move-leader with follower endpoints only: want etcdctl to find no leader, got:\n%v", r)
	}
	c.mustFail(one(lead.Endpoint), "etcdserver: bad leader transferee", "move-leader", "abcdef")
	c.mustEqual(one(lead.Endpoint), fmt.Sprintf("Leadership transferred from %s to %s\n", hexID(idOf(oldLeader)), hexID(idOf(target))),
		"move-leader", hexID(idOf(target)))
	eventually(t, settleTimeout, "all members follow the new leader", func() error {
		st, err := c.statuses(eps)
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Status.Leader != idOf(target) || s.Status.RaftTerm <= lead.Status.RaftTerm {
				return fmt.Errorf("%s reports leader %x at term %d, want %x after term %d", s.Endpoint, s.Status.Leader, s.Status.RaftTerm, idOf(target), lead.Status.RaftTerm)
			}
		}
		return nil
	})
	c.mustEqual(nil, "OK\n", "put", "after-move", "1")
	c.mustEqual(one(target.clientURL), "after-move\n1\n", "get", "after-move")

	// And back, giving all endpoints: etcdctl finds the leader itself.
	c.mustEqual(nil, fmt.Sprintf("Leadership transferred from %s to %s\n", hexID(idOf(target)), hexID(idOf(oldLeader))),
		"move-leader", hexID(idOf(oldLeader)))
	if got := c.leader(eps); got.Status.Leader != idOf(oldLeader) {
		t.Fatalf("after moving back: leader %x, want %x", got.Status.Leader, idOf(oldLeader))
	}
}

// tableRows parses the rows of an etcdctl table (ASCII or box-drawing
// borders) into trimmed cells, skipping border lines.
func tableRows(table string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(table, "\n") {
		line = strings.TrimSpace(line)
		sep := ""
		switch {
		case strings.HasPrefix(line, "|"):
			sep = "|"
		case strings.HasPrefix(line, "│"):
			sep = "│"
		default:
			continue
		}
		cells := strings.Split(strings.Trim(line, sep), sep)
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// checkInitialCluster checks the ETCD_INITIAL_CLUSTER etcdctl printed
// against the expected name=peer-URL pairs.
func checkInitialCluster(t *testing.T, got string, want map[string]string) {
	t.Helper()
	parts := strings.Split(got, ",")
	if len(parts) != len(want) {
		t.Fatalf("ETCD_INITIAL_CLUSTER=%q: want %d entries %v", got, len(want), want)
	}
	for _, p := range parts {
		name, url, _ := strings.Cut(p, "=")
		if want[name] != url {
			t.Fatalf("ETCD_INITIAL_CLUSTER=%q: entry %q, want one of %v", got, p, want)
		}
	}
}

// TestMemberAdd adds a voting member with `etcdctl member add`, starts it
// from the environment variables etcdctl prints, checks it joins and
// serves the data, then removes the leader.
func TestMemberAdd(t *testing.T) {
	c := newCluster(t, 3)
	c.mustEqual(nil, "OK\n", "put", "before-add", "v0")
	before := c.memberList(nil)

	m4 := c.addMemberSlot("infra4")
	add := parseMemberAdd(t, c.must(nil, "member", "add", "infra4", "--peer-urls="+m4.peerURL))
	if add.learner || add.id == 0 || add.clusterID != before.Header.ClusterID {
		t.Fatalf("member add: got %+v, want a voting member of cluster %x", add, before.Header.ClusterID)
	}
	want := map[string]string{"infra4": m4.peerURL}
	for _, m := range c.members[:3] {
		want[m.name] = m.peerURL
	}
	checkInitialCluster(t, add.env["ETCD_INITIAL_CLUSTER"], want)
	if add.env["ETCD_NAME"] != "infra4" || add.env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] != m4.peerURL ||
		add.env["ETCD_INITIAL_CLUSTER_STATE"] != "existing" || len(add.env) != 4 {
		t.Fatalf("member add printed %v", add.env)
	}

	ml := c.memberList(nil)
	nm := ml.byID(add.id)
	if len(ml.Members) != 4 || nm == nil || nm.Name != "" || !slices.Equal(nm.PeerURLs, []string{m4.peerURL}) || len(nm.ClientURLs) != 0 || nm.IsLearner {
		t.Fatalf("member list after add: want the new member unstarted with peer URL %s, got %+v", m4.peerURL, ml.Members)
	}
	if line := fmt.Sprintf("%x, unstarted, , %s, , false", add.id, m4.peerURL); !hasLine(c.must(nil, "member", "list"), line) {
		t.Fatalf("member list lacks the line %q", line)
	}

	// Start it the way etcdctl suggests: with its ETCD_* variables.
	var env []string
	for k, v := range add.env {
		env = append(env, k+"="+v)
	}
	c.start(m4, nil, env)
	c.waitHealthy(c.endpoints())
	eventually(t, settleTimeout, "the new member is listed as started", func() error {
		var l memberListResp
		if err := c.tryJSON(nil, &l, "member", "list"); err != nil {
			return err
		}
		nm := l.byID(add.id)
		if len(l.Members) != 4 || nm == nil || nm.Name != "infra4" || !slices.Equal(nm.ClientURLs, []string{m4.clientURL}) || nm.IsLearner {
			return fmt.Errorf("want infra4 started with client URL %s, got %+v", m4.clientURL, l.Members)
		}
		return nil
	})
	if line := fmt.Sprintf("%x, started, infra4, %s, %s, false", add.id, m4.peerURL, m4.clientURL); !hasLine(c.must(nil, "member", "list"), line) {
		t.Fatalf("member list lacks the line %q", line)
	}

	// The new member serves the data written before it joined, and its
	// writes reach the others.
	c.mustEqual(one(m4.clientURL), "before-add\nv0\n", "get", "before-add")
	c.mustEqual(one(m4.clientURL), "OK\n", "put", "after-add", "v1")
	for _, m := range c.members[:3] {
		c.mustEqual(one(m.clientURL), "after-add\nv1\n", "get", "after-add")
	}
	lead := c.leader(c.endpoints())
	var st []epStatus
	c.mustJSON(one(m4.clientURL), &st, "endpoint", "status", "--cluster")
	if len(st) != 4 {
		t.Fatalf("endpoint status --cluster: want 4 members, got %+v", st)
	}
	for _, s := range st {
		if s.Status.Leader != lead.Status.Leader {
			t.Fatalf("endpoint status --cluster: %s follows %x, want %x", s.Endpoint, s.Status.Leader, lead.Status.Leader)
		}
	}

	// Remove the leader itself (asking a follower): it stops, and the
	// other three, the new member among them, elect a new leader.
	oldLeader := c.byURL(lead.Endpoint)
	oldID := lead.Status.Header.MemberID
	oldLeader.mayExit = true
	var rest []string
	for _, ep := range c.endpoints() {
		if ep != oldLeader.clientURL {
			rest = append(rest, ep)
		}
	}
	c.mustEqual(rest, fmt.Sprintf("Member %16x removed from cluster %16x\n", oldID, before.Header.ClusterID), "member", "remove", hexID(oldID))
	eventually(t, settleTimeout, "the removed leader stops", func() error {
		if !oldLeader.exited() {
			return fmt.Errorf("synod %s is still running", oldLeader.name)
		}
		return nil
	})
	if nl := c.leader(rest); nl.Status.Leader == oldID {
		t.Fatalf("the removed member %x is still the leader", oldID)
	}
	ml = c.memberList(rest)
	if len(ml.Members) != 3 || ml.byID(oldID) != nil || ml.byName("infra4") == nil {
		t.Fatalf("member list after removing the leader: got %+v", ml.Members)
	}
	c.waitHealthy(rest)
	c.mustEqual(rest, "OK\n", "put", "after-leader-removal", "v2")
	for _, ep := range rest {
		c.mustEqual(one(ep), "before-add\nv0\n", "get", "before-add")
		c.mustEqual(one(ep), "after-leader-removal\nv2\n", "get", "after-leader-removal")
	}
}

// TestLearner adds a learner, starts it, promotes it once it has caught
// up, then removes another member.
func TestLearner(t *testing.T) {
	// A small --snapshot-count so that the members have taken snapshots
	// by the time the learner joins.
	c := newCluster(t, 3, "--snapshot-count", "10")
	for i := range 15 {
		c.must(nil, "put", fmt.Sprintf("l/%02d", i), fmt.Sprintf("v%d", i))
	}
	m4 := c.addMemberSlot("infra4")
	out := c.must(nil, "member", "add", "infra4", "--learner", "--peer-urls="+m4.peerURL)
	add := parseMemberAdd(t, out)
	if !add.learner {
		t.Fatalf("member add --learner: want \"added as learner\", got %q", out)
	}
	ml := c.memberList(nil)
	if nm := ml.byID(add.id); len(ml.Members) != 4 || nm == nil || !nm.IsLearner || nm.Name != "" {
		t.Fatalf("member list: want the new member as an unstarted learner, got %+v", ml.Members)
	}
	id := hexID(add.id)

	// It cannot be promoted before it has caught up.
	c.mustFail(nil, "etcdserver: can only promote a learner member which is in sync with leader", "member", "promote", id)

	want := map[string]string{"infra4": m4.peerURL}
	for _, m := range c.members[:3] {
		want[m.name] = m.peerURL
	}
	checkInitialCluster(t, add.env["ETCD_INITIAL_CLUSTER"], want)
	c.start(m4, c.bootstrapFlags(m4, add.env["ETCD_INITIAL_CLUSTER"], add.env["ETCD_INITIAL_CLUSTER_STATE"]), nil)

	// A learner serves serializable reads only.
	eventually(t, startTimeout, "the learner serves the data", func() error {
		r := c.ctl(one(m4.clientURL), "", "get", "l/14", "--consistency=s")
		if r.code != 0 || r.stdout != "l/14\nv14\n" {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	for _, args := range [][]string{{"get", "l/14"}, {"put", "l/14", "from-learner"}} {
		r := c.ctl(one(m4.clientURL), "", args...)
		if r.code != 1 || !hasLine(r.stderr, "Error: etcdserver: rpc not supported for learner") {
			t.Errorf("a learner must refuse linearizable reads and writes with \"etcdserver: rpc not supported for learner\", got:\n%v", r)
		}
	}
	eventually(t, settleTimeout, "the learner is listed as started", func() error {
		var l memberListResp
		if err := c.tryJSON(nil, &l, "member", "list"); err != nil {
			return err
		}
		if nm := l.byID(add.id); nm == nil || nm.Name != "infra4" || !nm.IsLearner || !slices.Equal(nm.ClientURLs, []string{m4.clientURL}) {
			return fmt.Errorf("want infra4 started as a learner, got %+v", l.Members)
		}
		return nil
	})
	st, err := c.statuses(one(m4.clientURL))
	if err != nil {
		t.Fatal(err)
	}
	if !st[0].Status.IsLearner || st[0].Status.Header.MemberID != add.id {
		t.Fatalf("endpoint status of the learner: %+v", st[0])
	}

	// Promote it, retrying while it is still catching up.
	eventually(t, settleTimeout, "member promote", func() error {
		r := c.ctl(c.endpoints()[:3], "", "member", "promote", id)
		switch {
		case r.code == 0:
			if want := fmt.Sprintf("Member %16x promoted in cluster %16x\n", add.id, add.clusterID); r.stdout != want {
				t.Fatalf("member promote: stdout %q, want %q", r.stdout, want)
			}
			return nil
		case hasLine(r.stderr, "Error: etcdserver: can only promote a learner member which is in sync with leader"):
			return fmt.Errorf("%v", r)
		}
		t.Fatalf("member promote failed:\n%v", r)
		return nil
	})
	ml = c.memberList(nil)
	if nm := ml.byID(add.id); len(ml.Members) != 4 || nm == nil || nm.IsLearner || nm.Name != "infra4" {
		t.Fatalf("member list after promote: got %+v", ml.Members)
	}
	c.mustFail(nil, "etcdserver: can only promote a learner member", "member", "promote", id)
	// As a voter it serves linearizable reads.
	c.mustEqual(one(m4.clientURL), "l/00\nv0\n", "get", "l/00")
	eventually(t, settleTimeout, "the promoted member reports itself a voter", func() error {
		st, err := c.statuses(one(m4.clientURL))
		if err != nil {
			return err
		}
		if st[0].Status.IsLearner {
			return fmt.Errorf("still a learner: %+v", st[0])
		}
		return nil
	})

	// Remove a follower among the first three members.
	lead := c.leader(c.endpoints())
	var victim *member
	for _, m := range c.members[:3] {
		if m.clientURL != lead.Endpoint {
			victim = m
			break
		}
	}
	vid := ml.byName(victim.name).ID
	victim.mayExit = true
	var rest []string
	for _, ep := range c.endpoints() {
		if ep != victim.clientURL {
			rest = append(rest, ep)
		}
	}
	c.mustEqual(rest, fmt.Sprintf("Member %16x removed from cluster %16x\n", vid, ml.Header.ClusterID), "member", "remove", hexID(vid))
	ml = c.memberList(rest)
	if len(ml.Members) != 3 || ml.byID(vid) != nil || ml.byID(add.id) == nil {
		t.Fatalf("member list after remove: got %+v", ml.Members)
	}
	eventually(t, settleTimeout, "the removed member stops", func() error {
		if !victim.exited() {
			return fmt.Errorf("synod %s is still running", victim.name)
		}
		return nil
	})
	c.waitHealthy(rest)
	c.mustEqual(rest, "OK\n", "put", "after-remove", "x")
	for _, ep := range rest {
		c.mustEqual(one(ep), "after-remove\nx\n", "get", "after-remove")
	}

	// Errors of membership changes.
	c.mustFail(rest, "etcdserver: member not found", "member", "remove", hexID(vid))
	c.mustFail(rest, "etcdserver: Peer URLs already exists", "member", "add", "dup", "--peer-urls="+m4.peerURL)
}

package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// ctlTimeout bounds one etcdctl run; etcdctl's own --command-timeout
	// (5s by default) normally ends it much earlier.
	ctlTimeout = 30 * time.Second
	// startTimeout bounds how long a cluster or a new member may take to
	// become healthy.
	startTimeout = 30 * time.Second
	// settleTimeout bounds how long replication of an acknowledged change
	// to every member may take (followers applying, leadership moving).
	settleTimeout = 15 * time.Second
	// logTail is how many lines of each member's log a failed test prints.
	logTail = 300
)

// member is one synod process.
type member struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string

	// mayExit is set when the test expects the process to stop by itself
	// (a removed member); otherwise an exit before cleanup is an error.
	mayExit bool

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // the result of Wait; read only after done is closed
}

// exited reports whether the process has ended.
func (m *member) exited() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// cluster is a set of synod processes started by one test.
type cluster struct {
	t       *testing.T
	dir     string
	token   string
	flags   []string // extra flags given to every member
	members []*member
}

// newCluster starts n synod members (infra1..infraN) on free loopback
// ports with fast raft timing, each with extra flags, and waits until
// etcdctl reports every endpoint healthy. Every process is killed when the
// test ends; a failed test prints their logs.
func newCluster(t *testing.T, n int, flags ...string) *cluster {
	t.Helper()
	c := &cluster{
		t:     t,
		dir:   t.TempDir(), // removed after the cleanup below has run
		token: "compat-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()),
		flags: flags,
	}
	t.Cleanup(c.stopAll)
	ports := freePorts(t, 2*n)
	var initial []string
	for i := range n {
		m := c.newMember(fmt.Sprintf("infra%d", i+1), ports[2*i], ports[2*i+1])
		initial = append(initial, m.name+"="+m.peerURL)
	}
	for _, m := range c.members {
		c.start(m, c.bootstrapFlags(m, strings.Join(initial, ","), "new"), nil)
	}
	c.waitHealthy(c.endpoints())
	return c
}

// newMember reserves a member (not started) with the given ports.
func (c *cluster) newMember(name string, clientPort, peerPort int) *member {
	m := &member{
		name:      name,
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", clientPort),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		dataDir:   filepath.Join(c.dir, name+".etcd"),
		logPath:   filepath.Join(c.dir, name+".log"),
	}
	c.members = append(c.members, m)
	return m
}

// addMemberSlot reserves a new member with fresh free ports.
func (c *cluster) addMemberSlot(name string) *member {
	p := freePorts(c.t, 2)
	return c.newMember(name, p[0], p[1])
}

// bootstrapFlags are the flags naming a member and its initial cluster.
func (c *cluster) bootstrapFlags(m *member, initialCluster, state string) []string {
	return []string{
		"--name", m.name,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", initialCluster,
		"--initial-cluster-state", state,
	}
}

// start launches m with its listen/data/timing flags, then flags and the
// extra environment variables (NAME=value).
func (c *cluster) start(m *member, flags, env []string) {
	t := c.t
	t.Helper()
	args := []string{
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-cluster-token", c.token,
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--logger", "text",
	}
	args = append(args, flags...)
	args = append(args, c.flags...)
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "### synod %s\n### env %s\n", strings.Join(args, " "), strings.Join(env, " "))
	cmd := exec.Command(synodBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting synod %s: %v", m.name, err)
	}
	m.cmd = cmd
	m.done = make(chan struct{})
	go func() {
		m.err = cmd.Wait()
		close(m.done)
	}()
}

// stopAll kills every process, checks each one is gone, reports members
// that died on their own and, if the test failed, prints the logs.
func (c *cluster) stopAll() {
	t := c.t
	for _, m := range c.members {
		if m.cmd == nil {
			continue
		}
		if m.exited() {
			if !m.mayExit {
				t.Errorf("synod %s exited during the test: %v", m.name, m.err)
			}
			continue
		}
		if err := m.cmd.Process.Kill(); err != nil {
			t.Errorf("killing synod %s: %v", m.name, err)
		}
	}
	for _, m := range c.members {
		if m.cmd == nil {
			continue
		}
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			t.Errorf("synod %s (pid %d) is still running 10s after SIGKILL", m.name, m.cmd.Process.Pid)
		}
	}
	if t.Failed() {
		for _, m := range c.members {
			if m.cmd != nil {
				t.Logf("---- last %d lines of the log of %s (%s) ----\n%s", logTail, m.name, m.clientURL, tailFile(m.logPath, logTail))
			}
		}
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// byName returns the member called name.
func (c *cluster) byName(name string) *member {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("no member %s", name)
	return nil
}

// byURL returns the member serving clients at url.
func (c *cluster) byURL(url string) *member {
	for _, m := range c.members {
		if m.clientURL == url {
			return m
		}
	}
	c.t.Fatalf("no member serves %s", url)
	return nil
}

// endpoints returns the client URLs of the running members.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		if m.cmd != nil && !m.exited() {
			eps = append(eps, m.clientURL)
		}
	}
	return eps
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// cleanEnv is this process's environment without variables that would
// configure etcdctl or synod behind the test's back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ETCDCTL_") || strings.HasPrefix(kv, "ETCD_") || strings.HasPrefix(kv, "SYNOD_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// ctlResult is the outcome of one etcdctl run.
type ctlResult struct {
	args   []string
	stdout string
	stderr string
	code   int
	took   time.Duration
}

func (r ctlResult) String() string {
	return fmt.Sprintf("$ etcdctl %s\n[exit status %d after %v]\n[stdout]\n%s[stderr]\n%s", strings.Join(r.args, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// runCtl runs etcdctl with args, feeding it stdin.
func runCtl(t *testing.T, stdin string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, etcdctlBin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	dieWithParent(cmd)
	start := time.Now()
	err := cmd.Run()
	r := ctlResult{args: args, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("etcdctl did not finish within %v:\n%v", ctlTimeout, r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running etcdctl: %v", err)
	}
	return r
}

// ctl runs etcdctl against eps (all running members if nil).
func (c *cluster) ctl(eps []string, stdin string, args ...string) ctlResult {
	c.t.Helper()
	if eps == nil {
		eps = c.endpoints()
	}
	return runCtl(c.t, stdin, append([]string{"--endpoints=" + strings.Join(eps, ",")}, args...)...)
}

// must runs etcdctl against eps, requires success and returns stdout.
func (c *cluster) must(eps []string, args ...string) string {
	c.t.Helper()
	return c.mustIn(eps, "", args...)
}

// mustIn is must with standard input.
func (c *cluster) mustIn(eps []string, stdin string, args ...string) string {
	c.t.Helper()
	r := c.ctl(eps, stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("etcdctl failed:\n%v", r)
	}
	c.t.Logf("%v", r)
	return r.stdout
}

// mustEqual runs etcdctl against eps and requires success and exactly
// the given stdout.
func (c *cluster) mustEqual(eps []string, want string, args ...string) {
	c.t.Helper()
	c.mustInEqual(eps, "", want, args...)
}

// mustInEqual is mustEqual with standard input.
func (c *cluster) mustInEqual(eps []string, stdin, want string, args ...string) {
	c.t.Helper()
	r := c.ctl(eps, stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("etcdctl failed:\n%v", r)
	}
	if r.stdout != want {
		c.t.Fatalf("stdout is %q, want %q\n%v", r.stdout, want, r)
	}
	c.t.Logf("%v", r)
}

// mustFail runs etcdctl against eps and requires that it fails with
// etcdctl's generic error status 1 and prints the line "Error: <want>".
func (c *cluster) mustFail(eps []string, want string, args ...string) {
	c.t.Helper()
	c.mustFailIn(eps, "", want, args...)
}

// mustFailIn is mustFail with standard input.
func (c *cluster) mustFailIn(eps []string, stdin, want string, args ...string) {
	c.t.Helper()
	r := c.ctl(eps, stdin, args...)
	if r.code != 1 || !hasLine(r.stderr, "Error: "+want) {
		c.t.Fatalf("want exit status 1 and %q on stderr, got:\n%v", "Error: "+want, r)
	}
	c.t.Logf("%v", r)
}

// hasLine reports whether text has a line equal to line.
func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// on returns a view of c whose helpers report to t (a subtest of the
// test that started c).
func (c *cluster) on(t *testing.T) *cluster {
	cc := *c
	cc.t = t
	return &cc
}

// mustJSON runs etcdctl -w json against eps, requires success and
// decodes its stdout into v.
func (c *cluster) mustJSON(eps []string, v any, args ...string) {
	c.t.Helper()
	c.mustInJSON(eps, "", v, args...)
}

// mustInJSON is mustJSON with standard input.
func (c *cluster) mustInJSON(eps []string, stdin string, v any, args ...string) {
	c.t.Helper()
	r := c.ctl(eps, stdin, append(args, "-w", "json")...)
	if r.code != 0 {
		c.t.Fatalf("etcdctl failed:\n%v", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		c.t.Fatalf("decoding etcdctl's JSON: %v\n%v", err, r)
	}
	c.t.Logf("%v", r)
}

// tryJSON runs etcdctl -w json against eps and decodes its stdout into v;
// it returns an error if etcdctl failed.
func (c *cluster) tryJSON(eps []string, v any, args ...string) error {
	c.t.Helper()
	r := c.ctl(eps, "", append(args, "-w", "json")...)
	if r.code != 0 {
		return fmt.Errorf("etcdctl failed:\n%v", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		return fmt.Errorf("decoding etcdctl's JSON: %v\n%v", err, r)
	}
	return nil
}

// eventually calls f until it returns nil, failing the test with f's last
// error if that does not happen within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // pacing between polls, not synchronization
	}
}

// waitHealthy waits until `etcdctl endpoint health` reports every one of
// eps healthy.
func (c *cluster) waitHealthy(eps []string) {
	c.t.Helper()
	eventually(c.t, startTimeout, "endpoint health", func() error {
		var hs []epHealth
		if err := c.tryJSON(eps, &hs, "endpoint", "health"); err != nil {
			return err
		}
		if len(hs) != len(eps) {
			return fmt.Errorf("health of %d endpoints, want %d: %+v", len(hs), len(eps), hs)
		}
		for _, h := range hs {
			if !h.Health {
				return fmt.Errorf("%s is unhealthy: %s", h.Endpoint, h.Error)
			}
		}
		return nil
	})
}

// statuses returns `etcdctl endpoint status` of every endpoint of eps.
func (c *cluster) statuses(eps []string) ([]epStatus, error) {
	var st []epStatus
	if err := c.tryJSON(eps, &st, "endpoint", "status"); err != nil {
		return nil, err
	}
	if len(st) != len(eps) {
		return nil, fmt.Errorf("status of %d endpoints, want %d", len(st), len(eps))
	}
	return st, nil
}

// leader waits until all of eps agree on one leader, which is one of eps,
// and returns its status entry.
func (c *cluster) leader(eps []string) epStatus {
	c.t.Helper()
	var lead epStatus
	eventually(c.t, settleTimeout, "agreeing on a leader", func() error {
		st, err := c.statuses(eps)
		if err != nil {
			return err
		}
		found := false
		for _, s := range st {
			if s.Status.Leader == 0 || s.Status.Leader != st[0].Status.Leader {
				return fmt.Errorf("members disagree on the leader: %+v", st)
			}
			if s.Status.Leader == s.Status.Header.MemberID {
				lead, found = s, true
			}
		}
		if !found {
			return fmt.Errorf("the leader %x is not among %v", st[0].Status.Leader, eps)
		}
		return nil
	})
	return lead
}

// memberList returns `etcdctl member list -w json`.
func (c *cluster) memberList(eps []string, args ...string) memberListResp {
	c.t.Helper()
	var ml memberListResp
	c.mustJSON(eps, &ml, append([]string{"member", "list"}, args...)...)
	return ml
}

// memberAddOutput is what `etcdctl member add` prints for the new member.
type memberAddOutput struct {
	id, clusterID uint64
	learner       bool
	env           map[string]string // ETCD_NAME, ETCD_INITIAL_CLUSTER, ...
}

// parseMemberAdd reads the simple output of `etcdctl member add`:
//
//	Member <id> added [as learner ]to cluster <cluster id>
//
//	ETCD_NAME="..."
//	...
func parseMemberAdd(t *testing.T, out string) memberAddOutput {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	f := strings.Fields(lines[0])
	if len(f) < 6 || f[0] != "Member" || f[2] != "added" || f[len(f)-3] != "to" || f[len(f)-2] != "cluster" {
		t.Fatalf("unexpected first line of member add: %q", lines[0])
	}
	var o memberAddOutput
	var err error
	if o.id, err = strconv.ParseUint(f[1], 16, 64); err != nil {
		t.Fatalf("member ID in %q: %v", lines[0], err)
	}
	if o.clusterID, err = strconv.ParseUint(f[len(f)-1], 16, 64); err != nil {
		t.Fatalf("cluster ID in %q: %v", lines[0], err)
	}
	o.learner = strings.Contains(lines[0], " added as learner to ")
	o.env = map[string]string{}
	for _, l := range lines[1:] {
		if l == "" {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("unexpected line in member add output: %q", l)
		}
		uv, err := strconv.Unquote(v)
		if err != nil {
			t.Fatalf("value of %s in member add output: %v", k, err)
		}
		o.env[k] = uv
	}
	return o
}

// JSON shapes of etcdctl -w json output (etcd's protobuf messages encoded
// with encoding/json: []byte fields are base64, IDs are decimal).

type respHeader struct {
	ClusterID uint64 `json:"cluster_id"`
	MemberID  uint64 `json:"member_id"`
	Revision  int64  `json:"revision"`
	RaftTerm  uint64 `json:"raft_term"`
}

type keyValue struct {
	Key            []byte `json:"key"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Value          []byte `json:"value"`
	Lease          int64  `json:"lease"`
}

type rangeResp struct {
	Header respHeader `json:"header"`
	Kvs    []keyValue `json:"kvs"`
	More   bool       `json:"more"`
	Count  int64      `json:"count"`
}

type putResp struct {
	Header respHeader `json:"header"`
	PrevKv *keyValue  `json:"prev_kv"`
}

type deleteResp struct {
	Header  respHeader `json:"header"`
	Deleted int64      `json:"deleted"`
	PrevKvs []keyValue `json:"prev_kvs"`
}

type txnResp struct {
	Header    respHeader `json:"header"`
	Succeeded bool       `json:"succeeded"`
	Responses []struct {
		Response struct {
			Range  *rangeResp  `json:"response_range"`
			Put    *putResp    `json:"response_put"`
			Delete *deleteResp `json:"response_delete_range"`
		} `json:"Response"`
	} `json:"responses"`
}

type memberJSON struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

type memberListResp struct {
	Header  respHeader   `json:"header"`
	Members []memberJSON `json:"members"`
}

// byName returns the member called name, or nil.
func (ml memberListResp) byName(name string) *memberJSON {
	for i := range ml.Members {
		if ml.Members[i].Name == name {
			return &ml.Members[i]
		}
	}
	return nil
}

// byID returns the member with the given ID, or nil.
func (ml memberListResp) byID(id uint64) *memberJSON {
	for i := range ml.Members {
		if ml.Members[i].ID == id {
			return &ml.Members[i]
		}
	}
	return nil
}

type epHealth struct {
	Endpoint string `json:"endpoint"`
	Health   bool   `json:"health"`
	Error    string `json:"error"`
}

type epStatus struct {
	Endpoint string `json:"Endpoint"`
	Status   struct {
		Header           respHeader `json:"header"`
		Version          string     `json:"version"`
		DBSize           int64      `json:"dbSize"`
		Leader           uint64     `json:"leader"`
		RaftIndex        uint64     `json:"raftIndex"`
		RaftTerm         uint64     `json:"raftTerm"`
		RaftAppliedIndex uint64     `json:"raftAppliedIndex"`
		Errors           []string   `json:"errors"`
		DBSizeInUse      int64      `json:"dbSizeInUse"`
		IsLearner        bool       `json:"isLearner"`
	} `json:"Status"`
}

type epHashKV struct {
	Endpoint string `json:"Endpoint"`
	HashKV   struct {
		Header          respHeader `json:"header"`
		Hash            uint32     `json:"hash"`
		CompactRevision int64      `json:"compact_revision"`
		HashRevision    int64      `json:"hash_revision"`
	} `json:"HashKV"`
}

// kvString renders key=value pairs for comparisons.
func kvString(kvs []keyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, string(kv.Key)+"="+string(kv.Value))
	}
	return strings.Join(parts, ",")
}

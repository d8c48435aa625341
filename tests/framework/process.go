//go:build linux

package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ProcessConfig configures a cluster of synod processes.
type ProcessConfig struct {
	// Bin is the synod binary (see BuildSynod).
	Bin string
	// Dir holds the members' data directories and logs.
	Dir string
	// Heartbeat and Election are the raft timing flags in milliseconds;
	// zero means 25 and 250.
	Heartbeat, Election int
	// Token is --initial-cluster-token; empty means "framework".
	Token string
	// Args are flags every member gets after the harness's own (the last
	// occurrence of a flag wins).
	Args []string
	// Front, if set, stands in front of every member's peer port.
	Front PeerFront
}

// Processes is a cluster of synod processes on loopback. Every process
// dies with the test process (PR_SET_PDEATHSIG), so none outlives a
// crashed test.
type Processes struct {
	cfg ProcessConfig

	mu      sync.Mutex
	members []*procMember // current members
	gone    []*procMember // replaced members, for their logs
	gen     uint64
	next    int
}

type procMember struct {
	name, dir            string
	peerAddr, clientAddr string
	advertised           string // the peer address other members dial
	retarget             func(addr string)
	logPath              string
	initialCluster       string
	state                string // initial cluster state: new or existing

	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// StartProcesses starts n members and waits until they agree on a
// leader.
func StartProcesses(ctx context.Context, cfg ProcessConfig, n int) (*Processes, error) {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 25
	}
	if cfg.Election == 0 {
		cfg.Election = 250
	}
	if cfg.Token == "" {
		cfg.Token = "framework"
	}
	c := &Processes{cfg: cfg, gen: 1}
	var initial []string
	for range n {
		m, err := c.newMember()
		if err != nil {
			c.Close()
			return nil, err
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"=http://"+m.advertised)
	}
	for _, m := range c.members {
		m.initialCluster, m.state = strings.Join(initial, ","), "new"
		if err := c.start(m); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitHealthy(ctx, 30*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// newMember allocates a name, addresses and a front for a member.
func (c *Processes) newMember() (*procMember, error) {
	c.mu.Lock()
	name := fmt.Sprintf("p%d", c.next)
	c.next++
	c.mu.Unlock()
	m := &procMember{name: name, dir: filepath.Join(c.cfg.Dir, name+".etcd"), logPath: filepath.Join(c.cfg.Dir, name+".log")}
	var err error
	if m.peerAddr, err = FreeLoopbackAddr(); err != nil {
		return nil, err
	}
	if m.clientAddr, err = FreeLoopbackAddr(); err != nil {
		return nil, err
	}
	m.advertised, m.retarget = m.peerAddr, func(string) {}
	if c.cfg.Front != nil {
		if m.advertised, m.retarget, err = c.cfg.Front.Front(name, m.peerAddr); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// start runs the member's process (again). A restart listens on new
// ports (the old ones may have been taken since), which the front and
// the generation of Endpoints follow; without a front the peer port
// stays, since the other members know it.
func (c *Processes) start(m *procMember) error {
	if m.cmd != nil {
		addrs, err := freeLoopbackAddrs(2)
		if err != nil {
			return err
		}
		// Without a front the other members know only the old peer port.
		peer := m.peerAddr
		if c.cfg.Front != nil {
			peer = addrs[0]
		}
		c.mu.Lock()
		m.peerAddr, m.clientAddr = peer, addrs[1]
		c.gen++
		c.mu.Unlock()
		m.retarget(peer)
	}
	f, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "{\"harness\":\"starting %s\",\"time\":%q}\n", m.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.cfg.Bin,
		"--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", "http://"+m.clientAddr, "--advertise-client-urls", "http://"+m.clientAddr,
		"--listen-peer-urls", "http://"+m.peerAddr, "--initial-advertise-peer-urls", "http://"+m.advertised,
		"--initial-cluster", m.initialCluster, "--initial-cluster-state", m.state, "--initial-cluster-token", c.cfg.Token,
		"--heartbeat-interval", fmt.Sprint(c.cfg.Heartbeat), "--election-timeout", fmt.Sprint(c.cfg.Election),
		"--logger", "json")
	cmd.Args = append(cmd.Args, c.cfg.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	c.mu.Lock()
	m.cmd, m.exited, m.paused = cmd, exited, false
	c.mu.Unlock()
	return nil
}

// Endpoints returns the client addresses of the current members, and a
// generation that changes whenever they do.
func (c *Processes) Endpoints() ([]string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientAddr)
	}
	return eps, c.gen
}

func (c *Processes) member(i int) *procMember {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i]
}

// Size returns the number of current members.
func (c *Processes) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.members)
}

// Name returns member i's name.
func (c *Processes) Name(i int) string { return c.member(i).name }

// Names returns the current members' names.
func (c *Processes) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.members {
		out = append(out, m.name)
	}
	return out
}

// running reports whether m's process is alive.
func running(m *procMember) bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to member i and waits for it to die.
func (c *Processes) Kill(i int) { c.kill(c.member(i)) }

func (c *Processes) kill(m *procMember) {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

// Terminate sends SIGTERM to member i and waits for it to exit, at most
// timeout; it reports an error naming the member if it did not, or if it
// exited with a failure.
func (c *Processes) Terminate(i int, timeout time.Duration) error {
	m := c.member(i)
	if !running(m) {
		return nil
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		// etcd ends itself with the signal once it stopped cleanly.
		ws, _ := m.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if code := m.cmd.ProcessState.ExitCode(); code != 0 && !(ws.Signaled() && ws.Signal() == syscall.SIGTERM) {
			return fmt.Errorf("%s exited with status %d after SIGTERM: the stop was not clean (see its log)", m.name, code)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v of SIGTERM", m.name, timeout)
	}
}

// WaitExit waits up to timeout for member i's process to exit and
// returns its exit status.
func (c *Processes) WaitExit(i int, timeout time.Duration) (int, error) {
	m := c.member(i)
	if m.cmd == nil {
		return 0, fmt.Errorf("%s was never started", m.name)
	}
	select {
	case <-m.exited:
		return m.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s still runs after %v", m.name, timeout)
	}
}

// Running reports whether member i's process is alive.
func (c *Processes) Running(i int) bool { return running(c.member(i)) }

// LogPath returns the file member i's output goes to.
func (c *Processes) LogPath(i int) string { return c.member(i).logPath }

// DataDir returns member i's data directory.
func (c *Processes) DataDir(i int) string { return c.member(i).dir }

// ClientAddr returns member i's client address.
func (c *Processes) ClientAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].clientAddr
}

// Restart starts member i again if its process is not running.
func (c *Processes) Restart(i int) error {
	m := c.member(i)
	if running(m) {
		return nil
	}
	return c.start(m)
}

// Pause stops member i with SIGSTOP; Resume continues it.
func (c *Processes) Pause(i int) error {
	m := c.member(i)
	if !running(m) {
		return errors.New("not running")
	}
	m.paused = true
	return m.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume continues a paused member.
func (c *Processes) Resume(i int) error {
	m := c.member(i)
	if !running(m) || !m.paused {
		return nil
	}
	m.paused = false
	return m.cmd.Process.Signal(syscall.SIGCONT)
}

// status asks every member for its status; it returns the index of the
// member the answering members call leader (-1 if none) and whether all
// answered and agreed.
func (c *Processes) status(ctx context.Context) (leader int, agreed bool) {
	eps, _ := c.Endpoints()
	cli, err := ClientFor(eps)
	if err != nil {
		return -1, false
	}
	defer cli.Close()
	ids := make([]uint64, len(eps))
	leads := make([]uint64, len(eps))
	agreed = true
	for i, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			agreed = false
			continue
		}
		ids[i], leads[i] = st.Header.MemberId, st.Leader
		if c.cfg.Front != nil {
			c.cfg.Front.Register(st.Header.MemberId, c.member(i).name)
		}
	}
	leader = -1
	for i := range eps {
		if leads[i] == 0 || (leads[0] != 0 && leads[i] != leads[0]) {
			agreed = false
		}
		for j := range eps {
			if leads[i] != 0 && ids[j] == leads[i] {
				leader = j
			}
		}
	}
	return leader, agreed && leader >= 0
}

// Leader returns the index of the leader, or -1.
func (c *Processes) Leader(ctx context.Context) int {
	l, _ := c.status(ctx)
	return l
}

// WaitHealthy waits up to timeout until every member answers and all
// agree on a leader.
func (c *Processes) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if _, ok := c.status(ctx); ok {
			return nil
		}
		if !Sleep(ctx, 100*time.Millisecond) {
			return fmt.Errorf("members did not agree on a leader within %v", timeout)
		}
	}
}

// Heal continues paused members, restarts dead ones and waits until all
// agree on a leader.
func (c *Processes) Heal(ctx context.Context) error {
	var errs []error
	for i := range c.Size() {
		if m := c.member(i); running(m) {
			m.paused = false
			m.cmd.Process.Signal(syscall.SIGCONT) // whatever it was, it runs
		}
		errs = append(errs, c.Restart(i))
	}
	errs = append(errs, c.WaitHealthy(ctx, time.Minute))
	return errors.Join(errs...)
}

// Replace removes member i from the cluster (MemberRemove, then kills
// it) and adds a fresh member with an empty data directory in its place
// (MemberAdd, then starts it with --initial-cluster-state existing).
func (c *Processes) Replace(ctx context.Context, i int) (string, error) {
	old := c.member(i)
	eps, _ := c.Endpoints()
	var others []string
	for _, ep := range eps {
		if ep != old.clientAddr {
			others = append(others, ep)
		}
	}
	cli, err := ClientFor(others)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	var oldID uint64
	if st, err := cli.Status(ctx, old.clientAddr); err == nil {
		oldID = st.Header.MemberId
	} else {
		return "", fmt.Errorf("status of %s: %w", old.name, err)
	}
	for {
		_, err := cli.MemberRemove(ctx, oldID)
		if err == nil || errors.Is(err, rpctypes.ErrMemberNotFound) {
			break
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("remove %s: %w", old.name, err)
		}
		Sleep(ctx, 200*time.Millisecond)
	}
	c.kill(old)
	m, err := c.add(ctx, cli)
	if err != nil {
		return "", fmt.Errorf("%w (%s was removed already)", err, old.name)
	}
	c.mu.Lock()
	c.members[i] = m
	c.gone = append(c.gone, old)
	c.gen++
	c.mu.Unlock()
	if err := c.start(m); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s replaced by %s", old.name, m.name), nil
}

// AddMember adds a fresh member (MemberAdd through the members at eps,
// then starts it with --initial-cluster-state existing) and returns its
// index.
func (c *Processes) AddMember(ctx context.Context, eps []string) (int, error) {
	cli, err := ClientFor(eps)
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	m, err := c.add(ctx, cli)
	if err != nil {
		return -1, err
	}
	c.mu.Lock()
	c.members = append(c.members, m)
	i := len(c.members) - 1
	c.gen++
	c.mu.Unlock()
	return i, c.start(m)
}

// add announces a new member to the cluster through cli and prepares it
// (not started).
func (c *Processes) add(ctx context.Context, cli *clientv3.Client) (*procMember, error) {
	m, err := c.newMember()
	if err != nil {
		return nil, err
	}
	peerURL := "http://" + m.advertised
	var members []*etcdserverpb.Member
	var id uint64
	for {
		added, err := cli.MemberAdd(ctx, []string{peerURL})
		if err == nil {
			members, id = added.Members, added.Member.ID
			break
		}
		if errors.Is(err, rpctypes.ErrPeerURLExist) {
			// An earlier attempt that seemed to fail went through.
			if list, lerr := cli.MemberList(ctx); lerr == nil {
				for _, mm := range list.Members {
					if slices.Contains(mm.PeerURLs, peerURL) {
						members, id = list.Members, mm.ID
					}
				}
				if id != 0 {
					break
				}
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("add %s: %w", m.name, err)
		}
		Sleep(ctx, 200*time.Millisecond)
	}
	var initial []string
	for _, mm := range members {
		name := mm.Name
		if mm.ID == id {
			name = m.name
		}
		for _, u := range mm.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	if c.cfg.Front != nil {
		c.cfg.Front.Register(id, m.name)
	}
	m.initialCluster, m.state = strings.Join(initial, ","), "existing"
	return m, nil
}

// DumpGoroutines makes every running member print its goroutines to its
// log (SIGQUIT, which also stops it) and waits for them to exit.
func (c *Processes) DumpGoroutines(string) error {
	c.mu.Lock()
	all := append([]*procMember(nil), c.members...)
	c.mu.Unlock()
	for _, m := range all {
		if running(m) {
			m.cmd.Process.Signal(syscall.SIGCONT)
			m.cmd.Process.Signal(syscall.SIGQUIT)
		}
	}
	for _, m := range all {
		if m.cmd != nil {
			select {
			case <-m.exited:
			case <-time.After(10 * time.Second):
			}
		}
	}
	return nil
}

// SaveLogs copies every member's log, replaced members' included.
func (c *Processes) SaveLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c.mu.Lock()
	all := append(append([]*procMember(nil), c.members...), c.gone...)
	c.mu.Unlock()
	var errs []error
	for _, m := range all {
		b, err := os.ReadFile(m.logPath)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, m.name+".log"), b, 0o644)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close kills every process.
func (c *Processes) Close() {
	c.mu.Lock()
	all := append(append([]*procMember(nil), c.members...), c.gone...)
	c.mu.Unlock()
	for _, m := range all {
		if m.cmd != nil && running(m) {
			m.cmd.Process.Signal(syscall.SIGCONT)
		}
		c.kill(m)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClusterOptions are the server settings, the same for every system.
type ClusterOptions struct {
	Size              int    // members
	BasePort          int    // member i listens on BasePort+10*i (client) and +1 (peer)
	SnapshotCount     int    // --snapshot-count
	HeartbeatInterval int    // --heartbeat-interval, ms
	ElectionTimeout   int    // --election-timeout, ms
	LogLevel          string // --log-level
	StartTimeout      time.Duration
}

// Member is one server process of a cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string
	LogPath   string
	args      []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current process has exited
	waitErr error
	logFile *os.File
}

// Cluster is a set of members of one system running on loopback.
type Cluster struct {
	System  string
	Binary  string
	Dir     string
	Members []*Member
	opts    ClusterOptions
}

// procs tracks every child process so that they can all be killed when
// the harness stops, whatever the path out.
var procs struct {
	sync.Mutex
	m map[*exec.Cmd]struct{}
}

func trackProc(c *exec.Cmd) {
	procs.Lock()
	defer procs.Unlock()
	if procs.m == nil {
		procs.m = map[*exec.Cmd]struct{}{}
	}
	procs.m[c] = struct{}{}
}

func untrackProc(c *exec.Cmd) {
	procs.Lock()
	defer procs.Unlock()
	delete(procs.m, c)
}

// killAllProcs sends SIGKILL to every child process still running.
func killAllProcs() {
	procs.Lock()
	defer procs.Unlock()
	for c := range procs.m {
		if c.Process != nil {
			_ = c.Process.Kill()
		}
	}
}

// memberArgs builds the command line of member i: etcd's flags, the same
// for every system.
func memberArgs(name, dataDir, clientURL, peerURL, initialCluster, token string, o ClusterOptions) []string {
	return []string{
		"--name", name,
		"--data-dir", dataDir,
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", initialCluster,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", token,
		"--snapshot-count", strconv.Itoa(o.SnapshotCount),
		"--heartbeat-interval", strconv.Itoa(o.HeartbeatInterval),
		"--election-timeout", strconv.Itoa(o.ElectionTimeout),
		"--logger", "zap",
		"--log-level", o.LogLevel,
		// Both serve /debug/pprof on the client port, so a run can be
		// profiled (go tool pprof http://127.0.0.1:24000/debug/pprof/profile);
		// the handlers cost nothing until asked.
		"--enable-pprof",
	}
}

// checkPortFree fails with a clear message if something listens on port.
func checkPortFree(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("port %d on 127.0.0.1 is taken (%v): is a cluster from an earlier run still up? Stop it, or choose other ports with -base-port", port, err)
	}
	return l.Close()
}

// newCluster lays out a cluster of system under dir; nothing runs yet.
func newCluster(system, binary, dir string, o ClusterOptions) (*Cluster, error) {
	if o.Size < 1 {
		return nil, fmt.Errorf("cluster size %d", o.Size)
	}
	if o.BasePort < 1024 || o.BasePort+10*o.Size > 65535 {
		return nil, fmt.Errorf("-base-port %d: need 1024 <= port and port+%d <= 65535", o.BasePort, 10*o.Size)
	}
	c := &Cluster{System: system, Binary: binary, Dir: dir, opts: o}
	var ic []string
	for i := range o.Size {
		m := &Member{
			Name:      fmt.Sprintf("%s-%d", system, i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", o.BasePort+10*i),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", o.BasePort+10*i+1),
		}
		m.DataDir = filepath.Join(dir, m.Name+".data")
		m.LogPath = filepath.Join(dir, m.Name+".log")
		c.Members = append(c.Members, m)
		ic = append(ic, m.Name+"="+m.PeerURL)
	}
	token := fmt.Sprintf("bench-%s-%d", system, time.Now().UnixNano())
	for _, m := range c.Members {
		m.args = memberArgs(m.Name, m.DataDir, m.ClientURL, m.PeerURL, strings.Join(ic, ","), token, o)
	}
	return c, nil
}

// Start checks the ports, starts every member and waits until each one
// answers a linearizable read through its own endpoint.
func (c *Cluster) Start(ctx context.Context) error {
	for i := range c.Members {
		for _, p := range []int{c.opts.BasePort + 10*i, c.opts.BasePort + 10*i + 1} {
			if err := checkPortFree(p); err != nil {
				return err
			}
		}
	}
	for _, m := range c.Members {
		if err := m.start(c.Binary); err != nil {
			c.Stop()
			return err
		}
	}
	for _, m := range c.Members {
		if _, err := m.waitServing(ctx, c.opts.StartTimeout); err != nil {
			c.Stop()
			return err
		}
	}
	return nil
}

// start launches the member's process, its output going to its log file
// (appended, so a restart keeps the earlier log).
func (m *Member) start(binary string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		select {
		case <-m.exited:
		default:
			return fmt.Errorf("%s: already running", m.Name)
		}
	}
	lf, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(binary, m.args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("%s: start %s: %w", m.Name, binary, err)
	}
	trackProc(cmd)
	m.cmd, m.logFile = cmd, lf
	m.exited = make(chan struct{})
	m.waitErr = nil
	exited := m.exited
	go func() {
		err := cmd.Wait()
		untrackProc(cmd)
		lf.Close()
		m.mu.Lock()
		m.waitErr = err
		m.mu.Unlock()
		close(exited)
	}()
	return nil
}

// pid returns the process id of the running process, or 0.
func (m *Member) pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// alive reports whether the member's process runs; if not, it says why.
func (m *Member) alive() error {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	if exited == nil {
		return fmt.Errorf("%s: not started", m.Name)
	}
	select {
	case <-exited:
		m.mu.Lock()
		err := m.waitErr
		m.mu.Unlock()
		if err == nil {
			err = errors.New("exit status 0")
		}
		return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", m.Name, err, m.LogPath, tailFile(m.LogPath, 30))
	default:
		return nil
	}
}

// signal sends sig to the process and waits up to wait for it to exit.
// It returns false if the process is still running after that.
func (m *Member) signal(sig syscall.Signal, wait time.Duration) bool {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		m.mu.Lock()
		m.cmd = nil
		m.mu.Unlock()
		return true
	case <-time.After(wait):
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL after a grace period.
// It reports whether SIGKILL was needed.
func (m *Member) stop() bool {
	if !m.signal(syscall.SIGTERM, 10*time.Second) {
		m.signal(syscall.SIGKILL, 10*time.Second)
		return true
	}
	return false
}

// kill ends the process at once, as kill -9 does.
func (m *Member) kill() error {
	if !m.signal(syscall.SIGKILL, 10*time.Second) {
		return fmt.Errorf("%s: still running 10s after SIGKILL", m.Name)
	}
	return nil
}

// waitServing waits until the member answers a linearizable read through
// its own endpoint and returns how long that took. It polls the port
// first, so gRPC's reconnect back-off does not add to the time, then
// makes each read on a fresh client.
func (m *Member) waitServing(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	host := strings.TrimPrefix(m.ClientURL, "http://")
	var lastErr error
	for {
		if err := m.alive(); err != nil {
			return 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s did not serve a linearizable read within %s (last error: %v); last lines of %s:\n%s",
				m.Name, timeout, lastErr, m.LogPath, tailFile(m.LogPath, 30))
		}
		conn, err := net.DialTimeout("tcp", host, 100*time.Millisecond)
		if err != nil {
			lastErr = err
			time.Sleep(5 * time.Millisecond)
			continue
		}
		conn.Close()
		if err = linearizableGet(ctx, m.ClientURL, 2*time.Second); err == nil {
			return time.Since(start), nil
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
}

// linearizableGet makes one linearizable read through endpoint alone.
func linearizableGet(ctx context.Context, endpoint string, timeout time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: timeout, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = cli.Get(rctx, "bench-health")
	return err
}

// Leader returns the index of the member that is the leader, asking
// each member in turn.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		for i, m := range c.Members {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cli.Status(sctx, m.ClientURL)
			cancel()
			if err != nil {
				lastErr = err
				continue
			}
			if st.Leader != 0 && st.Header != nil && st.Leader == st.Header.MemberId {
				return i, nil
			}
		}
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return -1, fmt.Errorf("%s: no member says it is the leader (last error: %v)", c.System, lastErr)
}

// checkAlive returns an error naming the first member that has exited.
func (c *Cluster) checkAlive() error {
	for _, m := range c.Members {
		if err := m.alive(); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends every member (SIGTERM, then SIGKILL after 10s) and returns
// the names of those that needed SIGKILL.
func (c *Cluster) Stop() []string {
	var wg sync.WaitGroup
	killed := make([]bool, len(c.Members))
	for i, m := range c.Members {
		wg.Go(func() { killed[i] = m.stop() })
	}
	wg.Wait()
	var names []string
	for i, k := range killed {
		if k {
			names = append(names, c.Members[i].Name)
		}
	}
	return names
}

// diskUsage returns the bytes of every file under dir.
func diskUsage(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// peakRSS returns the peak resident set size (VmHWM) of process pid in
// bytes, read from /proc.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusField(b, "VmHWM")
}

// parseStatusField reads a "Name:   1234 kB" line of /proc/<pid>/status
// and returns the value in bytes.
func parseStatusField(status []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", name, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected %s line %q: %v", name, line, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s line", name)
}

// tailFile returns the last n lines of a file, indented, or a note why it
// cannot.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	defer f.Close()
	const maxTail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		_, _ = f.Seek(fi.Size()-maxTail, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "    (empty)"
	}
	return "    " + strings.Join(lines, "\n    ")
}

//go:build linux

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/synod-db/synod/tests/framework"
)

// docker runs the docker CLI and returns its trimmed standard output.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// DockerAvailable reports why no Docker engine can be used (nil if one
// can).
func DockerAvailable(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("no docker command in PATH")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("no Docker engine reachable: %w", err)
	}
	return nil
}

// BuildImage builds the FROM scratch image of tests/docker/Dockerfile
// around the static binary bin, tagged tag.
func BuildImage(ctx context.Context, dockerfile, bin, tag string) error {
	dir, err := os.MkdirTemp("", "synod-chaos-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, f := range [][2]string{{dockerfile, "Dockerfile"}, {bin, "synod"}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f[1]), b, 0o755); err != nil {
			return err
		}
	}
	_, err = docker(ctx, "build", "-q", "--label", "synod-chaos=1", "-t", tag, dir)
	return err
}

// Docker is a cluster of synod containers of one image. Each member is
// on two private networks: the peer network, which carries raft traffic
// (members reach each other by network alias, <name>-peer, known only
// there) and which partitions disconnect members from; and the client
// network, through which the harness (on the host) reaches the members'
// client ports, and which stays connected.
type Docker struct {
	image               string
	prefix              string // of container and network names
	peerNet, clientNet  string
	Heartbeat, Election int

	mu      sync.Mutex
	members []*dkMember
	gen     uint64
}

type dkMember struct {
	name, container string
	ip              string // on the client network
	paused, cut     bool
}

// StartDocker starts n members of image on two new networks.
func StartDocker(ctx context.Context, image string, n int, seed uint64) (*Docker, error) {
	c := &Docker{image: image, prefix: fmt.Sprintf("synod-chaos-%d-%d", os.Getpid(), seed%100000), Heartbeat: 50, Election: 500, gen: 1}
	c.peerNet, c.clientNet = c.prefix+"-peer", c.prefix+"-client"
	for _, nw := range []string{c.peerNet, c.clientNet} {
		if _, err := docker(ctx, "network", "create", "--label", "synod-chaos=1", nw); err != nil {
			c.Close()
			return nil, err
		}
	}
	var initial []string
	for i := range n {
		m := &dkMember{name: fmt.Sprintf("d%d", i)}
		m.container = c.prefix + "-" + m.name
		c.members = append(c.members, m)
		initial = append(initial, fmt.Sprintf("%s=http://%s-peer:2380", m.name, m.name))
	}
	for _, m := range c.members {
		_, err := docker(ctx, "create", "--name", m.container, "--label", "synod-chaos=1", "--network", c.clientNet, c.image,
			"--name", m.name, "--data-dir", "/data/"+m.name+".etcd",
			"--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://"+m.container+":2379",
			"--listen-peer-urls", "http://0.0.0.0:2380", "--initial-advertise-peer-urls", "http://"+m.name+"-peer:2380",
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", c.prefix,
			"--heartbeat-interval", fmt.Sprint(c.Heartbeat), "--election-timeout", fmt.Sprint(c.Election),
			"--snapshot-count", "300", "--logger", "json")
		if err != nil {
			c.Close()
			return nil, err
		}
		if err := c.connect(ctx, m); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, m := range c.members {
		if _, err := docker(ctx, "start", m.container); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.refreshIPs(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.waitHealthy(ctx, time.Minute); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w (the harness reaches members at their container addresses on %s: is the Docker engine's bridge network routable from here?)", err, c.clientNet)
	}
	return c, nil
}

// connect attaches m to the peer network under its alias.
func (c *Docker) connect(ctx context.Context, m *dkMember) error {
	_, err := docker(ctx, "network", "connect", "--alias", m.name+"-peer", c.peerNet, m.container)
	return err
}

// refreshIPs reads the members' client network addresses (a restarted
// container may get a new one) and bumps the generation if any changed.
func (c *Docker) refreshIPs(ctx context.Context) error {
	changed := false
	for _, m := range c.members {
		ip, err := docker(ctx, "inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, c.clientNet), m.container)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if ip != "" && ip != m.ip {
			m.ip = ip
			changed = true
		}
		c.mu.Unlock()
	}
	if changed {
		c.mu.Lock()
		c.gen++
		c.mu.Unlock()
	}
	return nil
}

// Endpoints returns the members' client addresses.
func (c *Docker) Endpoints() ([]string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		if m.ip != "" {
			eps = append(eps, m.ip+":2379")
		}
	}
	return eps, c.gen
}

// status returns the index of the member the others call leader and
// whether every member answered and agreed.
func (c *Docker) status(ctx context.Context) (int, bool) {
	c.mu.Lock()
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.ip + ":2379"
	}
	c.mu.Unlock()
	cli, err := framework.ClientFor(eps)
	if err != nil {
		return -1, false
	}
	defer cli.Close()
	ok := true
	ids := make([]uint64, len(eps))
	leads := make([]uint64, len(eps))
	for i, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			ok = false
			continue
		}
		ids[i], leads[i] = st.Header.MemberId, st.Leader
	}
	leader := -1
	for i := range eps {
		if leads[i] == 0 || leads[i] != leads[0] {
			ok = false
		}
		for j := range eps {
			if leads[i] != 0 && ids[j] == leads[i] {
				leader = j
			}
		}
	}
	return leader, ok && leader >= 0
}

func (c *Docker) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if _, ok := c.status(ctx); ok {
			return nil
		}
		if !framework.Sleep(ctx, 200*time.Millisecond) {
			return fmt.Errorf("members did not agree on a leader within %v", timeout)
		}
	}
}

// victim picks the leader (who 0), a random member (1) or a random
// member other than the leader (2).
func (c *Docker) victim(ctx context.Context, rng *rand.Rand, who int) *dkMember {
	l, _ := c.status(ctx)
	switch {
	case who == 0 && l >= 0:
		return c.members[l]
	case who == 2 && l >= 0:
		i := rng.IntN(len(c.members) - 1)
		if i >= l {
			i++
		}
		return c.members[i]
	}
	return c.members[rng.IntN(len(c.members))]
}

// Heal reconnects, unpauses and starts every member, as their actual
// state requires (an interrupted docker command may have taken effect),
// and waits until they agree on a leader.
func (c *Docker) Heal(ctx context.Context) error {
	var errs []error
	for _, m := range c.members {
		state, err := docker(ctx, "inspect", "-f", fmt.Sprintf(`{{.State.Running}} {{.State.Paused}} {{if index .NetworkSettings.Networks %q}}connected{{end}}`, c.peerNet), m.container)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f := strings.Fields(state)
		if len(f) < 3 {
			if err := c.connect(ctx, m); err != nil {
				errs = append(errs, err)
			}
		}
		m.cut = false
		if len(f) > 1 && f[1] == "true" {
			if _, err := docker(ctx, "unpause", m.container); err != nil {
				errs = append(errs, err)
			}
		}
		m.paused = false
		if len(f) > 0 && f[0] != "true" {
			if _, err := docker(ctx, "start", m.container); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, c.refreshIPs(ctx), c.waitHealthy(ctx, time.Minute))
	return errors.Join(errs...)
}

// DumpGoroutines makes every member print its goroutines to its log
// (SIGQUIT, which also stops it) and waits for the containers to exit.
func (c *Docker) DumpGoroutines(string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range c.members {
		if m.paused {
			docker(ctx, "unpause", m.container)
		}
		docker(ctx, "kill", "--signal", "QUIT", m.container)
	}
	for _, m := range c.members {
		docker(ctx, "wait", m.container)
	}
	return nil
}

// SaveLogs writes every container's log (docker logs) into dir.
func (c *Docker) SaveLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, m := range c.members {
		cmd := exec.Command("docker", "logs", m.container)
		out, err := cmd.CombinedOutput()
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, m.name+".log"), out, 0o644)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close removes the containers and the networks.
func (c *Docker) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var names []string
	for _, m := range c.members {
		names = append(names, m.container)
	}
	if len(names) > 0 {
		docker(ctx, append([]string{"rm", "-f", "-v"}, names...)...)
	}
	docker(ctx, "network", "rm", c.peerNet, c.clientNet)
}

// Faults returns the faults of the container tier: a member (random, the
// leader, or a follower) disconnected from the peer network, docker kill (SIGKILL)
// and docker pause of a random member and of the leader, and a rolling
// restart of every member in turn (docker restart, graceful).
func (c *Docker) Faults() []Fault {
	disconnect := func(who int) func(context.Context, *rand.Rand) (string, func(context.Context) error, error) {
		return func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			m := c.victim(ctx, rng, who)
			if _, err := docker(ctx, "network", "disconnect", c.peerNet, m.container); err != nil {
				return m.name, nil, err
			}
			m.cut = true
			return m.name, func(ctx context.Context) error {
				m.cut = false
				return c.connect(ctx, m)
			}, nil
		}
	}
	kill := func(who int) func(context.Context, *rand.Rand) (string, func(context.Context) error, error) {
		return func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			m := c.victim(ctx, rng, who)
			if _, err := docker(ctx, "kill", m.container); err != nil {
				return m.name, nil, err
			}
			return m.name, func(ctx context.Context) error {
				if _, err := docker(ctx, "start", m.container); err != nil {
					return err
				}
				return c.refreshIPs(ctx)
			}, nil
		}
	}
	pause := func(who int) func(context.Context, *rand.Rand) (string, func(context.Context) error, error) {
		return func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			m := c.victim(ctx, rng, who)
			if _, err := docker(ctx, "pause", m.container); err != nil {
				return m.name, nil, err
			}
			m.paused = true
			return m.name, func(ctx context.Context) error {
				m.paused = false
				_, err := docker(ctx, "unpause", m.container)
				return err
			}, nil
		}
	}
	return []Fault{
		{Name: "disconnect", Inject: disconnect(1)},
		{Name: "disconnect-leader", Inject: disconnect(0)},
		{Name: "disconnect-follower", Inject: disconnect(2)},
		{Name: "kill", Inject: kill(1)},
		{Name: "kill-leader", Inject: kill(0)},
		{Name: "pause", Inject: pause(1)},
		{Name: "pause-leader", Inject: pause(0)},
		{Name: "rolling-restart", Inject: func(ctx context.Context, rng *rand.Rand) (string, func(context.Context) error, error) {
			ctx = context.WithoutCancel(ctx) // finish the round once started
			for _, m := range c.members {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				_, err := docker(rctx, "restart", "-t", "5", m.container)
				if err == nil {
					err = c.refreshIPs(rctx)
				}
				if err == nil {
					err = c.waitHealthy(rctx, time.Minute)
				}
				cancel()
				if err != nil {
					return "restarting " + m.name, nil, err
				}
			}
			return fmt.Sprintf("%d members, one at a time", len(c.members)), nil, nil
		}},
	}
}

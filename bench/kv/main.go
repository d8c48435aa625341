// Command kv compares synod with etcd on the same machine: it builds both
// servers, starts a fresh 3-member cluster of each on loopback in turn,
// runs the same client workloads against each (written here with etcd's
// Go client, after the workloads of etcd's benchmark tool), and reports
// the numbers side by side.
//
//	go run . compare          # the full comparison (a few minutes)
//	go run . compare -quick   # a smoke test
//	go run . put --endpoints=127.0.0.1:2379 --conns=100 --clients=1000 ...
//
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage: go run . <command> [flags]

commands:
  compare     build etcd and synod, run the workloads on a fresh 3-member
              cluster of each in turn, print and write the comparison
              (-quick for a smoke test; -h for the flags)
  put         put workload against running servers (--endpoints)
  range KEY   range (get) of one key against running servers
  txn-mixed   mixed reads and single-put txns against running servers
  cluster     start a cluster of the first of -systems with compare's
              settings and keep it up until Ctrl-C (for manual runs)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Every child process dies with us, however we leave.
	defer killAllProcs()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		// A second signal ends the harness the default way; the servers
		// then die with it (their parent-death signal is SIGKILL).
		stop()
		fmt.Fprintln(stderr, "\ninterrupted: stopping the servers (Ctrl-C again to kill everything at once)")
	}()
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "compare":
		var cfg *compareConfig
		if cfg, err = parseCompareFlags(rest, stderr); err == nil {
			err = runCompare(ctx, cfg, stdout)
		}
	case kindPut, kindRange, kindTxnMixed:
		var w Workload
		var eps []string
		if w, eps, err = parseLoadFlags(cmd, rest, stderr); err == nil {
			err = runLoad(ctx, w, eps, stdout)
		}
	case "cluster":
		var cfg *compareConfig
		if cfg, err = parseCompareFlags(rest, stderr); err == nil {
			err = runCluster(ctx, cfg, stdout)
		}
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", cmd, usage)
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// runLoad runs one workload against running servers and prints its
// summary.
func runLoad(ctx context.Context, w Workload, endpoints []string, out io.Writer) error {
	progress := func(done, total int, el time.Duration) {
		fmt.Fprintf(out, "  ... %d/%d in %s (%.0f/s)\n", done, total, el.Round(time.Second), float64(done)/el.Seconds())
	}
	r, err := runWorkload(ctx, endpoints, w, progress)
	if err != nil {
		return err
	}
	printResult(out, r)
	return nil
}

// runCluster starts one cluster and waits for Ctrl-C.
func runCluster(ctx context.Context, cfg *compareConfig, out io.Writer) error {
	cfg.Systems = cfg.Systems[:1]
	bins, err := buildBinaries(ctx, cfg, out)
	if err != nil {
		return err
	}
	name := cfg.Systems[0]
	root := cfg.DataRoot
	if root == "" {
		root = os.TempDir()
	}
	dir, err := os.MkdirTemp(root, "kvbench-"+name+"-")
	if err != nil {
		return err
	}
	if !cfg.KeepData {
		defer os.RemoveAll(dir)
	}
	c, err := newCluster(name, bins[name], dir, cfg.Cluster)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer c.Stop()
	fmt.Fprintf(out, "%s cluster up; data and logs in %s (deleted on exit unless -keep-data)\n", name, dir)
	for _, m := range c.Members {
		fmt.Fprintf(out, "  %s  client %s  peer %s  pid %d\n", m.Name, m.ClientURL, m.PeerURL, m.pid())
	}
	fmt.Fprintln(out, "Ctrl-C to stop")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.checkAlive(); err != nil {
				return err
			}
		}
	}
}

// Command synod runs one member of a synod cluster. Its flags are etcd's,
// with etcd's defaults and meanings, so an etcd deployment's flags (or
// ETCD_* environment variables) start synod unchanged. Run with no flags
// it is a single member serving clients on localhost:2379 and peers on
// localhost:2380, with its data in ./default.etcd.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/synod-db/synod/embed"
	"github.com/synod-db/synod/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run parses the arguments, starts the member and waits for a signal. It
// returns the process exit code: 2 for bad flags, 1 for a failure.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, logger, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		printVersion(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "synod: %v\n", err)
		return 2
	}
	logStart(logger, cfg)
	m, err := embed.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "synod: %v\n", err)
		return 1
	}
	for _, u := range cfg.ListenClientURLs {
		// etcd's words for a listener without TLS, which tools and
		// etcd's tests look for.
		logger.Warn("serving client traffic insecurely; this is strongly discouraged!", "address", u)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ready := m.Server.ReadyNotify()
	for {
		select {
		case <-ready:
			// etcd's words: tools wait for this line before they use a
			// member (etcd's own test framework among them).
			logger.Info("ready to serve client requests", "client-urls", cfg.ClientURLs)
			ready = nil
		case <-sigs:
			logger.Info("stopping: handing leadership over if leader")
			return stopBounded(logger, func() { m.Close(leaderHandOver) }, stopGrace, sigs)
		case <-m.Server.Removed():
			m.Close(time.Second)
			logger.Warn("stopped: this member was removed from the cluster")
			return 0
		case <-m.Server.Done():
			m.Kill()
			fmt.Fprintln(stderr, "synod: the member stopped after a fatal error (see the log above)")
			return 1
		}
	}
}

// printVersion prints the version in the form of etcd's --version, which
// tools parse ("etcd Version: 3.7.3"), naming the etcd release whose API
// synod implements, then synod's own build.
func printVersion(w io.Writer) {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(w, "etcd Version: %s\n", server.Version)
	fmt.Fprintf(w, "Git SHA: %s\n", rev)
	fmt.Fprintf(w, "Go Version: %s\n", runtime.Version())
	fmt.Fprintf(w, "Go OS/Arch: %s/%s\n", runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "Server: synod, implementing the etcd v%s API\n", server.Version)
}

const (
	// leaderHandOver bounds how long a stopping leader tries to hand
	// leadership to another member.
	leaderHandOver = 5 * time.Second
	// stopGrace bounds a whole stop after a signal: the hand-over, then
	// closing the listeners, the raft loop and the files.
	stopGrace = leaderHandOver + 10*time.Second
)

// stopBounded runs stop and returns 0 once it is done, but gives it at
// most grace: an operator (or a supervisor) that sends SIGTERM must see
// the process end, whatever it was doing, a slow disk or a catching-up
// peer included. When the grace runs out, or on a second signal, it
// returns 1 at once and the process exits without finishing the stop;
// that is safe, as after kill -9: everything acknowledged is in the WAL.
func stopBounded(logger *slog.Logger, stop func(), grace time.Duration, sigs <-chan os.Signal) int {
	done := make(chan struct{})
	go func() {
		stop()
		close(done)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
		return 0
	case <-timer.C:
		logger.Error("stopping took too long; exiting without a clean shutdown (everything acknowledged is durable in the WAL)", "grace", grace)
	case sig := <-sigs:
		logger.Warn("second signal while stopping; exiting at once (everything acknowledged is durable in the WAL)", "signal", sig.String())
	}
	return 1
}

// logStart logs the configuration the member starts with, under etcd's
// message and with etcd's names for the settings, so that an operator
// (or a test) reads what is in effect from the log.
func logStart(lg *slog.Logger, cfg embed.Config) {
	lg.Info("starting an etcd server",
		"etcd-version", server.Version,
		"name", cfg.Name,
		"data-dir", cfg.DataDir,
		"wal-dir", cfg.WALDir,
		"heartbeat-interval", cfg.HeartbeatInterval.String(),
		"election-timeout", cfg.ElectionTimeout.String(),
		"snapshot-count", cfg.SnapshotCount,
		"snapshot-catchup-entries", cfg.SnapshotCatchUpEntries,
		"max-snapshots", cfg.MaxSnapshots,
		"max-wals", cfg.MaxWALs,
		"initial-advertise-peer-urls", cfg.PeerURLs,
		"listen-peer-urls", cfg.ListenPeerURLs,
		"advertise-client-urls", cfg.ClientURLs,
		"listen-client-urls", cfg.ListenClientURLs,
		"listen-metrics-urls", cfg.ListenMetricsURLs,
		"initial-cluster-state", cfg.InitialClusterState,
		"initial-cluster-token", cfg.InitialClusterToken,
		"quota-backend-bytes", cfg.QuotaBackendBytes,
		"max-request-bytes", cfg.MaxRequestBytes,
		"max-txn-ops", cfg.MaxTxnOps,
		"pre-vote", cfg.PreVote,
		"strict-reconfig-check", !cfg.SkipReconfigCheck,
		"corrupt-check-time", cfg.CorruptCheckTime.String(),
		"watch-progress-notify-interval", cfg.Watch.ProgressInterval.String(),
		// synod never served the v2 API: etcd's enforced level is the
		// truth (etcd's tests read it from this line).
		"v2-deprecation", "write-only")
}

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
	"syscall"
	"time"

	"github.com/synod-db/synod/embed"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run parses the arguments, starts the member and waits for a signal. It
// returns the process exit code: 2 for bad flags, 1 for a failure.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, logger, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "synod: %v\n", err)
		return 2
	}
	m, err := embed.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "synod: %v\n", err)
		return 1
	}
	logger.Info("serving", "name", cfg.Name, "client-urls", cfg.ClientURLs, "peer-urls", cfg.PeerURLs, "data-dir", cfg.DataDir)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
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

// newLogger builds the logger the --logger and --log-level flags select.
func newLogger(kind, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "info":
		lv = slog.LevelInfo
	case "warn":
		lv = slog.LevelWarn
	case "error", "panic", "fatal":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn, error, panic or fatal", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch kind {
	case "zap", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --logger %q: want zap (JSON lines, etcd's default), json or text", kind)
}

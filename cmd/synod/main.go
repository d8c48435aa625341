// Command synod will run a synod server. Until the server lands (issue 4),
// it runs a demonstration of synod's Raft library: a cluster of members in
// one process, each on its own goroutine, connected by in-memory channels,
// electing a leader and committing entries, printed as it happens.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	members := flag.Int("members", 3, "number of members in the demo cluster (1-7)")
	entries := flag.Int("entries", 5, "number of entries to commit before exiting")
	tick := flag.Duration("tick", 10*time.Millisecond, "raft tick interval")
	flag.Parse()
	if *members < 1 || *members > 7 {
		fmt.Fprintf(os.Stderr, "synod: -members must be between 1 and 7, got %d\n", *members)
		os.Exit(2)
	}
	if *entries < 0 {
		fmt.Fprintf(os.Stderr, "synod: -entries must not be negative, got %d\n", *entries)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := runDemo(ctx, os.Stdout, *members, *entries, *tick); err != nil {
		fmt.Fprintf(os.Stderr, "synod: %v\n", err)
		os.Exit(1)
	}
}

// Command synodctl is the command-line client of synod. It speaks the etcd v3
// gRPC API, so its commands, flags and output follow etcdctl's conventions:
//
//	synodctl --endpoints=127.0.0.1:2379 put greeting hello
//	synodctl get --prefix greet
//	synodctl member list -w table
//	synodctl snapshot save backup.db
//
// Run "synodctl --help" for the list of commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

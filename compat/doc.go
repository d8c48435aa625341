// Package compat holds end-to-end compatibility tests: they build the real
// etcdctl (pinned by the tool directive in this module's go.mod) and the
// synod server, start clusters of synod processes on loopback ports and run
// the etcdctl commands an operator runs, checking their output and exit
// status.
//
// It is a separate module so that nothing of etcd's client tooling enters
// the product's go.mod. Run it with `cd compat && go test ./...`.
package compat

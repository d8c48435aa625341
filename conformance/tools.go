//go:build tools

package conformance

// The suite is built from this module with `go test -c`; the import
// keeps go.etcd.io/etcd/tests/v3 and its test dependencies in go.mod.
import (
	_ "go.etcd.io/etcd/tests/v3/common"
	_ "go.etcd.io/etcd/tests/v3/e2e"
)

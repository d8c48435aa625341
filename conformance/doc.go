// Package conformance runs etcd's own end-to-end test suite
// (go.etcd.io/etcd/tests/v3, the tests/common package built with the e2e
// tag) against synod: etcd's framework starts synod as its `etcd`
// binary, with the real etcdctl and etcdutl beside it, and no wrapper.
// See suite_test.go for what runs by default and how to run it all.
package conformance

package main

import (
	"flag"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// inertFlag is a flag of etcd 3.7's `etcd --help` that synod accepts but
// does not act on (or not yet), so that an etcd deployment's command line
// starts synod unchanged. Giving one logs a warning that names it and
// says why it has no effect; giving one of the refused ones a value other
// than etcd's default stops synod instead, where starting without it
// would mislead (a member that would not serve TLS, or would bootstrap
// from somewhere else).
type inertFlag struct {
	name string
	// def is etcd's default, as the flag package prints it.
	def string
	// isBool flags take no value: --flag alone means true.
	isBool bool
	// refuse stops synod when the flag is given another value than def.
	refuse bool
	why    string
	// values, if set, are the only values etcd accepts; another one is
	// refused as etcd refuses it.
	values []string
}

const (
	whyTLS       = "TLS is not supported yet; synod serves plain HTTP/2 only"
	whyAuth      = "authentication is not supported yet; the auth API is not served"
	whyDiscovery = "synod reaches the discovery service (--discovery-endpoints) with plain gRPC and default keepalives; DNS discovery and the v2 fallback are not supported"
	whyBbolt     = "synod keeps its key space in Pebble, not bbolt"
	whyTracing   = "distributed tracing is not supported yet"
)

// inertFlags are etcd's flags that synod does not implement, each with
// etcd's default and the reason. The flags synod implements are in
// parseFlags.
var inertFlags = []inertFlag{
	{name: "force-new-cluster", def: "false", isBool: true, refuse: true, why: "forcing a new cluster from an existing data directory is not supported yet; restore the member from a snapshot with synodctl snapshot restore"},
	{name: "discovery-srv", refuse: true, why: whyDiscovery},
	{name: "discovery-srv-name", why: whyDiscovery},
	{name: "discovery-request-timeout", def: "5s", why: whyDiscovery},
	{name: "discovery-keepalive-time", def: "2s", why: whyDiscovery},
	{name: "discovery-keepalive-timeout", def: "6s", why: whyDiscovery},
	{name: "discovery-insecure-transport", def: "true", isBool: true, why: whyDiscovery},
	{name: "discovery-insecure-skip-tls-verify", def: "false", isBool: true, why: whyDiscovery},
	{name: "discovery-cert", refuse: true, why: whyTLS},
	{name: "discovery-key", refuse: true, why: whyTLS},
	{name: "discovery-cacert", refuse: true, why: whyTLS},
	{name: "discovery-user", why: whyDiscovery},
	{name: "discovery-password", why: whyDiscovery},
	{name: "discovery-fallback", def: "proxy", why: whyDiscovery},
	{name: "cert-file", refuse: true, why: whyTLS},
	{name: "key-file", refuse: true, why: whyTLS},
	{name: "client-cert-file", refuse: true, why: whyTLS},
	{name: "client-key-file", refuse: true, why: whyTLS},
	{name: "client-cert-auth", def: "false", isBool: true, refuse: true, why: whyTLS},
	{name: "client-crl-file", refuse: true, why: whyTLS},
	{name: "client-cert-allowed-hostname", refuse: true, why: whyTLS},
	{name: "trusted-ca-file", refuse: true, why: whyTLS},
	{name: "auto-tls", def: "false", isBool: true, refuse: true, why: whyTLS},
	{name: "peer-cert-file", refuse: true, why: whyTLS},
	{name: "peer-key-file", refuse: true, why: whyTLS},
	{name: "peer-client-cert-file", refuse: true, why: whyTLS},
	{name: "peer-client-key-file", refuse: true, why: whyTLS},
	{name: "peer-client-cert-auth", def: "false", isBool: true, refuse: true, why: whyTLS},
	{name: "peer-trusted-ca-file", refuse: true, why: whyTLS},
	{name: "peer-auto-tls", def: "false", isBool: true, refuse: true, why: whyTLS},
	{name: "peer-crl-file", refuse: true, why: whyTLS},
	{name: "peer-cert-allowed-cn", refuse: true, why: whyTLS},
	{name: "peer-cert-allowed-hostname", refuse: true, why: whyTLS},
	{name: "peer-skip-client-san-verification", def: "false", isBool: true, why: whyTLS},
	{name: "self-signed-cert-validity", def: "1", why: whyTLS},
	{name: "cipher-suites", why: whyTLS},
	{name: "tls-min-version", def: "TLS1.2", why: whyTLS},
	{name: "tls-max-version", why: whyTLS},
	{name: "auth-token", def: "simple", why: whyAuth},
	{name: "auth-token-ttl", def: "300", why: whyAuth},
	{name: "bcrypt-cost", def: "10", why: whyAuth},
	{name: "backend-bbolt-freelist-type", def: "map", why: whyBbolt},
	{name: "backend-batch-interval", def: "0s", why: whyBbolt + "; applied entries are committed to it in batches of synod's choosing"},
	{name: "backend-batch-limit", def: "0", why: whyBbolt + "; applied entries are committed to it in batches of synod's choosing"},
	{name: "memory-mlock", def: "false", isBool: true, why: whyBbolt},
	{name: "enable-distributed-tracing", def: "false", isBool: true, why: whyTracing},
	{name: "distributed-tracing-address", def: "0.0.0.0:4317", why: whyTracing},
	{name: "distributed-tracing-service-name", def: "etcd", why: whyTracing},
	{name: "distributed-tracing-instance-id", why: whyTracing},
	{name: "distributed-tracing-sampling-rate", def: "0", why: whyTracing},
	{name: "metrics", def: "basic", why: "synod exports one set of metrics"},
	{name: "enable-log-rotation", def: "false", isBool: true, why: "log rotation is not supported; rotate with the system's tools (logrotate, journald)"},
	{name: "log-rotation-config-json", def: `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`, why: "log rotation is not supported"},
	{name: "raft-read-timeout", def: "5s", why: "peer connections detect failures by heartbeats"},
	{name: "raft-write-timeout", def: "5s", why: "peer connections detect failures by heartbeats"},
	{name: "compact-hash-check-time", def: "1m0s", why: "the compaction hash check is not run; --corrupt-check-time compares the members' hashes"},
	{name: "compaction-batch-limit", def: "1000", why: "compaction deletes in Pebble range deletions, not batches"},
	{name: "compaction-sleep-interval", def: "10ms", why: "compaction deletes in Pebble range deletions, not batches"},
	{name: "downgrade-check-time", def: "5s", why: "downgrades are not supported"},
	{name: "v2-deprecation", def: "write-only", why: "synod never served the v2 API", values: []string{"write-only", "write-only-drop-data", "gone"}},
}

// inertValue records what an inert flag was given.
type inertValue struct {
	f   *inertFlag
	val string
}

func (v *inertValue) String() string {
	if v == nil || v.f == nil {
		return ""
	}
	return v.val
}

func (v *inertValue) Set(s string) error {
	if v.f.isBool {
		if _, err := strconv.ParseBool(s); err != nil {
			return fmt.Errorf("want true or false")
		}
	}
	if v.f.values != nil && !slices.Contains(v.f.values, s) {
		return fmt.Errorf("invalid value %q", s) // etcd's words
	}
	v.val = s
	return nil
}

// IsBoolFlag lets a boolean flag be given alone.
func (v *inertValue) IsBoolFlag() bool { return v.f.isBool }

// addInertFlags registers the inert flags on fs.
func addInertFlags(fs *flag.FlagSet) map[string]*inertValue {
	vals := make(map[string]*inertValue, len(inertFlags))
	for i := range inertFlags {
		f := &inertFlags[i]
		v := &inertValue{f: f, val: f.def}
		vals[f.name] = v
		fs.Var(v, f.name, "etcd's --"+f.name+": accepted, no effect in synod ("+f.why+")")
	}
	return vals
}

// checkInertFlags returns the warnings for the inert flags given, or an
// error for a refused one.
func checkInertFlags(fs *flag.FlagSet, vals map[string]*inertValue) ([]string, error) {
	var given []string
	fs.Visit(func(fl *flag.Flag) {
		if _, ok := vals[fl.Name]; ok {
			given = append(given, fl.Name)
		}
	})
	sort.Strings(given)
	var warnings []string
	for _, name := range given {
		v := vals[name]
		if v.f.refuse && !sameValue(v.f, v.val) {
			return nil, fmt.Errorf("--%s=%s is not supported: %s", name, v.val, v.f.why)
		}
		warnings = append(warnings, fmt.Sprintf("--%s has no effect: %s", name, v.f.why))
	}
	return warnings, nil
}

// sameValue reports whether a value given to f is its default.
func sameValue(f *inertFlag, val string) bool {
	if f.isBool {
		a, _ := strconv.ParseBool(val)
		b, _ := strconv.ParseBool(f.def)
		return a == b
	}
	return strings.TrimSpace(val) == f.def
}

// etcdFeatures are etcd 3.7's server feature gates: what each does in
// synod.
var etcdFeatures = map[string]string{
	"LeaseCheckpoint":              "",
	"LeaseCheckpointPersist":       "", // synod's checkpoints are always persisted
	"FastLeaseKeepAlive":           "", // keep-alives are always answered by the leader at once
	"TxnModeWriteWithSharedBuffer": "has no effect: synod's transactions do not share bbolt's buffer",
	"StopGRPCServiceOnDefrag":      "has no effect: defragmentation does not stop the member",
	"InitialCorruptCheck":          "",
	"CompactHashCheck":             "has no effect: the compaction hash check is not run; --corrupt-check-time compares the members' hashes",
	"SetMemberLocalAddr":           "has no effect: peers are dialled from the system's choice of address",
	"PriorityRequest":              "has no effect: requests are not prioritised",
	"AllAlpha":                     "",
	"AllBeta":                      "",
}

// featureGates is --feature-gates: Name=true|false pairs, as etcd's.
type featureGates map[string]bool

func (g *featureGates) String() string {
	if g == nil || *g == nil {
		return ""
	}
	var parts []string
	for k, v := range *g {
		parts = append(parts, k+"="+strconv.FormatBool(v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (g *featureGates) Set(s string) error {
	if *g == nil {
		*g = featureGates{}
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("missing bool value for %s", k)
		}
		if _, known := etcdFeatures[k]; !known {
			return fmt.Errorf("unrecognized feature gate: %s", k)
		}
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("invalid value of %s=%s, err: %v", k, v, err)
		}
		(*g)[k] = b
	}
	return nil
}

// enabled reports whether the gate was turned on.
func (g featureGates) enabled(name string) bool { return g[name] }

// warnings names the gates given that have no effect in synod.
func (g featureGates) warnings() []string {
	var out []string
	for k := range g {
		if why := etcdFeatures[k]; why != "" {
			out = append(out, "--feature-gates "+k+" "+why)
		}
	}
	sort.Strings(out)
	return out
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synod-db/synod/diskfs"
	"github.com/synod-db/synod/server"
)

// etcd37Flags are the flags of etcd 3.7.3's `etcd --help` (its server
// flags, the feature gates and the command's own), a fact of etcd's
// interface listed here so that the test notices one synod lacks.
var etcd37Flags = strings.Fields(`
data-dir wal-dir listen-peer-urls listen-client-urls listen-client-http-urls
listen-metrics-urls max-snapshots max-wals name snapshot-count
heartbeat-interval election-timeout initial-election-tick-advance
quota-backend-bytes backend-bbolt-freelist-type backend-batch-interval
backend-batch-limit max-txn-ops max-request-bytes grpc-keepalive-min-time
grpc-keepalive-interval grpc-keepalive-timeout socket-reuse-port
socket-reuse-address max-concurrent-streams raft-read-timeout
raft-write-timeout initial-advertise-peer-urls advertise-client-urls
discovery-endpoints discovery-token discovery-dial-timeout
discovery-request-timeout discovery-keepalive-time
discovery-keepalive-timeout discovery-insecure-transport
discovery-insecure-skip-tls-verify discovery-cert discovery-key
discovery-cacert discovery-user discovery-password discovery-srv
discovery-srv-name initial-cluster initial-cluster-token
strict-reconfig-check pre-vote cert-file key-file client-cert-file
client-key-file client-cert-auth client-crl-file
client-cert-allowed-hostname trusted-ca-file auto-tls peer-cert-file
peer-key-file peer-client-cert-file peer-client-key-file
peer-client-cert-auth peer-trusted-ca-file peer-auto-tls
self-signed-cert-validity peer-crl-file peer-cert-allowed-cn
peer-cert-allowed-hostname cipher-suites peer-skip-client-san-verification
tls-min-version tls-max-version cors host-whitelist logger log-outputs
log-level log-format enable-log-rotation log-rotation-config-json
auto-compaction-retention auto-compaction-mode enable-pprof metrics
enable-distributed-tracing distributed-tracing-address
distributed-tracing-service-name distributed-tracing-instance-id
distributed-tracing-sampling-rate auth-token bcrypt-cost auth-token-ttl
enable-grpc-gateway corrupt-check-time compact-hash-check-time
compaction-batch-limit compaction-sleep-interval
watch-progress-notify-interval downgrade-check-time
warning-apply-duration warning-unary-request-duration memory-mlock
bootstrap-defrag-threshold-megabytes max-learners snapshot-catchup-entries
unsafe-no-fsync force-new-cluster feature-gates config-file
discovery-fallback initial-cluster-state v2-deprecation version`)

// definedFlags lists the flags parseFlags defines, from the usage text
// --help prints.
func definedFlags(t *testing.T) map[string]bool {
	t.Helper()
	var stderr bytes.Buffer
	if _, _, err := parseFlags([]string{"--help"}, env(nil), &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(stderr.String(), -1) {
		out[m[1]] = true
	}
	return out
}

// TestEveryEtcdFlagAccepted checks that synod knows every flag of etcd
// 3.7, so that an etcd command line never fails on an unknown flag.
func TestEveryEtcdFlagAccepted(t *testing.T) {
	defined := definedFlags(t)
	for _, name := range etcd37Flags {
		if !defined[name] {
			t.Errorf("etcd's --%s is unknown to synod", name)
		}
	}
}

// TestInertFlags checks the flags synod accepts without acting on them:
// each starts synod with a warning naming it, and each refused one given
// another value than etcd's default stops it with a message naming it.
func TestInertFlags(t *testing.T) {
	for _, f := range inertFlags {
		arg := "--" + f.name + "=" + f.def
		var stderr bytes.Buffer
		if _, _, err := parseFlags([]string{arg}, env(nil), &stderr); err != nil {
			t.Errorf("%s: %v", arg, err)
			continue
		}
		if !strings.Contains(stderr.String(), "--"+f.name+" has no effect") {
			t.Errorf("%s: no warning naming it in %q", arg, stderr.String())
		}
		if !f.refuse {
			continue
		}
		other := "/some/file"
		if f.isBool {
			other = "true"
			if f.def == "true" {
				other = "false"
			}
		}
		arg = "--" + f.name + "=" + other
		_, _, err := parseFlags([]string{arg}, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--"+f.name) {
			t.Errorf("%s: got %v, want a refusal naming the flag", arg, err)
		}
	}
}

// TestImplementedEtcdFlags checks the etcd flags synod acts on.
func TestImplementedEtcdFlags(t *testing.T) {
	cfg, _, err := parseFlags(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SkipReconfigCheck || cfg.SlowFirstElection || cfg.MaxLearners != 1 || cfg.Watch.ProgressInterval != 10*time.Minute || cfg.SnapshotCatchUpEntries != 5000 ||
		cfg.ListenMetricsURLs != nil || cfg.ListenClientHTTPURLs != nil || cfg.FS != nil {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, _, err = parseFlags([]string{
		"--strict-reconfig-check=false", "--initial-election-tick-advance=false", "--max-learners=3",
		"--watch-progress-notify-interval=2s", "--snapshot-catchup-entries=50",
		"--feature-gates=LeaseCheckpoint=true,LeaseCheckpointPersist=true",
		"--listen-metrics-urls=http://127.0.0.1:2381,unix://m.sock", "--listen-client-http-urls=http://127.0.0.1:2382",
		"--unsafe-no-fsync", "--socket-reuse-port", "--socket-reuse-address",
	}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.SkipReconfigCheck || !cfg.SlowFirstElection || cfg.MaxLearners != 3 || cfg.Watch.ProgressInterval != 2*time.Second || cfg.SnapshotCatchUpEntries != 50 {
		t.Errorf("given: %+v", cfg.Config)
	}
	if !slices.Equal(cfg.ListenMetricsURLs, []string{"http://127.0.0.1:2381", "unix://m.sock"}) || !slices.Equal(cfg.ListenClientHTTPURLs, []string{"http://127.0.0.1:2382"}) {
		t.Errorf("metrics URLs %q, client HTTP URLs %q", cfg.ListenMetricsURLs, cfg.ListenClientHTTPURLs)
	}
	if !cfg.ReusePort || !cfg.ReuseAddress {
		t.Errorf("--socket-reuse-port/--socket-reuse-address not set: %v %v", cfg.ReusePort, cfg.ReuseAddress)
	}
	if cfg.FS != diskfs.NoSync(diskfs.Default) {
		t.Errorf("--unsafe-no-fsync: file system %T, want diskfs.NoSync", cfg.FS)
	}
	if cfg.Lease.CheckpointInterval != 5*time.Minute {
		t.Errorf("--feature-gates=LeaseCheckpoint=true: checkpoint interval %v, want 5m", cfg.Lease.CheckpointInterval)
	}
	var stderr bytes.Buffer
	if _, _, err := parseFlags([]string{"--feature-gates=CompactHashCheck=true"}, env(nil), &stderr); err != nil || !strings.Contains(stderr.String(), "CompactHashCheck has no effect") {
		t.Errorf("a gate synod does not act on: %v, log %q", err, stderr.String())
	}
	for _, bad := range []string{"--feature-gates=NoSuchGate=true", "--feature-gates=LeaseCheckpoint", "--feature-gates=LeaseCheckpoint=maybe"} {
		if _, _, err := parseFlags([]string{bad}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "feature-gates") {
			t.Errorf("%s: got %v, want an error naming the flag", bad, err)
		}
	}
}

// TestVersion checks that --version prints etcd's form, which tools
// (etcd's test framework among them) parse for the version.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(stdout.String(), "\n")
	if lines[0] != "etcd Version: "+server.Version {
		t.Fatalf("first line %q, want etcd Version: %s", lines[0], server.Version)
	}
	for _, prefix := range []string{"Git SHA: ", "Go Version: go", "Go OS/Arch: "} {
		if !strings.Contains(stdout.String(), "\n"+prefix) {
			t.Errorf("no line starting %q in %q", prefix, stdout.String())
		}
	}
}

// TestLogShape checks that log lines carry etcd's field names and forms.
func TestLogShape(t *testing.T) {
	var out bytes.Buffer
	lg, err := newLogger(logSettings{logger: "zap", level: "info", format: "json", outputs: []string{"stderr"}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("ready to serve client requests", "took", 1500*time.Millisecond)
	lg.Debug("not shown at info")
	var line map[string]any
	sc := bufio.NewScanner(&out)
	if !sc.Scan() {
		t.Fatal("no log line")
	}
	if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
		t.Fatalf("%q: %v", sc.Text(), err)
	}
	if sc.Scan() {
		t.Errorf("a debug line at level info: %q", sc.Text())
	}
	if line["level"] != "info" || line["msg"] != "ready to serve client requests" || line["took"] != "1.5s" {
		t.Errorf("line %v", line)
	}
	if ts, _ := line["ts"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`).MatchString(ts) {
		t.Errorf("ts %q is not etcd's form", ts)
	}
	if c, _ := line["caller"].(string); !regexp.MustCompile(`^synod/etcdflags_test\.go:\d+$`).MatchString(c) {
		t.Errorf("caller %q, want dir/file.go:line", c)
	}
	for _, k := range []string{"time", "source"} {
		if _, ok := line[k]; ok {
			t.Errorf("slog's own key %q is left in %v", k, line)
		}
	}
}

// TestDeprecatedFlags: the flags etcd 3.7 deprecates warn in etcd's
// words, and a v2-deprecation level etcd 3.7 no longer has is refused as
// etcd refuses it.
func TestDeprecatedFlags(t *testing.T) {
	for _, arg := range []string{"--max-snapshots=10", "--v2-deprecation=write-only-drop-data"} {
		var stderr bytes.Buffer
		if _, _, err := parseFlags([]string{arg}, env(nil), &stderr); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(strings.Split(arg, "=")[0], "--")
		if !strings.Contains(stderr.String(), deprecatedFlags[name]) {
			t.Errorf("%s: log lacks %q:\n%s", arg, deprecatedFlags[name], stderr.String())
		}
	}
	var stderr bytes.Buffer
	_, _, err := parseFlags([]string{"--v2-deprecation=not-yet"}, env(nil), &stderr)
	if want := `invalid value "not-yet" for flag -v2-deprecation: invalid value "not-yet"`; err == nil || !strings.Contains(stderr.String()+err.Error(), want) {
		t.Errorf("--v2-deprecation=not-yet: %v, output %q; want %q", err, stderr.String(), want)
	}
}

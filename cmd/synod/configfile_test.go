package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// etcdSampleConfig is shaped like etcd's etcd.conf.yml.sample: every key
// a flag's name, URLs as comma-separated strings, log outputs as a list,
// durations in nanoseconds, transport security sections left empty.
const etcdSampleConfig = `
name: 'node-a'
data-dir: /var/lib/etcd
snapshot-count: 10000
heartbeat-interval: 50
election-timeout: 500
quota-backend-bytes: 8589934592
listen-peer-urls: http://10.0.0.1:2380
listen-client-urls: http://10.0.0.1:2379,http://127.0.0.1:2379
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://10.0.0.1:2380
advertise-client-urls: http://10.0.0.1:2379
initial-cluster: node-a=http://10.0.0.1:2380
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-pprof: true
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file:
  client-cert-auth: false
  auto-tls: false
  allowed-cn:
log-level: debug
logger: zap
log-outputs: [stderr]
grpc-keepalive-min-time: 2000000000
force-new-cluster: false
auto-compaction-mode: periodic
auto-compaction-retention: "1"
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "etcd.conf.yml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigFile: --config-file reads etcd's YAML configuration, and, as
// in etcd, replaces the other flags and the environment (with a warning
// naming what it ignores).
func TestConfigFile(t *testing.T) {
	path := writeConfig(t, etcdSampleConfig)
	var stderr bytes.Buffer
	cfg, _, err := parseFlags([]string{"--config-file", path, "--name", "ignored"}, env(map[string]string{"ETCD_DATA_DIR": "/ignored"}), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "node-a" || cfg.DataDir != "/var/lib/etcd" || cfg.HeartbeatInterval != 50*time.Millisecond || cfg.ElectionTimeout != 500*time.Millisecond {
		t.Errorf("config: name %q dir %q heartbeat %v election %v", cfg.Name, cfg.DataDir, cfg.HeartbeatInterval, cfg.ElectionTimeout)
	}
	if cfg.QuotaBackendBytes != 8589934592 || !cfg.SkipReconfigCheck || !cfg.API.EnablePprof || cfg.API.KeepAliveMinTime != 2*time.Second {
		t.Errorf("config: quota %d skip-reconfig %v pprof %v keepalive %v", cfg.QuotaBackendBytes, cfg.SkipReconfigCheck, cfg.API.EnablePprof, cfg.API.KeepAliveMinTime)
	}
	if !slices.Equal(cfg.ListenClientURLs, []string{"http://10.0.0.1:2379", "http://127.0.0.1:2379"}) || cfg.InitialCluster["node-a"][0] != "http://10.0.0.1:2380" {
		t.Errorf("config: client URLs %q, initial cluster %v", cfg.ListenClientURLs, cfg.InitialCluster)
	}
	if !strings.Contains(stderr.String(), "--name is ignored") {
		t.Errorf("no warning about the ignored --name; log:\n%s", stderr.String())
	}
}

// TestConfigFileRefusals: a file that cannot be read, is not YAML, sets
// a flag synod refuses (TLS until it lands) or gives a bad value fails
// start-up with the file named; an unknown key is only a warning.
func TestConfigFileRefusals(t *testing.T) {
	for text, want := range map[string]string{
		"name: [unclosed": "not a YAML mapping",
		"client-transport-security:\n  cert-file: a.crt": "--cert-file=a.crt is not supported",
		"heartbeat-interval: soon":                       "heartbeat-interval",
		"client-transport-security: yes":                 "must be a mapping",
	} {
		path := writeConfig(t, text)
		if _, _, err := parseFlags([]string{"--config-file=" + path}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", text, err, want)
		}
	}
	if _, _, err := parseFlags([]string{"--config-file=/no/such/file.yml"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "/no/such/file.yml") {
		t.Errorf("missing file: %v", err)
	}
	var stderr bytes.Buffer
	path := writeConfig(t, "name: a\nno-such-setting: 1\n")
	if _, _, err := parseFlags([]string{"--config-file=" + path}, env(nil), &stderr); err != nil || !strings.Contains(stderr.String(), `no-such-setting`) {
		t.Errorf("unknown key: %v, log %q", err, stderr.String())
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// dialedConfig runs "get k" with env and args and returns the client
// configuration the command dialed with.
func dialedConfig(t *testing.T, env map[string]string, args ...string) clientv3.Config {
	t.Helper()
	s := kvServer()
	r := runWith(s, env, "", append([]string{"get", "k"}, args...)...)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if len(s.dials) != 1 {
		t.Fatalf("%d dials", len(s.dials))
	}
	return s.dials[0]
}

func TestGlobalFlagDefaults(t *testing.T) {
	cfg := dialedConfig(t, nil)
	if strings.Join(cfg.Endpoints, ",") != "127.0.0.1:2379" || cfg.DialTimeout != 2*time.Second || cfg.TLS != nil || cfg.Username != "" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestEndpointsFromFlagsAndEnvironment(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag", nil, []string{"--endpoints", "a:1,b:2"}, "a:1,b:2"},
		{"flag repeated", nil, []string{"--endpoints", "a:1", "--endpoints=b:2"}, "a:1,b:2"},
		{"spaces and empty entries", nil, []string{"--endpoints", "a:1, ,b:2,"}, "a:1,b:2"},
		{"SYNODCTL_ENDPOINTS", map[string]string{"SYNODCTL_ENDPOINTS": "s:1,s:2"}, nil, "s:1,s:2"},
		{"ETCDCTL_ENDPOINTS fallback", map[string]string{"ETCDCTL_ENDPOINTS": "http://e:1"}, nil, "http://e:1"},
		{"SYNODCTL wins over ETCDCTL", map[string]string{"SYNODCTL_ENDPOINTS": "s:1", "ETCDCTL_ENDPOINTS": "e:1"}, nil, "s:1"},
		{"empty SYNODCTL is unset", map[string]string{"SYNODCTL_ENDPOINTS": "", "ETCDCTL_ENDPOINTS": "e:1"}, nil, "e:1"},
		{"flag wins over environment", map[string]string{"SYNODCTL_ENDPOINTS": "s:1"}, []string{"--endpoints=f:1"}, "f:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dialedConfig(t, tt.env, tt.args...)
			if got := strings.Join(cfg.Endpoints, ","); got != tt.want {
				t.Errorf("endpoints %s, want %s", got, tt.want)
			}
		})
	}
}

func TestOtherGlobalsFromEnvironment(t *testing.T) {
	cfg := dialedConfig(t, map[string]string{"SYNODCTL_DIAL_TIMEOUT": "7s", "ETCDCTL_USER": "root:secret"})
	if cfg.DialTimeout != 7*time.Second || cfg.Username != "root" || cfg.Password != "secret" {
		t.Errorf("cfg %+v", cfg)
	}
	r := runWith(kvServer(), map[string]string{"ETCDCTL_WRITE_OUT": "json", "SYNODCTL_HEX": "true"}, "", "get", "k")
	if r.code != 0 || !strings.HasPrefix(r.stdout, `{"header":`) {
		t.Errorf("ETCDCTL_WRITE_OUT=json: %q %q", r.stdout, r.stderr)
	}
	r = runWith(kvServer(), map[string]string{"SYNODCTL_HEX": "1"}, "", "get", "k")
	if r.code != 0 || !strings.HasPrefix(r.stdout, `\x6b\x31`) {
		t.Errorf("SYNODCTL_HEX=1: %q %q", r.stdout, r.stderr)
	}
	r = runWith(kvServer(), map[string]string{"SYNODCTL_COMMAND_TIMEOUT": "soon"}, "", "get", "k")
	if r.code != exitError || !strings.Contains(r.stderr, `Error: invalid value "soon" in environment variable SYNODCTL_COMMAND_TIMEOUT`) {
		t.Errorf("bad env: exit %d %q", r.code, r.stderr)
	}
}

func TestGlobalFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get", "k", "--endpoints", ","}, "no endpoints given: set --endpoints or SYNODCTL_ENDPOINTS"},
		{[]string{"get", "k", "--dial-timeout", "0s"}, "--dial-timeout must be positive"},
		{[]string{"get", "k", "--command-timeout", "-1s"}, "--command-timeout must be positive"},
		{[]string{"get", "k", "--command-timeout", "5"}, `invalid argument "5" for "--command-timeout"`},
		{[]string{"get", "k", "-w", "yaml"}, `unknown output format "yaml": want simple, json or table`},
		{[]string{"get", "k", "-w", "table"}, `"synodctl get" does not support --write-out=table (use simple or json)`},
		{[]string{"get", "k", "--password", "x"}, "--password given without --user"},
		{[]string{"get", "k", "--user", "root"}, `no password for user "root": give --user root:<password> or --password`},
		{[]string{"get", "k", "--user", "root:a", "--password", "b"}, "password given twice"},
		{[]string{"get", "k", "--user", ":pw"}, "--user needs a user name"},
		{[]string{"get", "k", "--cert", "c.pem"}, "--cert and --key must be given together"},
		{[]string{"get", "k", "--cacert", "/nonexistent/ca.pem"}, "reading --cacert"},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "synodctl"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			s := kvServer()
			runFail(t, s, tt.want, tt.args...)
			if len(s.ops) != 0 {
				t.Errorf("the request was sent")
			}
		})
	}
}

func TestUsageErrorFormat(t *testing.T) {
	r := runWith(kvServer(), nil, "", "get")
	want := "Error: get expects <key> [range_end], got no arguments\n" +
		"Usage: synodctl get <key> [range_end] [flags]\n" +
		"Run 'synodctl get --help' for more information.\n"
	if r.code != exitError || r.stderr != want || r.stdout != "" {
		t.Errorf("exit %d\nstderr %q\nwant   %q\nstdout %q", r.code, r.stderr, want, r.stdout)
	}
}

func TestTimeoutErrorNamesEndpoints(t *testing.T) {
	s := &fakeServer{doFn: func(clientv3.Op) (clientv3.OpResponse, error) {
		return clientv3.OpResponse{}, context.DeadlineExceeded
	}}
	runFail(t, s, "context deadline exceeded (no answer from a:1,b:2 within --command-timeout=5s: is the server up and reachable?)", "get", "k", "--endpoints=a:1,b:2")
	s.dialErr = errors.New("bad endpoint")
	runFail(t, s, "cannot connect to a:1: bad endpoint", "get", "k", "--endpoints=a:1")
}

func TestRunUsesProcessWriters(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "synodctl version: ") {
		t.Errorf("stdout %q", out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"get"}, strings.NewReader(""), &out, &errb); code != exitError {
		t.Errorf("exit %d", code)
	}
	// newRootCommand alone is what in-process integration tests use.
	root := newRootCommand(&out, &errb)
	root.SetArgs([]string{"--help"})
	out.Reset()
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "snapshot") {
		t.Errorf("help: %v %q", err, out.String())
	}
}

func TestTLSConfig(t *testing.T) {
	g := globalFlags{}
	if c, err := g.tlsConfig([]string{"a:1", "http://b:2"}); c != nil || err != nil {
		t.Errorf("plain endpoints: %v %v", c, err)
	}
	if c, err := g.tlsConfig([]string{"https://b:2"}); c == nil || err != nil {
		t.Errorf("https endpoint: %v %v", c, err)
	}
	g.insecureSkipTLSVerify = true
	if c, err := g.tlsConfig([]string{"a:1"}); c == nil || !c.InsecureSkipVerify || err != nil {
		t.Errorf("--insecure-skip-tls-verify: %v %v", c, err)
	}

	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	g = globalFlags{cacert: certFile, cert: certFile, key: keyFile}
	c, err := g.tlsConfig([]string{"a:1"})
	if err != nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatalf("cert files: %v %v", c, err)
	}
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	g = globalFlags{cacert: junk}
	if _, err := g.tlsConfig(nil); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("junk CA: %v", err)
	}
	g = globalFlags{cert: junk, key: junk}
	if _, err := g.tlsConfig(nil); err == nil || !strings.Contains(err.Error(), "loading client certificate") {
		t.Errorf("junk cert: %v", err)
	}
}

// writeTestCert writes a self-signed certificate and its key as PEM files.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "synodctl test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestPrinterHelpers(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 24576: "25 kB", 1_300_000: "1.3 MB", 2_000_000_000: "2.0 GB", 15_500_000_000_000: "16 TB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := hexEscape([]byte("a\x00\xff")); got != `\x61\x00\xff` {
		t.Errorf("hexEscape = %q", got)
	}
	if memberIDString(0x00ab) != "ab" {
		t.Errorf("memberIDString")
	}
}

package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// envSuite selects the run: unset runs ciTests against synod (CI's
// share, a few minutes); "all" runs every test of etcd's tests/common
// against real etcd 3.7.3 and against synod, and prints both counts side
// by side with the tests whose outcome differs; any other value is a
// -test.run pattern run the same way (to replay a few tests).
const envSuite = "SYNOD_ETCD_SUITE"

// envPackage picks the package of etcd's suite that envSuite runs:
// "common" (the default: tests/common, built with -tags e2e) or "e2e"
// (tests/e2e: etcdctl, curl against the JSON gateway, logging, flags).
const envPackage = "SYNOD_ETCD_PACKAGE"

// ciTests are the tests CI runs, by package. tests/common: the everyday
// KV, watch, lease, cluster and maintenance paths, start-up and
// readiness, and the behaviours issue 16 fixed (NOSPACE recovery, HashKV
// across compaction, range streams, unix sockets). tests/e2e: the JSON
// gateway through curl (KV, lease, lock, election, cluster,
// maintenance), flags and log lines etcd's tools read.
var ciTests = map[string][]string{
	"common": {
		"TestKVPut", "TestKVGet", "TestKVDelete", "TestTxnSucc", "TestTxnFail",
		"TestWatch", "TestLeaseGrantKeepAliveOnce", "TestLeaseGrantRevoke",
		"TestMemberList", "TestMemberAdd", "TestMemberRemove", "TestCompact",
		"TestDefragOnline", "TestAlarm", "TestEndpointStatus", "TestEndpointHashKV",
		"TestEndpointHealth", "TestStatus", "TestWaitLeader",
		"TestVerifyHashKVAfterCompactAndDefrag", "TestKVGetStream", "TestAuthority",
	},
	"e2e": {
		"TestCurlV3KVBasicOperation", "TestCurlV3KVTxn", "TestCurlV3KVCompact",
		"TestCurlV3LeaseGrantNoTLS", "TestCurlV3LeaseRevokeNoTLS", "TestCurlV3LeaseLeasesNoTLS",
		"TestCurlV3LeaseKeepAliveNoTLS", "TestCurlV3LockOperations", "TestCurlV3CampaignNoTLS",
		"TestCurlV3ProclaimMissiongLeaderKeyNoTLS", "TestCurlV3ResignMissiongLeaderKeyNoTLS",
		"TestCurlV3ElectionLeader", "TestCurlV3ClusterOperations", "TestCurlV3Maintenance.*",
		"TestWarningApplyDuration", "TestBootstrapDefragFlag", "TestSnapshotCatchupEntriesFlag",
		"TestEtcdUnixPeers", "TestDefragNoSpace",
	},
}

// TestEtcdSuite runs etcd's own end-to-end tests with synod as the etcd
// binary. Every test that needs neither TLS nor authentication (the
// security issue's) must pass. Unset, envSuite runs CI's share of both
// packages; set, it runs envPackage's tests it names.
func TestEtcdSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs etcd's e2e suite")
	}
	pattern := os.Getenv(envSuite)
	if pattern == "" {
		for _, pkg := range []string{"common", "e2e"} {
			t.Run(pkg, func(t *testing.T) {
				runPackage(t, pkg, "^("+strings.Join(ciTests[pkg], "|")+")$", false)
			})
		}
		return
	}
	if pattern == "all" {
		pattern = "."
	}
	pkg := os.Getenv(envPackage)
	switch pkg {
	case "":
		pkg = "common"
	case "common", "e2e":
	default:
		t.Fatalf("%s=%q: want common or e2e", envPackage, pkg)
	}
	runPackage(t, pkg, pattern, true)
}

// runPackage builds package pkg of etcd's suite and runs the tests that
// pattern selects against synod, and, if withEtcd, against etcd 3.7.3
// too, side by side.
func runPackage(t *testing.T, pkg, pattern string, withEtcd bool) {
	bins := t.TempDir()
	suite := filepath.Join(bins, pkg+".test")
	build(t, ".", suite, "test", "-c", "-tags", "e2e", "go.etcd.io/etcd/tests/v3/"+pkg)
	build(t, ".", filepath.Join(bins, "synod", "etcdctl"), "build", "go.etcd.io/etcd/etcdctl/v3")
	build(t, ".", filepath.Join(bins, "synod", "etcdutl"), "build", "go.etcd.io/etcd/etcdutl/v3")
	build(t, "..", filepath.Join(bins, "synod", "etcd"), "build", "github.com/synod-db/synod/cmd/synod")
	if withEtcd {
		build(t, ".", filepath.Join(bins, "etcd", "etcd"), "build", "go.etcd.io/etcd/server/v3")
		for _, tool := range []string{"etcdctl", "etcdutl"} {
			if err := os.Link(filepath.Join(bins, "synod", tool), filepath.Join(bins, "etcd", tool)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The TLS tests read etcd's certificates from the suite's module.
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.etcd.io/etcd/tests/v3").Output()
	if err != nil {
		t.Fatalf("locating etcd's test module: %v", err)
	}
	certs := filepath.Join(strings.TrimSpace(string(dir)), "fixtures")
	synod, needs := runSuite(t, suite, filepath.Join(bins, "synod"), certs, pattern)
	report := synod.counts("synod", needs)
	var etcd outcomes
	if withEtcd {
		etcd, _ = runSuite(t, suite, filepath.Join(bins, "etcd"), certs, pattern)
		report = etcd.counts("etcd 3.7.3", needs) + report + differences(etcd, synod, needs)
	}
	t.Log("\n" + report)
	var failed []string
	// Alone, synod must fail nothing in scope; beside etcd, it must pass
	// everything in scope that etcd passes (a test it skips or never
	// reaches counts as failed).
	if etcd == nil {
		for name, res := range synod {
			if res == "FAIL" && needs.scope(name) == "" {
				failed = append(failed, name)
			}
		}
	}
	for name, res := range etcd {
		if res == "PASS" && synod[name] != "PASS" && needs.scope(name) == "" {
			failed = append(failed, name)
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 {
		t.Errorf("%d tests of etcd's suite that need neither TLS nor auth fail on synod:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
}

// build runs the go command in dir to produce out.
func build(t *testing.T, dir, out string, args ...string) {
	t.Helper()
	args = append(args[:1], append([]string{"-o", out}, args[1:]...)...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, b)
	}
}

// outcomes maps each leaf test (a test without subtests, or a subtest
// without subtests of its own) to PASS, FAIL or SKIP.
type outcomes map[string]string

var (
	resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	runLine    = regexp.MustCompile(`^=== (?:RUN|CONT|NAME)\s+(\S+)`)
	// authTest matches the tests of authentication, and those (named
	// ...WithNoAuth and the like) that set users and roles up first.
	authTest = regexp.MustCompile(`^Test(Auth([A-Z]|$)|User|Role|RootRole)|Auth$|V3Auth`)
)

// refusals are what synod answers when a test needs the security issue's
// features, and the scope each reveals. etcd's e2e tests often run over
// TLS without saying so in their names (testCtl's default configuration
// is peer auto-TLS), so their output tells.
var refusals = map[string]string{
	"TLS is not supported yet":            "TLS",
	"authentication is not supported yet": "auth",
	"unknown service etcdserverpb.Auth":   "auth",
}

// runSuite runs the suite binary with the binaries in binDir and the
// certificates in certDir, and returns the leaves' outcomes, and the
// tests whose output shows they need TLS or auth (refusals). The suite
// runs in its own directory: its framework changes the working
// directory and writes there.
func runSuite(t *testing.T, suite, binDir, certDir, pattern string) (outcomes, needs) {
	t.Helper()
	cmd := exec.Command(suite, "-test.v", "-test.run", pattern, "-test.timeout", "40m", "-bin-dir", binDir, "-cert-dir", certDir)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s: %s in %v (exit: %v)", binDir, pattern, time.Since(start).Round(time.Second), err)
	all, found := outcomes{}, needs{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	current := ""
	for sc.Scan() {
		line := sc.Text()
		if m := resultLine.FindStringSubmatch(line); m != nil {
			all[m[2]] = m[1]
		}
		if m := runLine.FindStringSubmatch(line); m != nil {
			current = m[1]
			continue
		}
		for text, scope := range refusals {
			if current != "" && strings.Contains(line, text) {
				found[current] = scope
			}
		}
	}
	leaves := outcomes{}
	for name, res := range all {
		parent := false
		for other := range all {
			if strings.HasPrefix(other, name+"/") {
				parent = true
				break
			}
		}
		if !parent {
			leaves[name] = res
		}
	}
	if len(leaves) == 0 {
		t.Fatalf("the suite reported no test results; its output ends:\n%s", tail(out.String(), 4000))
	}
	return leaves, found
}

// needs maps tests to the scope their output showed they need.
type needs map[string]string

// scope is the scope of a test: by its name (scope), else by what its
// output, or that of a test it is part of, showed it needs.
func (n needs) scope(name string) string {
	if s := scope(name); s != "" {
		return s
	}
	for p := name; ; {
		if s := n[p]; s != "" {
			return s
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			return ""
		}
		p = p[:i]
	}
}

// scope says which issue a test belongs to if not this one: "TLS" for a
// variant run over TLS, "auth" for a test of authentication or one that
// sets users and roles up; "" otherwise.
func scope(name string) string {
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if overTLS(p) {
			return "TLS"
		}
	}
	if authTest.MatchString(parts[0]) {
		return "auth"
	}
	return ""
}

// overTLS reports whether a test or subtest name says it runs over TLS:
// it names TLS (but not NoTLS), https, unixs, or cipher suites.
func overTLS(name string) bool {
	n := strings.ToLower(name)
	for i := strings.Index(n, "tls"); i >= 0; {
		if !strings.HasSuffix(n[:i], "no") {
			return true
		}
		next := strings.Index(n[i+3:], "tls")
		if next < 0 {
			break
		}
		i += 3 + next
	}
	return strings.Contains(n, "https") || strings.Contains(n, "unixs") || strings.Contains(n, "ciphersuite")
}

// counts summarises outcomes by scope.
func (o outcomes) counts(system string, n needs) string {
	type tally struct{ pass, fail, skip int }
	by := map[string]*tally{"": {}, "TLS": {}, "auth": {}}
	for name, res := range o {
		tl := by[n.scope(name)]
		switch res {
		case "PASS":
			tl.pass++
		case "FAIL":
			tl.fail++
		default:
			tl.skip++
		}
	}
	var b strings.Builder
	for _, s := range []string{"", "TLS", "auth"} {
		label := map[string]string{"": "neither TLS nor auth", "TLS": "TLS", "auth": "auth"}[s]
		fmt.Fprintf(&b, "%-12s %-22s %d passed, %d failed, %d skipped\n", system, label, by[s].pass, by[s].fail, by[s].skip)
	}
	return b.String()
}

// differences lists the tests whose outcome differs between the runs.
func differences(etcd, synod outcomes, n needs) string {
	var lines []string
	for name, res := range etcd {
		if synod[name] != res {
			lines = append(lines, fmt.Sprintf("  %s: etcd %s, synod %s (%s)", name, res, or(synod[name], "not run"), or(n.scope(name), "in scope")))
		}
	}
	sort.Strings(lines)
	return fmt.Sprintf("%d tests differ:\n%s\n", len(lines), strings.Join(lines, "\n"))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestScope checks how test names are sorted into this scope and
// the security issue's.
func TestScope(t *testing.T) {
	for name, want := range map[string]string{
		"TestKVPut/NoTLS":                                           "",
		"TestCurlV3LeaseGrantNoTLS":                                 "",
		"TestCurlV3KVTxn/noTLS":                                     "",
		"TestCurlV3KVTxn/autoTLS":                                   "TLS",
		"TestKVPut/PeerTLS_and_ClientTLS":                           "TLS",
		"TestCurlV3_MaxStreams_BelowLimit_TLS_Small":                "TLS",
		"TestCurlV3CipherSuitesValid":                               "TLS",
		`TestAuthority/Size:_1,_Scenario:_"https://address[:port]"`: "TLS",
		`TestAuthority/Size:_1,_Scenario:_"unixs:absolute_path"`:    "TLS",
		`TestAuthority/Size:_1,_Scenario:_"unix:path"`:              "",
		"TestAuthEnable/NoTLS":                                      "auth",
		"TestCurlV3AuthUserBasicOperations":                         "auth",
		"TestUserAdd_Simple/NoTLS":                                  "auth",
		"TestCtlV3AuthAndWatch":                                     "auth",
	} {
		if got := scope(name); got != want {
			t.Errorf("scope(%q) = %q, want %q", name, got, want)
		}
	}
	// A test whose name does not tell, but whose output showed it ran
	// over TLS, is the security issue's, with its subtests.
	n := needs{"TestCtlV3Lock": "TLS"}
	if n.scope("TestCtlV3Lock") != "TLS" || n.scope("TestCtlV3Lock/sub") != "TLS" || n.scope("TestCtlV3LockWithCmd") != "" {
		t.Errorf("scope by output: %q %q %q", n.scope("TestCtlV3Lock"), n.scope("TestCtlV3Lock/sub"), n.scope("TestCtlV3LockWithCmd"))
	}
}

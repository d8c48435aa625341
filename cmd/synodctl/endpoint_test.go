package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func statusOf(member, leader uint64, learner bool, errs ...string) *clientv3.StatusResponse {
	return &clientv3.StatusResponse{
		Header:           &pb.ResponseHeader{ClusterId: 0xc1, MemberId: member, Revision: 9, RaftTerm: 3},
		Version:          "3.7.0",
		DbSize:           24576,
		DbSizeInUse:      16384,
		Leader:           leader,
		RaftIndex:        120,
		RaftTerm:         3,
		RaftAppliedIndex: 119,
		IsLearner:        learner,
		Errors:           errs,
	}
}

func statusServer() *fakeServer {
	return &fakeServer{status: map[string]*clientv3.StatusResponse{
		"a:2379": statusOf(0xa1, 0xa1, false),
		"b:2379": statusOf(0xb2, 0xa1, false, "memberID:b2 alarm:NOSPACE"),
		"c:2379": statusOf(0xc3, 0xa1, true),
	}}
}

func TestEndpointStatus(t *testing.T) {
	s := statusServer()
	out := runOK(t, s, "endpoint", "status", "--endpoints=a:2379,b:2379")
	want := `a:2379, a1, 3.7.0, 25 kB, 16 kB, true, false, 3, 120, 119, 
b:2379, b2, 3.7.0, 25 kB, 16 kB, false, false, 3, 120, 119, memberID:b2 alarm:NOSPACE
`
	if out != want {
		t.Errorf("simple:\n%q\nwant:\n%q", out, want)
	}

	table := runOK(t, s, "endpoint", "status", "--endpoints=a:2379,c:2379", "-w", "table")
	wantTable := `ENDPOINT   ID   VERSION   DB SIZE   DB SIZE IN USE   IS LEADER   IS LEARNER   RAFT TERM   RAFT INDEX   RAFT APPLIED INDEX   ERRORS
a:2379     a1   3.7.0     25 kB     16 kB            true        false        3           120          119                  
c:2379     c3   3.7.0     25 kB     16 kB            false       true         3           120          119                  
`
	if table != wantTable {
		t.Errorf("table:\n%s\nwant:\n%s", table, wantTable)
	}

	js := runOK(t, s, "endpoint", "status", "--endpoints=a:2379", "-w", "json")
	wantJSON := `[{"Endpoint":"a:2379","Status":{"header":{"cluster_id":193,"member_id":161,"revision":9,"raft_term":3},"version":"3.7.0","dbSize":24576,"leader":161,"raftIndex":120,"raftTerm":3,"raftAppliedIndex":119,"dbSizeInUse":16384}}]` + "\n"
	if js != wantJSON {
		t.Errorf("json:\n%s\nwant:\n%s", js, wantJSON)
	}
}

func TestEndpointStatusPartialFailure(t *testing.T) {
	s := statusServer()
	s.statusErr = map[string]error{"b:2379": errors.New("connection refused")}
	r := runWith(s, nil, "", "endpoint", "status", "--endpoints=a:2379,b:2379")
	if r.code != exitError {
		t.Fatalf("exit %d", r.code)
	}
	if !strings.HasPrefix(r.stdout, "a:2379, a1,") || strings.Contains(r.stdout, "b:2379") {
		t.Errorf("stdout %q: want the reachable endpoint only", r.stdout)
	}
	if !strings.Contains(r.stderr, "Failed to get the status of endpoint b:2379: connection refused") ||
		!strings.Contains(r.stderr, "Error: failed to get the status of 1 of 2 endpoints") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestEndpointCluster(t *testing.T) {
	s := statusServer()
	s.members = []*pb.Member{
		{ID: 0xa1, Name: "a", ClientURLs: []string{"a:2379"}},
		{ID: 0xb2, Name: "b", ClientURLs: []string{"b:2379", "a:2379"}},
		{ID: 0xc3, Name: "c", ClientURLs: []string{"c:2379"}},
	}
	out := runOK(t, s, "endpoint", "status", "--cluster", "--endpoints=a:2379")
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("--cluster listed %d endpoints, want 3 (deduplicated):\n%s", n, out)
	}
	s.members = []*pb.Member{{ID: 1}}
	runFail(t, s, "--cluster: no member has client URLs", "endpoint", "health", "--cluster")
}

var healthyLine = regexp.MustCompile(`^(\S+) is healthy: successfully committed proposal: took = \S+$`)

func TestEndpointHealth(t *testing.T) {
	s := &fakeServer{}
	out := runOK(t, s, "endpoint", "health", "--endpoints=a:1,b:2")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout %q", out)
	}
	for i, ep := range []string{"a:1", "b:2"} {
		m := healthyLine.FindStringSubmatch(lines[i])
		if m == nil || m[1] != ep {
			t.Errorf("line %d: %q", i, lines[i])
		}
	}
	// Each endpoint is checked through a client of its own.
	var dialed []string
	for _, d := range s.dials {
		dialed = append(dialed, strings.Join(d.Endpoints, ","))
	}
	if strings.Join(dialed, " ") != "a:1 b:2" && strings.Join(dialed, " ") != "b:2 a:1" {
		t.Errorf("dialed %q, want one client per endpoint", dialed)
	}
}

func TestEndpointHealthUnhealthy(t *testing.T) {
	s := &fakeServer{getFn: func(eps []string, key string) error {
		switch eps[0] {
		case "down:1":
			return errors.New("etcdserver: request timed out")
		case "denied:1":
			return rpctypes.ErrPermissionDenied
		}
		return nil
	}}
	r := runWith(s, nil, "", "endpoint", "health", "--endpoints=ok:1,down:1,denied:1")
	if r.code != exitError {
		t.Fatalf("exit %d", r.code)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !healthyLine.MatchString(lines[0]) || !healthyLine.MatchString(lines[2]) {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	if lines[1] != "down:1 is unhealthy: failed to commit proposal: etcdserver: request timed out" {
		t.Errorf("unhealthy line %q", lines[1])
	}
	if !strings.Contains(r.stderr, "Error: unhealthy cluster: 1 of 3 endpoints are unhealthy") {
		t.Errorf("stderr %q", r.stderr)
	}

	// An active alarm makes every endpoint unhealthy.
	s = &fakeServer{alarms: []*pb.AlarmMember{{MemberID: 0xa1, Alarm: pb.AlarmType_NOSPACE}}}
	r = runWith(s, nil, "", "endpoint", "health", "-w", "json")
	if r.code != exitError {
		t.Fatalf("exit %d", r.code)
	}
	var hs []endpointHealth
	if err := json.Unmarshal([]byte(r.stdout), &hs); err != nil {
		t.Fatalf("%v in %q", err, r.stdout)
	}
	if len(hs) != 1 || hs[0].Health || hs[0].Endpoint != "127.0.0.1:2379" || hs[0].Error != "active alarm(s): NOSPACE" || hs[0].Took == "" {
		t.Errorf("json %+v", hs)
	}

	r = runWith(s, nil, "", "endpoint", "health", "-w", "table")
	if !regexp.MustCompile(`^ENDPOINT\s+HEALTH\s+TOOK\s+ERROR\n127\.0\.0\.1:2379\s+false\s+\S+\s+active alarm\(s\): NOSPACE\n$`).MatchString(r.stdout) {
		t.Errorf("table %q", r.stdout)
	}
}

func TestMoveLeader(t *testing.T) {
	s := statusServer()
	s.moveResp = &clientv3.MoveLeaderResponse{Header: testHeader()}
	// The leader a1 is among the endpoints.
	out := runOK(t, s, "move-leader", "b2", "--endpoints=b:2379,a:2379")
	if out != "Leadership transferred from a1 to b2\n" {
		t.Errorf("stdout %q", out)
	}
	if last := s.calls[len(s.calls)-1]; last != "MoveLeader b2 via a:2379" {
		t.Errorf("calls %q", s.calls)
	}

	// The leader is not among the endpoints: found through member list.
	s.calls = nil
	s.members = []*pb.Member{{ID: 0xa1, Name: "a", ClientURLs: []string{"http://a:2379"}}, {ID: 0xb2, Name: "b"}}
	out = runOK(t, s, "move-leader", "c3", "--endpoints=b:2379")
	if out != "Leadership transferred from a1 to c3\n" || s.calls[len(s.calls)-1] != "MoveLeader c3 via http://a:2379" {
		t.Errorf("stdout %q, calls %q", out, s.calls)
	}

	runFail(t, s, "member a1 is already the leader", "move-leader", "a1", "--endpoints=a:2379")
	runFail(t, s, `bad member ID "leader"`, "move-leader", "leader")
	runFail(t, s, "move-leader expects <transferee-member-id>", "move-leader")

	s.status = map[string]*clientv3.StatusResponse{"x:1": statusOf(0xa1, 0, false)}
	runFail(t, s, "no endpoint of x:1 knows a leader", "move-leader", "b2", "--endpoints=x:1")
}

func TestDefrag(t *testing.T) {
	s := &fakeServer{}
	out := runOK(t, s, "defrag", "--endpoints=a:1,b:2")
	if out != "Finished defragmenting member a:1\nFinished defragmenting member b:2\n" {
		t.Errorf("stdout %q", out)
	}
	s.defragErr = map[string]error{"b:2": errors.New("boom")}
	r := runWith(s, nil, "", "defrag", "--endpoints=a:1,b:2")
	if r.code != exitError || r.stdout != "Finished defragmenting member a:1\n" ||
		!strings.Contains(r.stderr, "Failed to defragment member b:2: boom") ||
		!strings.Contains(r.stderr, "Error: failed to defragment 1 of 2 endpoints") {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	s.members = []*pb.Member{{ID: 1, ClientURLs: []string{"m1:1"}}, {ID: 2, ClientURLs: []string{"m2:1"}}}
	s.calls = nil
	runOK(t, s, "defrag", "--cluster")
	if got := strings.Join(s.calls, "; "); got != "MemberList serializable=false; Defragment m1:1; Defragment m2:1" {
		t.Errorf("calls %s", got)
	}
}

func TestAlarm(t *testing.T) {
	s := &fakeServer{alarms: []*pb.AlarmMember{{MemberID: 0x8e9e05c52164694d, Alarm: pb.AlarmType_NOSPACE}, {MemberID: 0xa1, Alarm: pb.AlarmType_CORRUPT}}}
	want := "memberID:8e9e05c52164694d alarm:NOSPACE\nmemberID:a1 alarm:CORRUPT\n"
	if out := runOK(t, s, "alarm", "list"); out != want {
		t.Errorf("list %q", out)
	}
	if out := runOK(t, s, "alarm", "disarm"); out != want {
		t.Errorf("disarm %q", out)
	}
	if last := s.calls[len(s.calls)-1]; last != "AlarmDisarm 0 NONE" {
		t.Errorf("disarm sent %q, want the zero member (disarm all)", last)
	}
	if out := runOK(t, &fakeServer{}, "alarm", "list"); out != "" {
		t.Errorf("no alarms printed %q", out)
	}
	js := runOK(t, s, "alarm", "list", "-w", "json")
	if js != `{"header":{"cluster_id":193,"member_id":161,"revision":5,"raft_term":2},"alarms":[{"memberID":10276657743932975437,"alarm":1},{"memberID":161,"alarm":2}]}`+"\n" {
		t.Errorf("json %s", js)
	}
}

func TestCompaction(t *testing.T) {
	s := &fakeServer{compact: &clientv3.CompactResponse{Header: testHeader()}}
	if out := runOK(t, s, "compaction", "42"); out != "compacted revision 42\n" {
		t.Errorf("stdout %q", out)
	}
	runOK(t, s, "compaction", "43", "--physical")
	if strings.Join(s.calls, "; ") != "Compact 42 options=0; Compact 43 options=1" {
		t.Errorf("calls %q", s.calls)
	}
	runFail(t, s, `bad revision "0": want a positive integer`, "compaction", "0")
	runFail(t, s, `bad revision "x": want a positive integer`, "compaction", "x")
	runFail(t, s, "compaction expects <revision>, got no arguments", "compaction")
}

func TestVersion(t *testing.T) {
	out := runOK(t, &fakeServer{}, "version")
	if !regexp.MustCompile(`^synodctl version: \S+\nAPI version: 3\.\d+\nGo version: go\S+\n$`).MatchString(out) {
		t.Errorf("version %q", out)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(runOK(t, &fakeServer{}, "version", "-w", "json")), &v); err != nil || v.Synodctl == "" || v.APIVersion == "" {
		t.Errorf("json %+v %v", v, err)
	}
}

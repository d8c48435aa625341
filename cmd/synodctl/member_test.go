package main

import (
	"bytes"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func threeMembers() []*pb.Member {
	return []*pb.Member{
		{ID: 0x8e9e05c52164694d, Name: "infra1", PeerURLs: []string{"http://10.0.0.1:2380"}, ClientURLs: []string{"http://10.0.0.1:2379"}},
		{ID: 0x91bc3c398fb3c146, Name: "infra2", PeerURLs: []string{"http://10.0.0.2:2380"}, ClientURLs: []string{"http://10.0.0.2:2379", "http://127.0.0.1:22379"}},
		{ID: 0xfd422379fda50e48, PeerURLs: []string{"http://10.0.0.3:2380"}, IsLearner: true},
	}
}

func TestMemberList(t *testing.T) {
	s := &fakeServer{members: threeMembers()}
	simple := runOK(t, s, "member", "list")
	wantSimple := `8e9e05c52164694d, started, infra1, http://10.0.0.1:2380, http://10.0.0.1:2379, false
91bc3c398fb3c146, started, infra2, http://10.0.0.2:2380, http://10.0.0.2:2379,http://127.0.0.1:22379, false
fd422379fda50e48, unstarted, , http://10.0.0.3:2380, , true
`
	if simple != wantSimple {
		t.Errorf("simple:\n%s\nwant:\n%s", simple, wantSimple)
	}

	table := runOK(t, s, "member", "list", "-w", "table")
	wantTable := `ID                 STATUS      NAME     PEER ADDRS             CLIENT ADDRS                                  IS LEARNER
8e9e05c52164694d   started     infra1   http://10.0.0.1:2380   http://10.0.0.1:2379                          false
91bc3c398fb3c146   started     infra2   http://10.0.0.2:2380   http://10.0.0.2:2379,http://127.0.0.1:22379   false
fd422379fda50e48   unstarted            http://10.0.0.3:2380                                                 true
`
	if table != wantTable {
		t.Errorf("table:\n%s\nwant:\n%s", table, wantTable)
	}

	js := runOK(t, s, "member", "list", "-w", "json")
	if !strings.HasPrefix(js, `{"header":{"cluster_id":193,"member_id":161,"revision":5,"raft_term":2},"members":[{"ID":10276657743932975437,"name":"infra1","peerURLs":["http://10.0.0.1:2380"],"clientURLs":["http://10.0.0.1:2379"]}`) {
		t.Errorf("json: %s", js)
	}

	if s.calls[0] != "MemberList serializable=false" {
		t.Errorf("calls %q", s.calls)
	}
	runOK(t, s, "member", "list", "--consistency=s")
	if last := s.calls[len(s.calls)-1]; last != "MemberList serializable=true" {
		t.Errorf("--consistency=s: %s", last)
	}
	runFail(t, s, `unknown --consistency "x"`, "member", "list", "--consistency=x")
}

func TestMemberAdd(t *testing.T) {
	members := threeMembers()[:2]
	newMember := &pb.Member{ID: 0xced000fda4d05edf, PeerURLs: []string{"http://10.0.0.4:2380"}}
	s := &fakeServer{addResp: &clientv3.MemberAddResponse{
		Header:  &pb.ResponseHeader{ClusterId: 0x8c4281cc65c7b112},
		Member:  newMember,
		Members: append(members, newMember),
	}}
	out := runOK(t, s, "member", "add", "infra4", "--peer-urls=http://10.0.0.4:2380")
	want := `Member ced000fda4d05edf added to cluster 8c4281cc65c7b112

ETCD_NAME="infra4"
ETCD_INITIAL_CLUSTER="infra1=http://10.0.0.1:2380,infra2=http://10.0.0.2:2380,infra4=http://10.0.0.4:2380"
ETCD_INITIAL_ADVERTISE_PEER_URLS="http://10.0.0.4:2380"
ETCD_INITIAL_CLUSTER_STATE="existing"
`
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if s.calls[0] != "MemberAdd http://10.0.0.4:2380" {
		t.Errorf("calls %q", s.calls)
	}

	s.calls = nil
	newMember.IsLearner = true
	out = runOK(t, s, "member", "add", "infra4", "--peer-urls", "http://10.0.0.4:2380", "--learner")
	if !strings.HasPrefix(out, "Learner member ced000fda4d05edf added") || s.calls[0] != "MemberAddAsLearner http://10.0.0.4:2380" {
		t.Errorf("learner: %q, calls %q", out, s.calls)
	}
}

func TestInitialCluster(t *testing.T) {
	ms := threeMembers() // the third has not started: it has no name
	newM := &pb.Member{ID: 7, PeerURLs: []string{"https://n:2380", "https://n2:2380"}}
	got, skipped := initialCluster(append(ms, newM), 7, "new", newM.PeerURLs)
	if want := "infra1=http://10.0.0.1:2380,infra2=http://10.0.0.2:2380,new=https://n:2380,new=https://n2:2380"; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	if len(skipped) != 1 || skipped[0] != 0xfd422379fda50e48 {
		t.Errorf("skipped %x", skipped)
	}
	// A response without the member list still names the new member.
	got, _ = initialCluster(nil, 7, "new", []string{"http://n:2380"})
	if got != "new=http://n:2380" {
		t.Errorf("got %s", got)
	}

	var out, warn bytes.Buffer
	p := &printer{w: &out, format: formatSimple}
	resp := &clientv3.MemberAddResponse{Header: &pb.ResponseHeader{ClusterId: 1}, Member: newM}
	if err := p.memberAdd(resp, "new", append(ms, newM), &warn); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warn.String(), "member fd422379fda50e48 has not started yet") {
		t.Errorf("no warning about the unstarted member: %q", warn.String())
	}
}

func TestMemberChanges(t *testing.T) {
	s := &fakeServer{changeResp: &pb.ResponseHeader{ClusterId: 0x8c4281cc65c7b112}}
	tests := []struct {
		args     []string
		wantOut  string
		wantCall string
	}{
		{[]string{"member", "remove", "8e9e05c52164694d"}, "Member 8e9e05c52164694d removed from cluster 8c4281cc65c7b112\n", "MemberRemove 8e9e05c52164694d"},
		{[]string{"member", "update", "8e9e05c52164694d", "--peer-urls=http://a:2380,http://b:2380"}, "Member 8e9e05c52164694d updated in cluster 8c4281cc65c7b112\n", "MemberUpdate 8e9e05c52164694d http://a:2380,http://b:2380"},
		{[]string{"member", "promote", "0xFD422379FDA50E48"}, "Member fd422379fda50e48 promoted in cluster 8c4281cc65c7b112\n", "MemberPromote fd422379fda50e48"},
	}
	for _, tt := range tests {
		s.calls = nil
		if out := runOK(t, s, tt.args...); out != tt.wantOut {
			t.Errorf("%v: %q, want %q", tt.args, out, tt.wantOut)
		}
		if len(s.calls) != 1 || s.calls[0] != tt.wantCall {
			t.Errorf("%v: calls %q, want %q", tt.args, s.calls, tt.wantCall)
		}
	}
	js := runOK(t, s, "member", "remove", "1", "-w", "json")
	if js != `{"header":{"cluster_id":10106783228653711634}}`+"\n" {
		t.Errorf("json %s", js)
	}
}

func TestMemberArgumentErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"member", "add"}, "add expects <name>, got no arguments"},
		{[]string{"member", "add", "n"}, "member add needs --peer-urls"},
		{[]string{"member", "add", "n", "--peer-urls", "10.0.0.4:2380"}, `bad --peer-urls entry "10.0.0.4:2380": want a URL such as http://10.0.0.4:2380`},
		{[]string{"member", "add", "n", "--peer-urls", "ftp://x:1"}, `bad --peer-urls entry "ftp://x:1"`},
		{[]string{"member", "add", " ", "--peer-urls", "http://x:1"}, "the member name must not be empty"},
		{[]string{"member", "remove"}, "remove expects <member-id> (hex, as member list prints it), got no arguments"},
		{[]string{"member", "remove", "infra1"}, `bad member ID "infra1": want a non-zero hexadecimal ID`},
		{[]string{"member", "remove", "0"}, `bad member ID "0"`},
		{[]string{"member", "update", "1f"}, "member update needs --peer-urls"},
		{[]string{"member", "promote", "1", "2"}, "promote expects <member-id> (hex, as member list prints it), got 2 arguments"},
		{[]string{"member", "frob"}, `unknown member subcommand "frob" (want one of: add, list, promote, remove, update)`},
		{[]string{"member", "remove", "1", "-w", "table"}, `"synodctl member remove" does not support --write-out=table (use simple or json)`},
	}
	for _, tt := range tests {
		s := &fakeServer{}
		r := runFail(t, s, tt.want, tt.args...)
		if !strings.Contains(r.stderr, "Usage: synodctl member") {
			t.Errorf("%v: no usage line in %q", tt.args, r.stderr)
		}
		if len(s.dials) != 0 {
			t.Errorf("%v: dialed despite the bad arguments", tt.args)
		}
	}
}

func TestGroupCommandWithoutSubcommandPrintsHelp(t *testing.T) {
	r := runWith(&fakeServer{}, nil, "", "member")
	if r.code != 0 || !strings.Contains(r.stdout, "Available Commands:") || !strings.Contains(r.stdout, "promote") {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

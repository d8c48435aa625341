package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
)

// leaseStub is an in-memory Lease service: enough to drive the lease
// commands through the real client.
type leaseStub struct {
	pb.UnimplementedLeaseServer
	mu     sync.Mutex
	next   int64
	leases map[int64]*stubLease
}

type stubLease struct {
	ttl  int64
	keys [][]byte
	// renewals left before the lease "expires" (answers TTL 0); -1: never
	renewals int
}

func (s *leaseStub) header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 0xa1, Revision: 5, RaftTerm: 2}
}

func (s *leaseStub) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.leases[s.next] = &stubLease{ttl: r.TTL, renewals: -1}
	return &pb.LeaseGrantResponse{Header: s.header(), ID: s.next, TTL: r.TTL}, nil
}

func (s *leaseStub) LeaseRevoke(_ context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[r.ID]; !ok {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	delete(s.leases, r.ID)
	return &pb.LeaseRevokeResponse{Header: s.header()}, nil
}

func (s *leaseStub) LeaseTimeToLive(_ context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[r.ID]
	if !ok {
		return &pb.LeaseTimeToLiveResponse{Header: s.header(), ID: r.ID, TTL: -1}, nil
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: s.header(), ID: r.ID, TTL: l.ttl - 1, GrantedTTL: l.ttl}
	if r.Keys {
		resp.Keys = l.keys
	}
	return resp, nil
}

func (s *leaseStub) LeaseLeases(context.Context, *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &pb.LeaseLeasesResponse{Header: s.header()}
	for id := int64(1); id <= s.next; id++ {
		if _, ok := s.leases[id]; ok {
			resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: id})
		}
	}
	return resp, nil
}

func (s *leaseStub) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		var ttl int64
		if l, ok := s.leases[req.ID]; ok && l.renewals != 0 {
			ttl = l.ttl
			if l.renewals > 0 {
				l.renewals--
			}
		}
		s.mu.Unlock()
		if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: s.header(), ID: req.ID, TTL: ttl}); err != nil {
			return err
		}
	}
}

func startLeaseStub(t *testing.T) (*leaseStub, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &leaseStub{leases: map[int64]*stubLease{}}
	g := grpc.NewServer()
	pb.RegisterLeaseServer(g, s)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return s, lis.Addr().String()
}

func TestLeaseCommands(t *testing.T) {
	s, addr := startLeaseStub(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"lease", "grant", "60"}, "lease 0000000000000001 granted with TTL(60s)\n"},
		{[]string{"lease", "grant", "1"}, "lease 0000000000000002 granted with TTL(1s)\n"},
		{[]string{"lease", "list"}, "found 2 leases\n0000000000000001\n0000000000000002\n"},
		{[]string{"lease", "timetolive", "1"}, "lease 0000000000000001 granted with TTL(60s), remaining(59s)\n"},
		{[]string{"lease", "timetolive", "0x63"}, "lease 0000000000000063 already expired\n"},
		{[]string{"lease", "keep-alive", "--once", "1"}, "lease 0000000000000001 keepalived with TTL(60)\n"},
		{[]string{"lease", "revoke", "1"}, "lease 0000000000000001 revoked\n"},
		{[]string{"lease", "list"}, "found 1 leases\n0000000000000002\n"},
	}
	for i, st := range steps {
		if i == 3 {
			s.mu.Lock()
			s.leases[1].keys = [][]byte{[]byte("a"), []byte("b")}
			s.mu.Unlock()
			r := runReal(t, addr, "", "lease", "timetolive", "1", "--keys")
			if want := "lease 0000000000000001 granted with TTL(60s), remaining(59s), attached keys([a b])\n"; r.code != 0 || r.stdout != want {
				t.Fatalf("timetolive --keys: exit %d %q (want %q) %q", r.code, r.stdout, want, r.stderr)
			}
		}
		r := runReal(t, addr, "", st.args...)
		if r.code != 0 || r.stdout != st.want {
			t.Fatalf("%v: exit %d, stdout %q (want %q), stderr %q", st.args, r.code, r.stdout, st.want, r.stderr)
		}
	}
	// The lease "expires" after two renewals: keep-alive prints them and
	// says so.
	s.mu.Lock()
	s.leases[2].renewals = 2
	s.mu.Unlock()
	r := runReal(t, addr, "", "lease", "keep-alive", "2")
	want := "lease 0000000000000002 keepalived with TTL(1)\nlease 0000000000000002 keepalived with TTL(1)\nlease 0000000000000002 expired or revoked.\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("keep-alive: exit %d, stdout %q (want %q), stderr %q", r.code, r.stdout, want, r.stderr)
	}
	r = runReal(t, addr, "", "-w", "json", "lease", "grant", "7")
	var js map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &js); r.code != 0 || err != nil || js["TTL"] != float64(7) {
		t.Fatalf("json grant: exit %d %q %v", r.code, r.stdout, err)
	}
}

func TestLeaseCommandErrors(t *testing.T) {
	_, addr := startLeaseStub(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"lease", "grant"}, "expects <ttl>"},
		{[]string{"lease", "grant", "ten"}, `bad TTL "ten"`},
		{[]string{"lease", "revoke", "zz"}, "bad lease ID"},
		{[]string{"lease", "revoke", "5"}, "requested lease not found"},
		{[]string{"lease", "keep-alive", "--once", "5"}, "requested lease not found"},
		{[]string{"lease", "timetolive"}, "expects <leaseID>"},
		{[]string{"lease", "list", "x"}, "takes no arguments"},
		{[]string{"lease", "frob"}, "unknown lease subcommand"},
		{[]string{"lease", "list", "-w", "table"}, "does not support"},
	} {
		r := runReal(t, addr, "", c.args...)
		if r.code != exitError || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// TestLeaseCommandWithoutLeaseAPI: a client without the lease API (the
// fakes) gets a clear error, not a panic.
func TestLeaseCommandWithoutLeaseAPI(t *testing.T) {
	runFail(t, &fakeServer{}, "no lease API", "lease", "list")
}

// TestLiveLeaseCommands runs the lease commands against a real member.
func TestLiveLeaseCommands(t *testing.T) {
	addr := startMember(t)
	r := runReal(t, addr, "", "lease", "grant", "600")
	var id string
	if _, err := fmt.Sscanf(r.stdout, "lease %s granted with TTL(600s)", &id); r.code != 0 || err != nil {
		t.Fatalf("grant: exit %d %q %q (%v)", r.code, r.stdout, r.stderr, err)
	}
	check := func(r result, want string) {
		t.Helper()
		if r.code != 0 || r.stdout != want {
			t.Fatalf("exit %d, stdout %q (want %q), stderr %q", r.code, r.stdout, want, r.stderr)
		}
	}
	check(runReal(t, addr, "", "put", "svc/a", "1", "--lease", id), "OK\n")
	check(runReal(t, addr, "", "put", "svc/b", "2", "--lease", id), "OK\n")
	check(runReal(t, addr, "", "lease", "list"), "found 1 leases\n"+id+"\n")
	r = runReal(t, addr, "", "lease", "timetolive", id, "--keys")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "lease "+id+" granted with TTL(600s), remaining(") || !strings.HasSuffix(r.stdout, "attached keys([svc/a svc/b])\n") {
		t.Fatalf("timetolive: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	check(runReal(t, addr, "", "lease", "keep-alive", "--once", id), "lease "+id+" keepalived with TTL(600)\n")
	check(runReal(t, addr, "", "lease", "revoke", id), "lease "+id+" revoked\n")
	check(runReal(t, addr, "", "get", "svc/", "--prefix", "--count-only"), "0\n")
	check(runReal(t, addr, "", "lease", "timetolive", id), "lease "+id+" already expired\n")
	if r := runReal(t, addr, "", "lease", "revoke", id); r.code == 0 || !strings.Contains(r.stderr, "requested lease not found") {
		t.Fatalf("second revoke: %+v", r)
	}
	// keep-alive runs until the lease is gone.
	r = runReal(t, addr, "", "lease", "grant", "1")
	if _, err := fmt.Sscanf(r.stdout, "lease %s granted", &id); r.code != 0 || err != nil {
		t.Fatalf("grant: %+v", r)
	}
	done := make(chan result, 1)
	go func() { done <- runReal(t, addr, "", "lease", "keep-alive", id) }()
	time.Sleep(1500 * time.Millisecond)
	check(runReal(t, addr, "", "lease", "revoke", id), "lease "+id+" revoked\n")
	select {
	case r := <-done:
		if r.code != 0 || !strings.Contains(r.stdout, "keepalived with TTL(1)") || !strings.HasSuffix(r.stdout, "lease "+id+" expired or revoked.\n") {
			t.Fatalf("keep-alive: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("keep-alive did not end when the lease was revoked")
	}
}

package main

// These tests drive synodctl through the real go.etcd.io/etcd/client/v3
// against a small in-process gRPC server with canned behaviour, to check the
// wiring that the fakes in fake_test.go skip: dialing, request encoding,
// the snapshot stream. The lead's integration tests against a real synod
// server replace the server here, not the commands.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
)

// stubServer is a single-member etcd v3 API server with an in-memory key
// space, enough for the commands' wiring tests.
type stubServer struct {
	pb.UnimplementedKVServer
	pb.UnimplementedMaintenanceServer
	pb.UnimplementedClusterServer

	mu       sync.Mutex
	rev      int64
	kvs      map[string]*mvccpb.KeyValue
	snapshot []byte // the stream to send, digest included
	addr     string
}

func (s *stubServer) header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 0xa1, Revision: s.rev, RaftTerm: 2}
}

// inRange reports whether key k falls in the request's [key, end).
func inRange(k string, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return k == string(key)
	case string(end) == "\x00":
		return k >= string(key)
	}
	return k >= string(key) && k < string(end)
}

func (s *stubServer) rangeLocked(r *pb.RangeRequest) *pb.RangeResponse {
	var keys []string
	for k := range s.kvs {
		if inRange(k, r.Key, r.RangeEnd) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	resp := &pb.RangeResponse{Header: s.header(), Count: int64(len(keys))}
	if r.CountOnly {
		return resp
	}
	for i, k := range keys {
		if r.Limit > 0 && int64(i) >= r.Limit {
			resp.More = true
			break
		}
		kv := s.kvs[k]
		out := &mvccpb.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
		if r.KeysOnly {
			out.Value = nil
		}
		resp.Kvs = append(resp.Kvs, out)
	}
	return resp
}

func (s *stubServer) putLocked(r *pb.PutRequest) *pb.PutResponse {
	s.rev++
	resp := &pb.PutResponse{Header: s.header()}
	old := s.kvs[string(r.Key)]
	if r.PrevKv && old != nil {
		resp.PrevKv = old
	}
	kv := &mvccpb.KeyValue{Key: r.Key, Value: r.Value, CreateRevision: s.rev, ModRevision: s.rev, Version: 1}
	if old != nil {
		kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
	}
	s.kvs[string(r.Key)] = kv
	return resp
}

func (s *stubServer) deleteLocked(r *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	resp := &pb.DeleteRangeResponse{}
	for k, kv := range s.kvs {
		if inRange(k, r.Key, r.RangeEnd) {
			delete(s.kvs, k)
			resp.Deleted++
			if r.PrevKv {
				resp.PrevKvs = append(resp.PrevKvs, kv)
			}
		}
	}
	if resp.Deleted > 0 {
		s.rev++
	}
	resp.Header = s.header()
	return resp
}

func (s *stubServer) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rangeLocked(r), nil
}

func (s *stubServer) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(r), nil
}

func (s *stubServer) DeleteRange(_ context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteLocked(r), nil
}

// Txn supports value compares on single keys, enough for the tests.
func (s *stubServer) Txn(_ context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := true
	for _, c := range r.Compare {
		cur := s.kvs[string(c.Key)]
		var have []byte
		if cur != nil {
			have = cur.Value
		}
		eq := bytes.Equal(have, c.GetValue())
		if (c.Result == pb.Compare_EQUAL) != eq {
			ok = false
		}
	}
	ops := r.Success
	if !ok {
		ops = r.Failure
	}
	resp := &pb.TxnResponse{Succeeded: ok}
	for _, op := range ops {
		switch {
		case op.GetRequestPut() != nil:
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: s.putLocked(op.GetRequestPut())}})
		case op.GetRequestRange() != nil:
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: s.rangeLocked(op.GetRequestRange())}})
		case op.GetRequestDeleteRange() != nil:
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: s.deleteLocked(op.GetRequestDeleteRange())}})
		}
	}
	resp.Header = s.header()
	return resp, nil
}

func (s *stubServer) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &pb.StatusResponse{Header: s.header(), Version: "3.7.0", DbSize: 2048, DbSizeInUse: 1024, Leader: 0xa1, RaftIndex: 10, RaftTerm: 2, RaftAppliedIndex: 10}, nil
}

func (s *stubServer) Alarm(context.Context, *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return &pb.AlarmResponse{Header: s.header()}, nil
}

func (s *stubServer) MemberList(context.Context, *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	return &pb.MemberListResponse{Header: s.header(), Members: []*pb.Member{
		{ID: 0xa1, Name: "solo", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://" + s.addr}},
	}}, nil
}

// Snapshot streams s.snapshot in small chunks, as a server would.
func (s *stubServer) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	data := s.snapshot
	for len(data) > 0 {
		n := min(len(data), 1000)
		if err := stream.Send(&pb.SnapshotResponse{Header: s.header(), RemainingBytes: uint64(len(data) - n), Blob: data[:n], Version: "3.7.0"}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// startStub serves a stubServer on a loopback port for the test's duration.
func startStub(t *testing.T) *stubServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stubServer{kvs: map[string]*mvccpb.KeyValue{}, rev: 1, addr: lis.Addr().String()}
	g := grpc.NewServer()
	pb.RegisterKVServer(g, s)
	pb.RegisterMaintenanceServer(g, s)
	pb.RegisterClusterServer(g, s)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return s
}

// runReal runs synodctl in-process with the real client against addr.
func runReal(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, lookupEnv: func(string) (string, bool) { return "", false }, dial: dialEtcd}
	root := a.rootCommand()
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"--endpoints", addr}, args...))
	code := execute(context.Background(), root, &errb)
	return result{out.String(), errb.String(), code}
}

func TestRealClientKV(t *testing.T) {
	s := startStub(t)
	steps := []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"put", "dir/a", "1"}, "OK\n"},
		{"two\n", []string{"put", "dir/b"}, "OK\n"},
		{"", []string{"put", "other", "x", "--prev-kv"}, "OK\n"},
		{"", []string{"put", "other", "y", "--prev-kv"}, "OK\nother\nx\n"},
		{"", []string{"get", "dir/", "--prefix"}, "dir/a\n1\ndir/b\ntwo\n\n"},
		{"", []string{"get", "dir/", "--prefix", "--keys-only"}, "dir/a\ndir/b\n"},
		{"", []string{"get", "dir/", "--prefix", "--count-only"}, "2\n"},
		{"", []string{"get", "", "--from-key", "--limit", "1", "--print-value-only"}, "1\n"},
		{"value(\"other\") = \"y\"\n\nput dir/c 3\nget dir/a\n\nput dir/c never\n", []string{"txn"}, "SUCCESS\n\nOK\n\ndir/a\n1\n"},
		{"", []string{"get", "dir/c"}, "dir/c\n3\n"},
		{"", []string{"del", "dir/", "--prefix"}, "3\n"},
		{"", []string{"get", "dir/", "--prefix", "--count-only"}, "0\n"},
	}
	for _, st := range steps {
		r := runReal(t, s.addr, st.stdin, st.args...)
		if r.code != 0 || r.stdout != st.want {
			t.Fatalf("%v: exit %d, stdout %q (want %q), stderr %q", st.args, r.code, r.stdout, st.want, r.stderr)
		}
	}
}

func TestRealClientClusterCommands(t *testing.T) {
	s := startStub(t)
	r := runReal(t, s.addr, "", "endpoint", "status")
	if want := s.addr + ", a1, 3.7.0, 2.0 kB, 1.0 kB, true, false, 2, 10, 10, \n"; r.code != 0 || r.stdout != want {
		t.Errorf("status: exit %d %q (want %q) %q", r.code, r.stdout, want, r.stderr)
	}
	r = runReal(t, s.addr, "", "endpoint", "status", "--cluster", "-w", "table")
	if r.code != 0 || !strings.Contains(r.stdout, "http://"+s.addr+"   a1 ") {
		t.Errorf("status --cluster: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runReal(t, s.addr, "", "defrag", "--cluster")
	if r.code == 0 || !strings.Contains(r.stderr, "Failed to defragment member http://"+s.addr+": rpc error: code = Unimplemented") {
		t.Errorf("defrag --cluster: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runReal(t, s.addr, "", "endpoint", "health", "--cluster")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "http://"+s.addr+" is healthy: successfully committed proposal: took = ") {
		t.Errorf("health: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runReal(t, s.addr, "", "member", "list")
	if want := "a1, started, solo, http://127.0.0.1:2380, http://" + s.addr + ", false\n"; r.code != 0 || r.stdout != want {
		t.Errorf("member list: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestRealClientSnapshot(t *testing.T) {
	s := startStub(t)
	body := testBody(10_500) // 11 messages of up to 1000 bytes, then the digest
	sum := sha256.Sum256(body)
	s.snapshot = append(append([]byte{}, body...), sum[:]...)
	dir := t.TempDir()
	path := filepath.Join(dir, "snap.db")
	r := runReal(t, s.addr, "", "snapshot", "save", path)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Snapshot saved at "+path) {
		t.Fatalf("exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, s.snapshot) {
		t.Errorf("saved %d bytes, not the stream", len(got))
	}

	s.snapshot[len(s.snapshot)-40] ^= 0x10 // a flipped bit in the body
	bad := filepath.Join(dir, "bad.db")
	r = runReal(t, s.addr, "", "snapshot", "save", bad)
	if r.code != exitError || !strings.Contains(r.stderr, "Error: snapshot integrity check failed") {
		t.Errorf("corrupt: exit %d %q", r.code, r.stderr)
	}
	assertOnlyFiles(t, dir, "snap.db")
}

func TestRealClientUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	r := runReal(t, addr, "", "get", "k", "--command-timeout", "300ms")
	if r.code != exitError || !strings.Contains(r.stderr, "no answer from "+addr+" within --command-timeout=300ms") {
		t.Errorf("exit %d %q", r.code, r.stderr)
	}
	r = runReal(t, addr, "", "snapshot", "save", filepath.Join(t.TempDir(), "x.db"), "--command-timeout", "300ms")
	if r.code != exitError || !strings.Contains(r.stderr, "requesting a snapshot: no answer from "+addr) {
		t.Errorf("snapshot: exit %d %q", r.code, r.stderr)
	}
}

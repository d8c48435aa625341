package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeServer stands in for a cluster: commands dial it through app.dial and
// it answers with canned responses, recording what it was asked.
type fakeServer struct {
	mu    sync.Mutex
	dials []clientv3.Config
	calls []string // e.g. "MemberRemove 1f", "Status 127.0.0.1:2379"
	ops   []clientv3.Op

	dialErr error

	// KV
	doFn    func(op clientv3.Op) (clientv3.OpResponse, error)
	txnResp *clientv3.TxnResponse
	txnErr  error
	txns    []*fakeTxn
	compact *clientv3.CompactResponse
	getFn   func(endpoints []string, key string) error // for endpoint health

	// Cluster
	members    []*pb.Member
	memberErr  error
	addResp    *clientv3.MemberAddResponse
	changeResp *pb.ResponseHeader

	// Maintenance
	status      map[string]*clientv3.StatusResponse
	statusErr   map[string]error
	alarms      []*pb.AlarmMember
	defragErr   map[string]error
	moveResp    *clientv3.MoveLeaderResponse
	snapshot    []byte
	snapshotErr error
}

func (s *fakeServer) dial(cfg clientv3.Config) (etcdClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dials = append(s.dials, cfg)
	if s.dialErr != nil {
		return nil, s.dialErr
	}
	return &fakeClient{s: s, endpoints: cfg.Endpoints}, nil
}

func (s *fakeServer) record(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf(format, args...))
}

// fakeClient is one connection to a fakeServer. Methods it does not
// override panic (nil embedded interfaces), which flags unexpected calls.
type fakeClient struct {
	clientv3.KV
	clientv3.Cluster
	clientv3.Maintenance
	s         *fakeServer
	endpoints []string
}

func (c *fakeClient) Close() error { return nil }

func (c *fakeClient) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	c.s.mu.Lock()
	c.s.ops = append(c.s.ops, op)
	c.s.mu.Unlock()
	if c.s.doFn == nil {
		return clientv3.OpResponse{}, fmt.Errorf("fake: no Do handler")
	}
	return c.s.doFn(op)
}

func (c *fakeClient) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.s.record("Get %s %s", strings.Join(c.endpoints, ","), key)
	if c.s.getFn != nil {
		if err := c.s.getFn(c.endpoints, key); err != nil {
			return nil, err
		}
	}
	return &clientv3.GetResponse{Header: testHeader()}, nil
}

func (c *fakeClient) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	// CompactOp has no accessors; WithCompactPhysical is the only option.
	c.s.record("Compact %d options=%d", rev, len(opts))
	return c.s.compact, nil
}

// fakeTxn records the transaction built by a command.
type fakeTxn struct {
	s     *fakeServer
	cmps  []clientv3.Cmp
	thens []clientv3.Op
	elses []clientv3.Op
}

func (c *fakeClient) Txn(ctx context.Context) clientv3.Txn {
	t := &fakeTxn{s: c.s}
	c.s.mu.Lock()
	c.s.txns = append(c.s.txns, t)
	c.s.mu.Unlock()
	return t
}

func (t *fakeTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.cmps = append(t.cmps, cs...); return t }
func (t *fakeTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.thens = append(t.thens, ops...); return t }
func (t *fakeTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.elses = append(t.elses, ops...); return t }
func (t *fakeTxn) Commit() (*clientv3.TxnResponse, error) {
	return t.s.txnResp, t.s.txnErr
}

func (c *fakeClient) MemberList(ctx context.Context, opts ...clientv3.OpOption) (*clientv3.MemberListResponse, error) {
	op := clientv3.OpGet("", opts...)
	c.s.record("MemberList serializable=%v", op.IsSerializable())
	if c.s.memberErr != nil {
		return nil, c.s.memberErr
	}
	return &clientv3.MemberListResponse{Header: testHeader(), Members: c.s.members}, nil
}

func (c *fakeClient) MemberAdd(ctx context.Context, peerAddrs []string) (*clientv3.MemberAddResponse, error) {
	c.s.record("MemberAdd %s", strings.Join(peerAddrs, ","))
	return c.s.addResp, c.s.memberErr
}

func (c *fakeClient) MemberAddAsLearner(ctx context.Context, peerAddrs []string) (*clientv3.MemberAddResponse, error) {
	c.s.record("MemberAddAsLearner %s", strings.Join(peerAddrs, ","))
	return c.s.addResp, c.s.memberErr
}

func (c *fakeClient) MemberRemove(ctx context.Context, id uint64) (*clientv3.MemberRemoveResponse, error) {
	c.s.record("MemberRemove %x", id)
	return &clientv3.MemberRemoveResponse{Header: c.s.changeResp}, c.s.memberErr
}

func (c *fakeClient) MemberUpdate(ctx context.Context, id uint64, peerAddrs []string) (*clientv3.MemberUpdateResponse, error) {
	c.s.record("MemberUpdate %x %s", id, strings.Join(peerAddrs, ","))
	return &clientv3.MemberUpdateResponse{Header: c.s.changeResp}, c.s.memberErr
}

func (c *fakeClient) MemberPromote(ctx context.Context, id uint64) (*clientv3.MemberPromoteResponse, error) {
	c.s.record("MemberPromote %x", id)
	return &clientv3.MemberPromoteResponse{Header: c.s.changeResp}, c.s.memberErr
}

func (c *fakeClient) Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error) {
	c.s.record("Status %s", endpoint)
	if err := c.s.statusErr[endpoint]; err != nil {
		return nil, err
	}
	st, ok := c.s.status[endpoint]
	if !ok {
		return nil, fmt.Errorf("fake: no status for %s", endpoint)
	}
	return st, nil
}

func (c *fakeClient) AlarmList(ctx context.Context) (*clientv3.AlarmResponse, error) {
	c.s.record("AlarmList")
	return &clientv3.AlarmResponse{Header: testHeader(), Alarms: c.s.alarms}, nil
}

func (c *fakeClient) AlarmDisarm(ctx context.Context, m *clientv3.AlarmMember) (*clientv3.AlarmResponse, error) {
	c.s.record("AlarmDisarm %x %v", m.MemberID, m.Alarm)
	return &clientv3.AlarmResponse{Header: testHeader(), Alarms: c.s.alarms}, nil
}

func (c *fakeClient) Defragment(ctx context.Context, endpoint string) (*clientv3.DefragmentResponse, error) {
	c.s.record("Defragment %s", endpoint)
	if err := c.s.defragErr[endpoint]; err != nil {
		return nil, err
	}
	return &clientv3.DefragmentResponse{Header: testHeader()}, nil
}

func (c *fakeClient) MoveLeader(ctx context.Context, id uint64) (*clientv3.MoveLeaderResponse, error) {
	c.s.record("MoveLeader %x via %s", id, strings.Join(c.endpoints, ","))
	return c.s.moveResp, nil
}

func (c *fakeClient) SnapshotWithVersion(ctx context.Context) (*clientv3.SnapshotResponse, error) {
	c.s.record("Snapshot")
	if c.s.snapshotErr != nil {
		return nil, c.s.snapshotErr
	}
	return &clientv3.SnapshotResponse{
		Header:   &pb.ResponseHeader{Revision: 42},
		Snapshot: io.NopCloser(bytes.NewReader(c.s.snapshot)),
		Version:  "3.7.0",
	}, nil
}

// testHeader is the response header of the fake cluster.
func testHeader() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 0xc1, MemberId: 0xa1, Revision: 5, RaftTerm: 2}
}

// kv returns a key-value pair with fixed revisions.
func kv(k, v string) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: 2, ModRevision: 3, Version: 1}
}

// result is what one in-process run of synodctl produced.
type result struct {
	stdout, stderr string
	code           int
}

// runWith runs synodctl in-process against s with the given environment
// and standard input.
func runWith(s *fakeServer, env map[string]string, stdin string, args ...string) result {
	var out, errb bytes.Buffer
	a := &app{
		stdout:    &out,
		stderr:    &errb,
		lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		dial:      s.dial,
	}
	root := a.rootCommand()
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	code := execute(context.Background(), root, &errb)
	return result{out.String(), errb.String(), code}
}

// runOK runs synodctl and fails the test unless it succeeds.
func runOK(t *testing.T, s *fakeServer, args ...string) string {
	t.Helper()
	r := runWith(s, nil, "", args...)
	if r.code != 0 {
		t.Fatalf("synodctl %s: exit %d, stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// runFail runs synodctl and fails the test unless it exits 1 with an error
// containing want.
func runFail(t *testing.T, s *fakeServer, want string, args ...string) result {
	t.Helper()
	r := runWith(s, nil, "", args...)
	if r.code != exitError {
		t.Fatalf("synodctl %s: exit %d, want %d; stdout:\n%s", strings.Join(args, " "), r.code, exitError, r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "Error: ") || !strings.Contains(r.stderr, want) {
		t.Fatalf("synodctl %s: stderr %q, want an \"Error: \" line containing %q", strings.Join(args, " "), r.stderr, want)
	}
	return r
}

// kvT shortens []*mvccpb.KeyValue literals.
type kvT = mvccpb.KeyValue

package v3rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/synod-db/synod/lease"
	"github.com/synod-db/synod/server"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkStatus fails unless err is the gRPC error want, as a client
// receives it (code and message).
func checkStatus(t *testing.T, what string, err, want error) {
	t.Helper()
	got, wantSt := status.Convert(err), status.Convert(want)
	if got.Code() != wantSt.Code() || got.Message() != wantSt.Message() {
		t.Errorf("%s: %v (%v), want %v (%v)", what, got.Message(), got.Code(), wantSt.Message(), wantSt.Code())
	}
}

// TestKVRefusesMalformedRequestsBeforeTheMember checks that what etcd
// rejects never costs a raft round: the member sees no call.
func TestKVRefusesMalformedRequestsBeforeTheMember(t *testing.T) {
	f := newFakeMember()
	kv := pb.NewKVClient(serveFake(t, f))
	ctx := ctxT(t)
	dupPut := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"range empty key", func() error { _, err := kv.Range(ctx, &pb.RangeRequest{}); return err }, rpctypes.ErrGRPCEmptyKey},
		{"range bad sort", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortOrder: 7})
			return err
		}, rpctypes.ErrGRPCInvalidSortOption},
		{"put empty key", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Value: []byte("v")}); return err }, rpctypes.ErrGRPCEmptyKey},
		{"put value provided", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), IgnoreValue: true})
			return err
		}, rpctypes.ErrGRPCValueProvided},
		{"put too large", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 1<<20)})
			return err
		}, rpctypes.ErrGRPCRequestTooLarge},
		{"delete empty key", func() error { _, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{}); return err }, rpctypes.ErrGRPCEmptyKey},
		{"txn duplicate key", func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{dupPut, dupPut}})
			return err
		}, rpctypes.ErrGRPCDuplicateKey},
		{"txn too many ops", func() error {
			ops := make([]*pb.RequestOp, 129)
			for i := range ops {
				ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}
			}
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: ops})
			return err
		}, rpctypes.ErrGRPCTooManyOps},
		{"lease TTL too large", func() error {
			_, err := pb.NewLeaseClient(serveFake(t, f)).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: lease.MaxTTL + 1})
			return err
		}, rpctypes.ErrGRPCLeaseTTLTooLarge},
	}
	for _, tt := range tests {
		checkStatus(t, tt.name, tt.call(), tt.want)
	}
	if n := f.callCount(); n != 0 {
		t.Fatalf("%d malformed requests reached the member: %v", n, f.calls)
	}
}

// TestMemberErrorsReachClientsAsEtcds checks the mapping end to end: a
// domain error of the member is what an etcd client expects.
func TestMemberErrorsReachClientsAsEtcds(t *testing.T) {
	f := newFakeMember()
	conn := serveFake(t, f)
	ctx := ctxT(t)
	kv, cl, mt := pb.NewKVClient(conn), pb.NewClusterClient(conn), pb.NewMaintenanceClient(conn)
	tests := []struct {
		err  error
		call func() error
		want error
	}{
		{server.ErrNoSpace, func() error { _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k")}); return err }, rpctypes.ErrGRPCNoSpace},
		{server.ErrTimeout, func() error { _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")}); return err }, rpctypes.ErrGRPCTimeout},
		{server.ErrMemberNotFound, func() error { _, err := cl.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 9}); return err }, rpctypes.ErrGRPCMemberNotFound},
		{server.ErrPeerURLExists, func() error {
			_, err := cl.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://a:1"}})
			return err
		}, rpctypes.ErrGRPCPeerURLExist},
		{server.ErrMemberNotFound, func() error { _, err := mt.MoveLeader(ctx, &pb.MoveLeaderRequest{TargetID: 9}); return err }, rpctypes.ErrGRPCBadLeaderTransferee},
		{server.ErrStopped, func() error { _, err := mt.Defragment(ctx, &pb.DefragmentRequest{}); return err }, rpctypes.ErrGRPCStopped},
	}
	for _, tt := range tests {
		f.set(func(f *fakeMember) { f.err = tt.err })
		checkStatus(t, tt.err.Error(), tt.call(), tt.want)
	}
}

// TestLearnerServesOnlyWhatItMay checks the learner interceptor: a
// learner refuses writes and linearizable reads as etcd's learners do.
func TestLearnerServesOnlyWhatItMay(t *testing.T) {
	f := newFakeMember()
	f.learner = true
	conn := serveFake(t, f)
	ctx := ctxT(t)
	kv := pb.NewKVClient(conn)
	_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k")})
	checkStatus(t, "put on a learner", err, rpctypes.ErrGRPCNotSupportedForLearner)
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
	checkStatus(t, "linearizable range on a learner", err, rpctypes.ErrGRPCNotSupportedForLearner)
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Serializable: true}); err != nil {
		t.Errorf("serializable range on a learner: %v", err)
	}
	if _, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{}); err != nil {
		t.Errorf("status on a learner: %v", err)
	}
	_, err = pb.NewLeaseClient(conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 5})
	checkStatus(t, "lease grant on a learner", err, rpctypes.ErrGRPCNotSupportedForLearner)
}

// TestRequireLeader checks clientv3's WithRequireLeader: without a leader
// the call fails at once instead of waiting for one.
func TestRequireLeader(t *testing.T) {
	f := newFakeMember()
	f.leader = 0
	conn := serveFake(t, f)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)
	_, err := pb.NewKVClient(conn).Range(ctx, &pb.RangeRequest{Key: []byte("k")})
	checkStatus(t, "range", err, rpctypes.ErrGRPCNoLeader)
	w, err := pb.NewWatchClient(conn).Watch(ctx)
	if err == nil {
		_, err = w.Recv()
	}
	checkStatus(t, "watch", err, rpctypes.ErrGRPCNoLeader)
	if n := f.callCount(); n != 0 {
		t.Errorf("calls reached the member: %v", f.calls)
	}
	// Without the metadata the call goes through.
	if _, err := pb.NewKVClient(conn).Range(ctxT(t), &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Errorf("range without require-leader: %v", err)
	}
}

// TestKeepAliveOfUnknownLease checks that a keep-alive of a lease the
// member does not know is answered with TTL 0 (clientv3 then ends its
// keep-alive), and a known one with its TTL.
func TestKeepAliveOfUnknownLease(t *testing.T) {
	f := newFakeMember()
	f.leaseTTLs[5] = 30
	ka, err := pb.NewLeaseClient(serveFake(t, f)).LeaseKeepAlive(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, ttl int64 }{{5, 30}, {6, 0}} {
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: c.id}); err != nil {
			t.Fatal(err)
		}
		resp, err := ka.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.ID != c.id || resp.TTL != c.ttl {
			t.Errorf("keep-alive of %d: %+v, want TTL %d", c.id, resp, c.ttl)
		}
	}
}

// TestStatusAndHashes checks the Maintenance answers built from the
// member's figures.
func TestStatusAndHashes(t *testing.T) {
	f := newFakeMember()
	mt := pb.NewMaintenanceClient(serveFake(t, f))
	ctx := ctxT(t)
	st, err := mt.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != server.Version || st.DbSize != 4096 || st.DbSizeInUse != 1024 || st.RaftIndex != 10 || st.RaftAppliedIndex != 9 || st.Header.MemberId != 1 {
		t.Errorf("status %+v", st)
	}
	h, err := mt.HashKV(ctx, &pb.HashKVRequest{})
	if err != nil || h.Hash != 43 || h.CompactRevision != 2 || h.HashRevision != 5 {
		t.Errorf("hashkv %+v %v", h, err)
	}
	// Before any compaction, etcd's compacted revision is -1.
	if h, err := mt.HashKV(ctx, &pb.HashKVRequest{Revision: 1}); err != nil || h.CompactRevision != -1 {
		t.Errorf("hashkv before any compaction %+v %v", h, err)
	}
	snap, err := mt.Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var blob []byte
	for {
		resp, err := snap.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		blob = append(blob, resp.Blob...)
	}
	if string(blob) != "snapshot bytes" {
		t.Errorf("snapshot %q", blob)
	}
}

// TestHandledMetricCountsEtcdCodes checks that grpc_server_handled_total
// counts the code the client received, not the domain error's.
func TestHandledMetricCountsEtcdCodes(t *testing.T) {
	f := newFakeMember()
	f.err = server.ErrNoSpace
	_, err := pb.NewKVClient(serveFake(t, f)).Put(ctxT(t), &pb.PutRequest{Key: []byte("k")})
	checkStatus(t, "put", err, rpctypes.ErrGRPCNoSpace)
	code := codes.ResourceExhausted.String()
	var m dto.Metric
	if err := f.metrics.handled.WithLabelValues("/etcdserverpb.KV/Put", code).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("handled{code=%s} = %v, want 1", code, n)
	}
}

// TestHealth checks /health as etcd answers it.
func TestHealth(t *testing.T) {
	f := newFakeMember()
	h := NewHTTPHandler(f, NewMetrics(f), false, nil)
	get := func(path string) (int, map[string]string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]string
		if err := json.NewDecoder(rec.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return rec.Code, body
	}
	if code, body := get("/health"); code != http.StatusOK || body["health"] != "true" {
		t.Errorf("healthy member: %d %v", code, body)
	}
	f.set(func(f *fakeMember) { f.readErr = server.ErrTimeout })
	if code, body := get("/health"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body["reason"], "RANGE ERROR:") {
		t.Errorf("member whose linearizable reads fail: %d %v", code, body)
	}
	if code, body := get("/health?serializable=true"); code != http.StatusOK {
		t.Errorf("serializable health reads locally: %d %v", code, body)
	}
	f.set(func(f *fakeMember) {
		f.readErr = nil
		f.alarms = []*pb.AlarmMember{{MemberID: 1, Alarm: pb.AlarmType_NOSPACE}}
	})
	if code, body := get("/health"); code != http.StatusServiceUnavailable || body["reason"] != "ALARM NOSPACE" {
		t.Errorf("member with the NOSPACE alarm: %d %v", code, body)
	}
	if code, body := get("/health?exclude=NOSPACE"); code != http.StatusOK {
		t.Errorf("NOSPACE excluded: %d %v", code, body)
	}
	f.set(func(f *fakeMember) { f.alarms = nil })
	f.set(func(f *fakeMember) { f.leader = 0 })
	if code, body := get("/health"); code != http.StatusServiceUnavailable || body["reason"] != "RAFT NO LEADER" {
		t.Errorf("member without a leader: %d %v", code, body)
	}
	if code, body := get("/version"); code != http.StatusOK || body["etcdserver"] != server.Version {
		t.Errorf("version: %d %v", code, body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/vars", nil))
	var vars map[string]any
	if err := json.NewDecoder(rec.Body).Decode(&vars); err != nil || vars["memstats"] == nil {
		t.Errorf("/debug/vars: %d, %v", rec.Code, err)
	}
}

// TestLivezReadyz checks /livez and /readyz as etcd 3.6+ serves them.
func TestLivezReadyz(t *testing.T) {
	f := newFakeMember()
	h := NewHTTPHandler(f, NewMetrics(f), false, nil)
	get := func(method, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code, rec.Body.String()
	}
	for _, p := range []string{"/livez", "/readyz", "/readyz/linearizable_read", "/livez/serializable_read"} {
		if code, body := get(http.MethodGet, p); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s on a healthy member: %d %q", p, code, body)
		}
	}
	if code, body := get(http.MethodGet, "/readyz?verbose"); code != http.StatusOK || !strings.Contains(body, "[+]non_learner ok\n") || !strings.HasSuffix(body, "ok\n") {
		t.Errorf("/readyz?verbose: %d %q", code, body)
	}
	if code, _ := get(http.MethodPost, "/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", code)
	}
	f.set(func(f *fakeMember) { f.readErr = server.ErrTimeout; f.learner = true })
	code, body := get(http.MethodGet, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]linearizable_read failed") || !strings.Contains(body, "[-]non_learner failed: not supported for learner") || !strings.Contains(body, "[+]serializable_read ok") {
		t.Errorf("/readyz on a learner without reads: %d %q", code, body)
	}
	if code, _ := get(http.MethodGet, "/readyz?exclude=linearizable_read&exclude=non_learner"); code != http.StatusOK {
		t.Errorf("/readyz with the failing checks excluded: %d", code)
	}
	if code, _ := get(http.MethodGet, "/livez"); code != http.StatusOK {
		t.Errorf("/livez needs only local reads: %d", code)
	}
	f.set(func(f *fakeMember) {
		f.readErr, f.learner = nil, false
		f.alarms = []*pb.AlarmMember{{MemberID: 1, Alarm: pb.AlarmType_CORRUPT}}
	})
	if code, body := get(http.MethodGet, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]data_corruption failed: alarm activated: CORRUPT") {
		t.Errorf("/readyz with the CORRUPT alarm: %d %q", code, body)
	}
}

// TestGRPCHealthService: the standard gRPC health service answers
// SERVING for the whole server (""), as etcd's does, and NOT_FOUND for a
// service it does not know.
func TestGRPCHealthService(t *testing.T) {
	conn := serveFake(t, newFakeMember())
	hc := healthpb.NewHealthClient(conn)
	resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v, %v", resp, err)
	}
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health check of an unknown service: %v, want NotFound", err)
	}
}

// TestDowngradeRefused: synod cannot be downgraded; every request gets
// etcd's error for what etcd would refuse too, and the previous minor
// release (which etcd would accept) a clear refusal.
func TestDowngradeRefused(t *testing.T) {
	mc := pb.NewMaintenanceClient(serveFake(t, newFakeMember()))
	for _, tc := range []struct {
		action  pb.DowngradeRequest_DowngradeAction
		version string
		code    codes.Code
		msg     string
	}{
		{pb.DowngradeRequest_VALIDATE, "3.0", codes.InvalidArgument, "etcdserver: invalid downgrade target version"},
		{pb.DowngradeRequest_ENABLE, "3.7", codes.InvalidArgument, "etcdserver: invalid downgrade target version"},
		{pb.DowngradeRequest_ENABLE, "three", codes.InvalidArgument, "etcdserver: wrong downgrade target version format"},
		{pb.DowngradeRequest_VALIDATE, "3.06", codes.InvalidArgument, "etcdserver: wrong downgrade target version format"},
		{pb.DowngradeRequest_ENABLE, "3.6.2", codes.FailedPrecondition, status.Convert(errCannotDowngrade).Message()},
		{pb.DowngradeRequest_CANCEL, "", codes.FailedPrecondition, "etcdserver: no inflight downgrade job"},
		{9, "3.6", codes.Unknown, "etcdserver: unknown method"},
	} {
		_, err := mc.Downgrade(context.Background(), &pb.DowngradeRequest{Action: tc.action, Version: tc.version})
		if s, _ := status.FromError(err); s.Code() != tc.code || s.Message() != tc.msg {
			t.Errorf("%v %q: %v; want %v %q", tc.action, tc.version, err, tc.code, tc.msg)
		}
	}
}

// TestSlowRequestWarning: a unary request slower than the limit is
// logged as etcd logs it ("request stats"), with sizes but not contents.
func TestSlowRequestWarning(t *testing.T) {
	for _, limit := range []time.Duration{time.Nanosecond, time.Hour} {
		var logs bytes.Buffer
		intercept := slowUnary(slog.New(slog.NewTextHandler(&logs, nil)), limit)
		req := &pb.PutRequest{Key: []byte("secret-key"), Value: []byte("secret-value")}
		_, err := intercept(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.KV/Put"}, func(ctx context.Context, req any) (any, error) {
			return &pb.PutResponse{}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		out := logs.String()
		if warned := strings.Contains(out, "request stats"); warned != (limit == time.Nanosecond) {
			t.Errorf("limit %v: warned %v; log:\n%s", limit, warned, out)
		}
		if strings.Contains(out, "secret") {
			t.Errorf("the log holds the request's contents:\n%s", out)
		}
	}
}

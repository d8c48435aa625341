package integration

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/synod-db/synod/tests/framework"
)

// gwClient speaks the JSON gateway as curl users do.
type gwClient struct {
	t    *testing.T
	base string
}

// post sends body to path and decodes the answer into a generic map; it
// returns the HTTP status too.
func (c gwClient) post(path, body string) (int, map[string]any) {
	c.t.Helper()
	resp, err := http.Post(c.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		c.t.Fatalf("POST %s: undecodable answer: %v", path, err)
	}
	return resp.StatusCode, out
}

// ok posts and fails the test unless the answer is 200.
func (c gwClient) ok(path, body string) map[string]any {
	c.t.Helper()
	code, out := c.post(path, body)
	if code != http.StatusOK {
		c.t.Fatalf("POST %s %s: %d %v", path, body, code, out)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// field walks a decoded JSON answer: field(m, "header", "revision").
func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[p]
	}
	return v
}

// TestJSONGateway drives the v3 API through the JSON gateway on a
// follower, as an HTTP-only client (Patroni, curl) does: etcd's paths
// and field names (snake_case, int64 as strings, bytes in base64), the
// old /v3beta/ prefix, a streamed watch, and etcd's errors with HTTP
// codes for bad input.
func TestJSONGateway(t *testing.T) {
	t.Parallel()
	c := framework.NewCluster(t, 3, nil)
	follower := (c.LeaderIndex() + 1) % len(c.Members)
	gw := gwClient{t: t, base: "http://" + c.Members[follower].ClientAddr}

	put := gw.ok("/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("foo"), b64("bar")))
	rev := field(put, "header", "revision").(string)
	if field(put, "header", "cluster_id") == nil || field(put, "header", "member_id") == nil {
		t.Fatalf("put header lacks cluster_id/member_id: %v", put)
	}
	got := gw.ok("/v3/kv/range", fmt.Sprintf(`{"key":%q}`, b64("foo")))
	kv := field(got, "kvs").([]any)[0].(map[string]any)
	if kv["value"] != b64("bar") || kv["mod_revision"] != rev || got["count"] != "1" {
		t.Fatalf("range: %v", got)
	}
	// Old clients' prefix; a prefix range with the range_end in base64.
	got = gw.ok("/v3beta/kv/range", fmt.Sprintf(`{"key":%q,"range_end":%q,"keys_only":true}`, b64("f"), b64("g")))
	if got["count"] != "1" || field(got, "kvs").([]any)[0].(map[string]any)["value"] != nil {
		t.Fatalf("v3beta keys-only range: %v", got)
	}
	txn := gw.ok("/v3/kv/txn", fmt.Sprintf(`{"compare":[{"key":%q,"result":"EQUAL","target":"VALUE","value":%q}],`+
		`"success":[{"request_put":{"key":%q,"value":%q}}]}`, b64("foo"), b64("bar"), b64("foo"), b64("baz")))
	if txn["succeeded"] != true {
		t.Fatalf("txn: %v", txn)
	}

	// A watch streams one JSON object per response.
	resp, err := http.Post(gw.base+"/v3/watch", "application/json",
		strings.NewReader(fmt.Sprintf(`{"create_request":{"key":%q,"prev_kv":true}}`, b64("foo"))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	next := func() map[string]any {
		t.Helper()
		line, err := lines.ReadBytes('\n')
		if err != nil && len(line) == 0 {
			t.Fatalf("watch stream: %v", err)
		}
		var out map[string]any
		if err := json.Unmarshal(line, &out); err != nil {
			t.Fatalf("watch stream line %q: %v", line, err)
		}
		return out
	}
	if created := next(); field(created, "result", "created") != true {
		t.Fatalf("watch: first message %v", created)
	}
	gw.ok("/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("foo"), b64("qux")))
	ev := field(next(), "result", "events").([]any)[0].(map[string]any)
	if field(ev, "kv", "value") != b64("qux") || field(ev, "prev_kv", "value") != b64("baz") {
		t.Fatalf("watch event: %v", ev)
	}

	lease := gw.ok("/v3/lease/grant", `{"TTL":60}`)
	id := lease["ID"].(string)
	gw.ok("/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"lease":%s}`, b64("leased"), b64("v"), id))
	if ka := gw.ok("/v3/lease/keepalive", fmt.Sprintf(`{"ID":%s}`, id)); field(ka, "result", "TTL") != "60" {
		t.Fatalf("keepalive: %v", ka)
	}
	ttl := gw.ok("/v3/lease/timetolive", fmt.Sprintf(`{"ID":%s,"keys":true}`, id))
	if keys := ttl["keys"].([]any); len(keys) != 1 || keys[0] != b64("leased") {
		t.Fatalf("timetolive: %v", ttl)
	}
	if leases := gw.ok("/v3/lease/leases", `{}`); len(leases["leases"].([]any)) != 1 {
		t.Fatalf("leases: %v", leases)
	}
	gw.ok("/v3/lease/revoke", fmt.Sprintf(`{"ID":%s}`, id))
	if got := gw.ok("/v3/kv/range", fmt.Sprintf(`{"key":%q}`, b64("leased"))); got["count"] != nil {
		t.Fatalf("key of a revoked lease: %v", got)
	}

	// Lock and election, on a lease of their own.
	held := gw.ok("/v3/lease/grant", `{"TTL":60}`)["ID"].(string)
	lock := gw.ok("/v3/lock/lock", fmt.Sprintf(`{"name":%q,"lease":%s}`, b64("mu"), held))
	if key, err := base64.StdEncoding.DecodeString(fmt.Sprint(lock["key"])); err != nil || !strings.HasPrefix(string(key), "mu/") {
		t.Fatalf("lock: %v", lock)
	}
	gw.ok("/v3/lock/unlock", fmt.Sprintf(`{"key":%q}`, lock["key"]))
	camp := gw.ok("/v3/election/campaign", fmt.Sprintf(`{"name":%q,"lease":%s,"value":%q}`, b64("el"), held, b64("me")))
	if field(camp, "leader", "lease") != held {
		t.Fatalf("campaign: %v", camp)
	}
	if l := gw.ok("/v3/election/leader", fmt.Sprintf(`{"name":%q}`, b64("el"))); field(l, "kv", "value") != b64("me") {
		t.Fatalf("leader: %v", l)
	}
	obs, err := http.Post(gw.base+"/v3/election/observe", "application/json", strings.NewReader(fmt.Sprintf(`{"name":%q}`, b64("el"))))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Body.Close()
	line, err := bufio.NewReader(obs.Body).ReadBytes('\n')
	var observed map[string]any
	if err != nil || json.Unmarshal(line, &observed) != nil || field(observed, "result", "kv", "value") != b64("me") {
		t.Fatalf("observe: %q, %v", line, err)
	}
	gw.ok("/v3/election/resign", fmt.Sprintf(`{"leader":%s}`, mustJSON(t, camp["leader"])))

	if st := gw.ok("/v3/maintenance/status", `{}`); st["version"] != "3.7.3" || st["leader"] == nil {
		t.Fatalf("status: %v", st)
	}
	if h := gw.ok("/v3/maintenance/hashkv", `{}`); h["hash"] == nil {
		t.Fatalf("hashkv: %v", h)
	}
	if ms := gw.ok("/v3/cluster/member/list", `{}`); len(ms["members"].([]any)) != 3 {
		t.Fatalf("member list: %v", ms)
	}
	gw.ok("/v3/kv/compaction", fmt.Sprintf(`{"revision":%s}`, rev))
	gw.ok("/v3/kv/deleterange", fmt.Sprintf(`{"key":%q}`, b64("foo")))

	// Bad input: etcd's gRPC code and message, as an HTTP error.
	for _, tc := range []struct {
		path, body string
		http, code int
		msg        string
	}{
		{"/v3/kv/put", `{"value":"YmFy"}`, http.StatusBadRequest, 3, "etcdserver: key is not provided"},
		{"/v3/kv/put", `{not json`, http.StatusBadRequest, 3, ""},
		{"/v3/kv/range", fmt.Sprintf(`{"key":%q,"revision":1}`, b64("foo")), http.StatusBadRequest, 11, "etcdserver: mvcc: required revision has been compacted"},
		{"/v3/lease/revoke", `{"ID":12345}`, http.StatusNotFound, 5, "etcdserver: requested lease not found"},
		{"/v3/election/proclaim", `{"value":"eA=="}`, http.StatusInternalServerError, 2, `"leader" field must be provided`},
		{"/v3/election/leader", fmt.Sprintf(`{"name":%q}`, b64("nobody")), http.StatusInternalServerError, 2, "election: no leader"},
	} {
		code, out := gw.post(tc.path, tc.body)
		if code != tc.http || out["code"] != float64(tc.code) || (tc.msg != "" && out["message"] != tc.msg) {
			t.Errorf("POST %s %s: %d %v; want %d, code %d %q", tc.path, tc.body, code, out, tc.http, tc.code, tc.msg)
		}
	}
	if resp, err := http.Get(gw.base + "/v3/kv/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

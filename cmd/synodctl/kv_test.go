package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// describeOp renders an Op as a canonical string for comparisons, e.g.
// `get "foo" end="fop" limit=3 keys-only`. Fields without accessors (lease,
// ignore flags, sort) are read by reflection; clientv3 is pinned in go.mod.
func describeOp(op clientv3.Op) string {
	var b strings.Builder
	switch {
	case op.IsGet():
		b.WriteString("get")
	case op.IsPut():
		b.WriteString("put")
	case op.IsDelete():
		b.WriteString("del")
	case op.IsTxn():
		b.WriteString("txn")
	}
	fmt.Fprintf(&b, " %q", op.KeyBytes())
	if end := op.RangeBytes(); end != nil {
		fmt.Fprintf(&b, " end=%q", end)
	}
	if op.IsPut() {
		fmt.Fprintf(&b, " val=%q", op.ValueBytes())
	}
	rv := reflect.ValueOf(op)
	if id := rv.FieldByName("leaseID").Int(); id != 0 {
		fmt.Fprintf(&b, " lease=%x", id)
	}
	if op.Limit() != 0 {
		fmt.Fprintf(&b, " limit=%d", op.Limit())
	}
	if op.Rev() != 0 {
		fmt.Fprintf(&b, " rev=%d", op.Rev())
	}
	if s := rv.FieldByName("sort"); !s.IsNil() {
		fmt.Fprintf(&b, " sort=%d/%d", s.Elem().Field(0).Int(), s.Elem().Field(1).Int())
	}
	flags := []struct {
		on   bool
		name string
	}{
		{op.IsKeysOnly(), "keys-only"},
		{op.IsCountOnly(), "count-only"},
		{op.IsSerializable(), "serializable"},
		{op.IsPrevKV(), "prev-kv"},
		{rv.FieldByName("ignoreValue").Bool(), "ignore-value"},
		{rv.FieldByName("ignoreLease").Bool(), "ignore-lease"},
	}
	for _, f := range flags {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	return b.String()
}

// kvServer answers every KV op with fixed responses.
func kvServer() *fakeServer {
	return &fakeServer{doFn: func(op clientv3.Op) (clientv3.OpResponse, error) {
		switch {
		case op.IsPut():
			resp := &clientv3.PutResponse{Header: testHeader()}
			if op.IsPrevKV() {
				resp.PrevKv = kv("k", "old")
			}
			return resp.OpResponse(), nil
		case op.IsGet():
			return (&clientv3.GetResponse{Header: testHeader(), Kvs: []*kvT{kv("k1", "v1"), kv("k2", "v\x002")}, Count: 2}).OpResponse(), nil
		case op.IsDelete():
			resp := &clientv3.DeleteResponse{Header: testHeader(), Deleted: 2}
			if op.IsPrevKV() {
				resp.PrevKvs = []*kvT{kv("k1", "v1"), kv("k2", "v2")}
			}
			return resp.OpResponse(), nil
		}
		return clientv3.OpResponse{}, fmt.Errorf("unexpected op")
	}}
}

func TestKVCommandOps(t *testing.T) {
	tests := []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"put", "k", "v"}, "", `put "k" val="v"`},
		{[]string{"put", "k"}, "from stdin\n", `put "k" val="from stdin\n"`},
		{[]string{"put", "--", "k", "-v"}, "", `put "k" val="-v"`},
		{[]string{"put", "k", "v", "--prev-kv", "--lease", "694d77aa9e38260f"}, "", `put "k" val="v" lease=694d77aa9e38260f prev-kv`},
		{[]string{"put", "k", "--ignore-value", "--lease=0x1f"}, "ignored", `put "k" val="" lease=1f ignore-value`},
		{[]string{"put", "k", "v", "--ignore-lease"}, "", `put "k" val="v" ignore-lease`},
		{[]string{"get", "foo"}, "", `get "foo"`},
		{[]string{"get", "a", "c"}, "", `get "a" end="c"`},
		{[]string{"get", "foo", "--prefix"}, "", `get "foo" end="fop"`},
		{[]string{"get", "", "--prefix"}, "", `get "\x00" end="\x00"`},
		{[]string{"get", "foo", "--from-key"}, "", `get "foo" end="\x00"`},
		{[]string{"get", "foo", "--prefix", "--limit", "3", "--rev=7", "--keys-only", "--consistency", "s"}, "", `get "foo" end="fop" limit=3 rev=7 keys-only serializable`},
		{[]string{"get", "foo", "--count-only", "--consistency=l"}, "", `get "foo" count-only`},
		{[]string{"get", "foo", "--sort-by", "MODIFY", "--order", "DESCEND"}, "", `get "foo" sort=3/2`},
		{[]string{"get", "foo", "--sort-by", "value"}, "", `get "foo" sort=4/1`},
		{[]string{"get", "foo", "--order", "DESCEND"}, "", `get "foo" sort=0/2`},
		{[]string{"get", "foo", "--order", "ASCEND"}, "", `get "foo" sort=0/0`}, // clientv3 drops ascending-by-key: the server's own order
		{[]string{"del", "k"}, "", `del "k"`},
		{[]string{"del", "a", "c", "--prev-kv"}, "", `del "a" end="c" prev-kv`},
		{[]string{"del", "dir/", "--prefix"}, "", `del "dir/" end="dir0"`},
		{[]string{"delete", "k", "--from-key"}, "", `del "k" end="\x00"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			s := kvServer()
			r := runWith(s, nil, tt.stdin, tt.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if len(s.ops) != 1 {
				t.Fatalf("sent %d ops, want 1", len(s.ops))
			}
			if got := describeOp(s.ops[0]); got != tt.want {
				t.Errorf("op = %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestKVCommandArgumentErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"put"}, "put expects <key> [value], got no arguments"},
		{[]string{"put", "a", "b", "c"}, `put expects <key> [value], got 3 arguments: "a" "b" "c"`},
		{[]string{"put", "k", "v", "--ignore-value"}, "a value cannot be given with --ignore-value"},
		{[]string{"put", "k", "v", "--lease", "1f", "--ignore-lease"}, "--lease and --ignore-lease cannot be used together"},
		{[]string{"put", "k", "v", "--lease", "xyz"}, `bad lease ID "xyz"`},
		{[]string{"get"}, "get expects <key> [range_end], got no arguments"},
		{[]string{"get", "a", "b", "c"}, "get expects <key> [range_end], got 3 arguments"},
		{[]string{"get", "a", "b", "--prefix"}, "range_end cannot be given with --prefix"},
		{[]string{"get", "a", "b", "--from-key"}, "range_end cannot be given with --from-key"},
		{[]string{"get", "a", "--prefix", "--from-key"}, "--prefix and --from-key cannot be used together"},
		{[]string{"get", "a", "--limit", "-1"}, "--limit must not be negative"},
		{[]string{"get", "a", "--limit", "many"}, `invalid argument "many" for "--limit"`},
		{[]string{"get", "a", "--rev", "-2"}, "--rev must not be negative"},
		{[]string{"get", "a", "--sort-by", "SIZE"}, `unknown --sort-by "SIZE": want KEY, VERSION, CREATE, MODIFY or VALUE`},
		{[]string{"get", "a", "--order", "UP"}, `unknown --order "UP": want ASCEND or DESCEND`},
		{[]string{"get", "a", "--consistency", "x"}, `unknown --consistency "x"`},
		{[]string{"get", "a", "--keys-only", "--count-only"}, "--keys-only and --count-only cannot be used together"},
		{[]string{"get", "a", "--keys-only", "--print-value-only"}, "--print-value-only and --keys-only cannot be used together"},
		{[]string{"del"}, "del expects <key> [range_end], got no arguments"},
		{[]string{"del", "a", "b", "--prefix"}, "range_end cannot be given with --prefix"},
		{[]string{"get", "a", "--nope"}, "unknown flag: --nope"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			s := kvServer()
			r := runFail(t, s, tt.want, tt.args...)
			if !strings.Contains(r.stderr, "\nUsage: synodctl "+tt.args[0]) {
				t.Errorf("stderr lacks the usage line:\n%s", r.stderr)
			}
			if len(s.ops) != 0 || len(s.dials) != 0 {
				t.Errorf("a bad command line still reached the server (%d dials)", len(s.dials))
			}
		})
	}
}

func TestKVCommandOutput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"put", "k", "v"}, "OK\n"},
		{[]string{"put", "k", "v", "--prev-kv"}, "OK\nk\nold\n"},
		{[]string{"get", "k", "--prefix"}, "k1\nv1\nk2\nv\x002\n"},
		{[]string{"get", "k", "--prefix", "--keys-only"}, "k1\nk2\n"},
		{[]string{"get", "k", "--prefix", "--print-value-only"}, "v1\nv\x002\n"},
		{[]string{"get", "k", "--prefix", "--count-only"}, "2\n"},
		{[]string{"get", "k", "--prefix", "--hex"}, `\x6b\x31` + "\n" + `\x76\x31` + "\n" + `\x6b\x32` + "\n" + `\x76\x00\x32` + "\n"},
		{[]string{"del", "k", "--prefix"}, "2\n"},
		{[]string{"del", "k", "--prefix", "--prev-kv"}, "2\nk1\nv1\nk2\nv2\n"},
		{[]string{"put", "k", "v", "--prev-kv", "-w", "json"}, `{"header":{"cluster_id":193,"member_id":161,"revision":5,"raft_term":2},"prev_kv":{"key":"aw==","create_revision":2,"mod_revision":3,"version":1,"value":"b2xk"}}` + "\n"},
		{[]string{"get", "k", "-w", "json"}, `{"header":{"cluster_id":193,"member_id":161,"revision":5,"raft_term":2},"kvs":[{"key":"azE=","create_revision":2,"mod_revision":3,"version":1,"value":"djE="},{"key":"azI=","create_revision":2,"mod_revision":3,"version":1,"value":"dgAy"}],"count":2}` + "\n"},
		{[]string{"del", "k", "--prev-kv", "--write-out=json"}, `{"header":{"cluster_id":193,"member_id":161,"revision":5,"raft_term":2},"deleted":2,"prev_kvs":[{"key":"azE=","create_revision":2,"mod_revision":3,"version":1,"value":"djE="},{"key":"azI=","create_revision":2,"mod_revision":3,"version":1,"value":"djI="}]}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if got := runOK(t, kvServer(), tt.args...); got != tt.want {
				t.Errorf("stdout = %q\nwant     %q", got, tt.want)
			}
		})
	}
}

func TestJSONOutputIsValidJSON(t *testing.T) {
	out := runOK(t, kvServer(), "get", "k", "-w", "json")
	var v struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
		Kvs []struct {
			Key   []byte `json:"key"`
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Header.Revision != 5 || len(v.Kvs) != 2 || string(v.Kvs[1].Value) != "v\x002" {
		t.Errorf("decoded %+v", v)
	}
}

func TestKVServerErrorIsReported(t *testing.T) {
	s := &fakeServer{doFn: func(clientv3.Op) (clientv3.OpResponse, error) {
		return clientv3.OpResponse{}, fmt.Errorf("etcdserver: mvcc: required revision has been compacted")
	}}
	r := runFail(t, s, "Error: etcdserver: mvcc: required revision has been compacted", "get", "k", "--rev", "1")
	if strings.Contains(r.stderr, "Usage:") {
		t.Errorf("a server error printed the usage:\n%s", r.stderr)
	}
}

func TestParseLeaseID(t *testing.T) {
	for in, want := range map[string]clientv3.LeaseID{"0": 0, "1f": 0x1f, "0x1F": 0x1f, "694d77aa9e38260f": 0x694d77aa9e38260f} {
		got, err := parseLeaseID(in)
		if err != nil || got != want {
			t.Errorf("parseLeaseID(%q) = %x, %v; want %x", in, got, err, want)
		}
	}
	for _, in := range []string{"", "g1", "-1", "1ffffffffffffffff"} {
		if _, err := parseLeaseID(in); err == nil {
			t.Errorf("parseLeaseID(%q) succeeded", in)
		}
	}
}

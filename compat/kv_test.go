package compat

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestKV runs etcdctl's key-value commands (put, get, del, txn,
// compaction) and their error cases against one 3-member cluster whose
// members allow at most 3 operations per transaction.
func TestKV(t *testing.T) {
	c := newCluster(t, 3, "--max-txn-ops", "3")
	t.Run("PutGet", func(t *testing.T) { testPutGet(c.on(t)) })
	t.Run("Range", func(t *testing.T) { testRange(c.on(t)) })
	t.Run("Revisions", func(t *testing.T) { testRevisions(c.on(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(c.on(t)) })
	t.Run("Txn", func(t *testing.T) { testTxn(c.on(t)) })
	t.Run("Compaction", func(t *testing.T) { testCompaction(c.on(t)) })
	t.Run("Errors", func(t *testing.T) { testKVErrors(c.on(t)) })
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// one returns a single-endpoint list.
func one(ep string) []string { return []string{ep} }

// getJSON runs `etcdctl get args... -w json`.
func (c *cluster) getJSON(eps []string, args ...string) rangeResp {
	c.t.Helper()
	var r rangeResp
	c.mustJSON(eps, &r, append([]string{"get"}, args...)...)
	return r
}

// putRev runs `etcdctl put key value -w json` and returns the revision
// of the write.
func (c *cluster) putRev(key, value string) int64 {
	c.t.Helper()
	var p putResp
	c.mustJSON(nil, &p, "put", key, value)
	if p.Header.Revision <= 0 {
		c.t.Fatalf("put %s: no revision in the response header: %+v", key, p.Header)
	}
	return p.Header.Revision
}

// everyMemberEventually requires that a serializable read on every member
// eventually prints want (followers apply asynchronously).
func (c *cluster) everyMemberEventually(want string, args ...string) {
	c.t.Helper()
	for _, ep := range c.endpoints() {
		eventually(c.t, settleTimeout, "serializable read on "+ep, func() error {
			r := c.ctl(one(ep), "", append(args, "--consistency=s")...)
			if r.code != 0 || r.stdout != want {
				return fmt.Errorf("want stdout %q:\n%v", want, r)
			}
			return nil
		})
	}
}

func testPutGet(c *cluster) {
	t := c.t
	c.mustEqual(nil, "OK\n", "put", "foo", "bar")
	c.mustEqual(nil, "foo\nbar\n", "get", "foo")
	c.mustEqual(nil, "bar\n", "get", "foo", "--print-value-only")
	c.mustEqual(nil, "", "get", "no-such-key")
	c.mustEqual(nil, "OK\nfoo\nbar\n", "put", "foo", "baz", "--prev-kv")
	c.mustEqual(nil, "OK\n", "put", "key with spaces", "a value\twith blanks")
	c.mustEqual(nil, "key with spaces\na value\twith blanks\n", "get", "key with spaces")

	r := c.getJSON(nil, "foo")
	if len(r.Kvs) != 1 || r.Count != 1 || r.More {
		t.Fatalf("get foo: want one kv, count 1, got %+v", r)
	}
	kv := r.Kvs[0]
	if string(kv.Key) != "foo" || string(kv.Value) != "baz" || kv.Version != 2 ||
		kv.CreateRevision <= 0 || kv.ModRevision <= kv.CreateRevision || kv.ModRevision > r.Header.Revision || kv.Lease != 0 {
		t.Fatalf("get foo: unexpected kv %+v (header %+v)", kv, r.Header)
	}
	if r.Header.ClusterID == 0 || r.Header.MemberID == 0 || r.Header.RaftTerm == 0 {
		t.Fatalf("get foo: incomplete response header %+v", r.Header)
	}

	// An acknowledged write is seen at once by a linearizable read on
	// every member, and eventually by serializable ones.
	for _, ep := range c.endpoints() {
		c.mustEqual(one(ep), "baz\n", "get", "foo", "--print-value-only")
	}
	c.everyMemberEventually("foo\nbaz\n", "get", "foo")
}

func testRange(c *cluster) {
	t := c.t
	for _, kv := range [][2]string{{"zz/a", "3"}, {"zz/b", "1"}, {"zz/c", "4"}, {"zz/d", "2"}, {"zzz", "9"}, {"zz/b", "5"}} {
		c.must(nil, "put", kv[0], kv[1])
	}
	// Now zz/a=3 zz/b=5 zz/c=4 zz/d=2, created in order a, b, c, d; zz/b
	// was modified last and is at version 2.
	c.mustEqual(nil, "zz/a\n3\nzz/b\n5\nzz/c\n4\nzz/d\n2\n", "get", "zz/", "--prefix")
	c.mustEqual(nil, "zz/b\n5\nzz/c\n4\n", "get", "zz/b", "zz/d")
	c.mustEqual(nil, "zz/c\n4\nzz/d\n2\nzzz\n9\n", "get", "zz/c", "--from-key")
	c.mustEqual(nil, "3\n5\n4\n2\n", "get", "zz/", "--prefix", "--print-value-only")

	r := c.getJSON(nil, "zz/", "--prefix", "--limit", "2")
	if got := kvString(r.Kvs); got != "zz/a=3,zz/b=5" || !r.More || r.Count != 4 {
		t.Fatalf("--limit 2: got kvs %s more %v count %d, want zz/a=3,zz/b=5 more true count 4", got, r.More, r.Count)
	}
	r = c.getJSON(nil, "zz/", "--prefix", "--limit", "4")
	if got := kvString(r.Kvs); got != "zz/a=3,zz/b=5,zz/c=4,zz/d=2" || r.More || r.Count != 4 {
		t.Fatalf("--limit 4: got kvs %s more %v count %d", got, r.More, r.Count)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sort-by=KEY", "--order=DESCEND"}, "zz/d=2,zz/c=4,zz/b=5,zz/a=3"},
		{[]string{"--sort-by=KEY", "--order=ASCEND"}, "zz/a=3,zz/b=5,zz/c=4,zz/d=2"},
		{[]string{"--sort-by=VALUE"}, "zz/d=2,zz/a=3,zz/c=4,zz/b=5"},
		{[]string{"--sort-by=VALUE", "--order=DESCEND"}, "zz/b=5,zz/c=4,zz/a=3,zz/d=2"},
		{[]string{"--sort-by=MODIFY", "--order=DESCEND"}, "zz/b=5,zz/d=2,zz/c=4,zz/a=3"},
		{[]string{"--sort-by=MODIFY", "--order=ASCEND"}, "zz/a=3,zz/c=4,zz/d=2,zz/b=5"},
		{[]string{"--sort-by=CREATE", "--order=DESCEND"}, "zz/d=2,zz/c=4,zz/b=5,zz/a=3"},
		{[]string{"--sort-by=CREATE", "--order=ASCEND"}, "zz/a=3,zz/b=5,zz/c=4,zz/d=2"},
		// The server sorts the whole range, then applies the limit.
		{[]string{"--sort-by=VALUE", "--order=DESCEND", "--limit=1"}, "zz/b=5"},
		{[]string{"--sort-by=VERSION", "--order=DESCEND", "--limit=1"}, "zz/b=5"},
		{[]string{"--sort-by=MODIFY", "--order=DESCEND", "--limit=2"}, "zz/b=5,zz/d=2"},
	} {
		r := c.getJSON(nil, append([]string{"zz/", "--prefix"}, tc.args...)...)
		if got := kvString(r.Kvs); got != tc.want {
			t.Errorf("get zz/ --prefix %s: got %s, want %s", strings.Join(tc.args, " "), got, tc.want)
		}
	}

	// --keys-only: the simple format prints each key and an empty value.
	c.mustEqual(nil, "zz/a\n\nzz/b\n\nzz/c\n\nzz/d\n\n", "get", "zz/", "--prefix", "--keys-only")
	r = c.getJSON(nil, "zz/", "--prefix", "--keys-only")
	if len(r.Kvs) != 4 || r.Count != 4 {
		t.Fatalf("--keys-only: want 4 kvs, got %+v", r)
	}
	for _, kv := range r.Kvs {
		if len(kv.Value) != 0 || kv.ModRevision == 0 || kv.Version == 0 {
			t.Fatalf("--keys-only: want revisions without value, got %+v", kv)
		}
	}

	// --count-only (etcdctl allows it with -w fields only): the count and
	// no kvs.
	fields := c.must(nil, "get", "zz/", "--prefix", "--count-only", "-w", "fields")
	if !hasLine(fields, `"Count" : 4`) || strings.Contains(fields, `"Key"`) {
		t.Fatalf("--count-only -w fields: want \"Count\" : 4 and no keys, got:\n%s", fields)
	}

	// Serializable reads on every member converge to the same range.
	c.everyMemberEventually("zz/a\n3\nzz/b\n5\nzz/c\n4\nzz/d\n2\n", "get", "zz/", "--prefix")
}

func testRevisions(c *cluster) {
	t := c.t
	r1 := c.putRev("rk", "v1")
	r2 := c.putRev("rk", "v2")
	if r2 != r1+1 {
		t.Fatalf("second put: revision %d, want %d", r2, r1+1)
	}
	c.mustEqual(nil, "rk\nv1\n", "get", "rk", "--rev", itoa(r1))
	c.mustEqual(nil, "rk\nv2\n", "get", "rk", "--rev", itoa(r2))
	c.mustEqual(nil, "", "get", "rk", "--rev", itoa(r1-1))

	r := c.getJSON(nil, "rk", "--rev", itoa(r1))
	if len(r.Kvs) != 1 || r.Kvs[0].ModRevision != r1 || r.Kvs[0].CreateRevision != r1 || r.Kvs[0].Version != 1 {
		t.Fatalf("get rk --rev %d: got %+v", r1, r)
	}
	if r.Header.Revision < r2 {
		t.Fatalf("get --rev: the header carries the current revision; got %d, want >= %d", r.Header.Revision, r2)
	}

	var d deleteResp
	c.mustJSON(nil, &d, "del", "rk")
	if d.Deleted != 1 || d.Header.Revision != r2+1 {
		t.Fatalf("del rk: got %+v, want 1 deleted at revision %d", d, r2+1)
	}
	c.mustEqual(nil, "", "get", "rk")
	c.mustEqual(nil, "rk\nv2\n", "get", "rk", "--rev", itoa(r2))
	c.everyMemberEventually("rk\nv1\n", "get", "rk", "--rev", itoa(r1))
}

func testDelete(c *cluster) {
	t := c.t
	for _, kv := range [][2]string{{"d/a", "1"}, {"d/b", "2"}, {"d/c", "3"}, {"d/x/y", "4"}, {"e/1", "e1"}, {"e/2", "e2"}, {"e/3", "e3"}} {
		c.must(nil, "put", kv[0], kv[1])
	}
	c.mustEqual(nil, "1\n", "del", "d/a")
	c.mustEqual(nil, "0\n", "del", "d/no-such-key")
	c.mustEqual(nil, "1\nd/b\n2\n", "del", "d/b", "--prev-kv")

	var d deleteResp
	c.mustJSON(nil, &d, "del", "d/", "--prefix", "--prev-kv")
	if d.Deleted != 2 || kvString(d.PrevKvs) != "d/c=3,d/x/y=4" {
		t.Fatalf("del d/ --prefix --prev-kv: got deleted %d prev %s, want 2 and d/c=3,d/x/y=4", d.Deleted, kvString(d.PrevKvs))
	}
	c.mustEqual(nil, "", "get", "d/", "--prefix")

	// A range [e/1, e/3) deletes e/1 and e/2 only (--range: without
	// it etcdctl waits 2 seconds for a chance to interrupt).
	c.mustEqual(nil, "2\n", "del", "e/1", "e/3", "--range")
	c.mustEqual(nil, "e/3\ne3\n", "get", "e/", "--prefix")
	c.mustEqual(nil, "0\n", "del", "e/1", "e/3", "--range")
	c.everyMemberEventually("e/3\ne3\n", "get", "e/", "--prefix")
}

func testTxn(c *cluster) {
	t := c.t
	c.must(nil, "put", "t/k", "v1")

	// Both compares hold: the success branch runs.
	c.mustInEqual(nil, `mod("t/k") > "0"
value("t/k") = "v1"

put t/k v2
get t/k

put t/k never

`, "SUCCESS\n\nOK\n\nt/k\nv2\n", "txn")
	c.mustEqual(nil, "v2\n", "get", "t/k", "--print-value-only")

	// The compare fails: only the failure branch runs.
	c.mustInEqual(nil, `value("t/k") = "v1"

put t/k never

put t/other x
del t/k

`, "FAILURE\n\nOK\n\n1\n", "txn")
	c.mustEqual(nil, "", "get", "t/k")
	c.mustEqual(nil, "t/other\nx\n", "get", "t/other")

	// Other compare targets and operators; all writes of one txn share
	// one revision.
	before := c.getJSON(nil, "t/other").Header.Revision
	var tr txnResp
	c.mustInJSON(nil, `version("t/other") = "1"
create("t/absent") = "0"
val("t/other") != "y"

get t/other
put t/new n
put t/new2 n2


`, &tr, "txn")
	if !tr.Succeeded || len(tr.Responses) != 3 {
		t.Fatalf("txn: want success with 3 responses, got %+v", tr)
	}
	if rr := tr.Responses[0].Response.Range; rr == nil || kvString(rr.Kvs) != "t/other=x" {
		t.Fatalf("txn get t/other: got %+v", tr.Responses[0])
	}
	if tr.Responses[1].Response.Put == nil || tr.Responses[2].Response.Put == nil {
		t.Fatalf("txn puts: got %+v", tr.Responses)
	}
	if tr.Header.Revision != before+1 {
		t.Fatalf("txn with two puts: revision %d, want %d (one revision per txn)", tr.Header.Revision, before+1)
	}
	r := c.getJSON(nil, "t/new", "--prefix")
	if kvString(r.Kvs) != "t/new=n,t/new2=n2" || r.Kvs[0].ModRevision != before+1 || r.Kvs[1].ModRevision != before+1 {
		t.Fatalf("after txn: got %+v, want t/new and t/new2 at revision %d", r.Kvs, before+1)
	}

	// A failing "<" compare, with flags on the ops of the branch.
	c.mustInEqual(nil, `mod("t/other") < "1"

put t/k never

get t/new --prefix
del t/new2 --prev-kv

`, "FAILURE\n\nt/new\nn\nt/new2\nn2\n\n1\nt/new2\nn2\n", "txn")
	c.mustEqual(nil, "", "get", "t/k")

	// No compares: the success branch runs.
	c.mustInEqual(nil, "\nput t/e 1\n\nput t/k never\n\n", "SUCCESS\n\nOK\n", "txn")
	c.everyMemberEventually("t/e\n1\nt/new\nn\nt/other\nx\n", "get", "t/", "--prefix")
}

func testCompaction(c *cluster) {
	ra := c.putRev("c/k", "c1")
	rb := c.putRev("c/k", "c2")
	rc := c.putRev("c/k", "c3")
	const compacted = "etcdserver: mvcc: required revision has been compacted"

	c.mustEqual(nil, fmt.Sprintf("compacted revision %d\n", rb), "compaction", itoa(rb))
	c.mustFail(nil, compacted, "get", "c/k", "--rev", itoa(ra))
	c.mustEqual(nil, "c/k\nc2\n", "get", "c/k", "--rev", itoa(rb))

	c.mustEqual(nil, fmt.Sprintf("compacted revision %d\n", rc), "compaction", "--physical", itoa(rc))
	c.mustFail(nil, compacted, "get", "c/k", "--rev", itoa(rb))
	c.mustEqual(nil, "c/k\nc3\n", "get", "c/k", "--rev", itoa(rc))
	c.mustEqual(nil, "c/k\nc3\n", "get", "c/k")

	// Compacting again at or below the compacted revision, or beyond the
	// current one, fails.
	c.mustFail(nil, compacted, "compaction", itoa(rb))
	c.mustFail(nil, "etcdserver: mvcc: required revision is a future revision", "compaction", itoa(rc+1000))

	// Every member applied the compaction.
	for _, ep := range c.endpoints() {
		eventually(c.t, settleTimeout, "compaction applied on "+ep, func() error {
			r := c.ctl(one(ep), "", "get", "c/k", "--rev", itoa(rb), "--consistency=s")
			if r.code != 1 || !hasLine(r.stderr, "Error: "+compacted) {
				return fmt.Errorf("want the compacted error:\n%v", r)
			}
			return nil
		})
	}
}

func testKVErrors(c *cluster) {
	const noKey = "etcdserver: key is not provided"
	c.mustFail(nil, noKey, "put", "", "v")
	c.mustFail(nil, noKey, "get", "")
	c.mustFail(nil, noKey, "del", "")

	// The members run with --max-txn-ops 3.
	const tooMany = "etcdserver: too many operations in txn request"
	c.mustFailIn(nil, "\nput x/1 1\nput x/2 2\nput x/3 3\nput x/4 4\n\n\n", tooMany, "txn")
	c.mustFailIn(nil, "\n\nput x/1 1\nput x/2 2\nput x/3 3\nput x/4 4\n\n", tooMany, "txn")
	c.mustFailIn(nil, "mod(\"x/1\") = \"0\"\nmod(\"x/2\") = \"0\"\nmod(\"x/3\") = \"0\"\nmod(\"x/4\") = \"0\"\n\n\n\n", tooMany, "txn")
	c.mustInEqual(nil, "\nput x/1 1\nput x/2 2\nput x/3 3\n\n\n", "SUCCESS\n\nOK\n\nOK\n\nOK\n", "txn")
	c.mustFailIn(nil, "\nput x/dup 1\nput x/dup 2\n\n\n", "etcdserver: duplicate key given in txn request", "txn")
	c.mustEqual(nil, "x/1\n1\nx/2\n2\nx/3\n3\n", "get", "x/", "--prefix")

	cur := c.getJSON(nil, "x/1").Header.Revision
	c.mustFail(nil, "etcdserver: mvcc: required revision is a future revision", "get", "x/1", "--rev", itoa(cur+1000))
	c.mustFail(nil, "etcdserver: mvcc: required revision is a future revision", "get", "x/", "--prefix", "--rev", itoa(cur+1))
}

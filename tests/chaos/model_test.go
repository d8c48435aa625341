package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// h builds histories by hand: each op has a call and return time in
// milliseconds.
type h struct{ recs []Record }

func (b *h) add(client int, call, ret int64, req Request, resp Response) *h {
	b.recs = append(b.recs, Record{Client: client, Req: req, Resp: resp, Call: call * 1e6, Return: ret * 1e6})
	return b
}

func put(k int, v string) Request { return Request{Then: []Op{{Kind: OpPut, Key: k, Value: v}}} }
func get(k int) Request           { return Request{Then: []Op{{Kind: OpGet, Key: k}}} }
func del(k int) Request           { return Request{Then: []Op{{Kind: OpDelete, Key: k}}} }
func rangeAll() Request           { return Request{Then: []Op{{Kind: OpRange}}} }
func wrote(rev int64) Response    { return Response{Succeeded: true, Rev: rev, Results: []Result{{}}} }
func deleted(rev, n int64) Response {
	return Response{Succeeded: true, Rev: rev, Results: []Result{{Deleted: n}}}
}
func read(rev int64, kvs ...KV) Response {
	return Response{Succeeded: true, Rev: rev, Results: []Result{{KVs: append([]KV{}, kvs...)}}}
}
func unknown() Response { return Response{Unknown: true} }

// check prepares and checks a history that starts at revision 1 and ends
// at final, with an optional log.
func check(t *testing.T, b *h, final int64, log []Event) porcupine.CheckResult {
	t.Helper()
	p := Prepare(b.recs, 1, final, log)
	m := Model([]string{"a", "b", "c"}, 1, final, p.Claimed)
	res, info := porcupine.CheckOperationsVerbose(m, p.Ops, 10*time.Second)
	if res != porcupine.Ok {
		t.Logf("%s", diagnose(m, p.Ops, info))
	}
	return res
}

func TestModelAcceptsSequentialHistory(t *testing.T) {
	b := (&h{}).
		add(0, 0, 1, put(0, "x"), wrote(2)).
		add(1, 2, 3, get(0), read(2, KV{Key: 0, Value: "x", Mod: 2, Create: 2, Version: 1})).
		add(0, 4, 5, put(0, "y"), wrote(3)).
		add(1, 6, 7, rangeAll(), read(3, KV{Key: 0, Value: "y", Mod: 3, Create: 2, Version: 2})).
		add(0, 8, 9, del(1), deleted(3, 0)). // deleting nothing keeps the revision
		add(0, 10, 11, del(0), deleted(4, 1)).
		add(1, 12, 13, get(0), read(4))
	if res := check(t, b, 4, nil); res != porcupine.Ok {
		t.Fatalf("got %s, want Ok", res)
	}
}

func TestModelRejects(t *testing.T) {
	x := KV{Key: 0, Value: "x", Mod: 2, Create: 2, Version: 1}
	cases := map[string]*h{
		// A read that starts after a write was acknowledged must see it.
		"stale read": (&h{}).
			add(0, 0, 1, put(0, "x"), wrote(2)).
			add(0, 2, 3, put(0, "y"), wrote(3)).
			add(1, 4, 5, get(0), read(2, x)),
		// The revision of a write is the store's next one.
		"wrong revision": (&h{}).
			add(0, 0, 1, put(0, "x"), wrote(3)),
		// An acknowledged write is never lost.
		"lost write": (&h{}).
			add(0, 0, 1, put(0, "x"), wrote(2)).
			add(1, 2, 3, get(0), read(2)),
		// Versions count the puts since creation.
		"wrong version": (&h{}).
			add(0, 0, 1, put(0, "x"), wrote(2)).
			add(0, 2, 3, put(0, "y"), wrote(3)).
			add(1, 4, 5, get(0), read(3, KV{Key: 0, Value: "y", Mod: 3, Create: 2, Version: 1})),
		// A transaction's writes are seen together or not at all.
		"torn txn": (&h{}).
			add(0, 0, 10, Request{Txn: true, Then: []Op{{Kind: OpPut, Key: 0, Value: "x"}, {Kind: OpPut, Key: 1, Value: "y"}}}, Response{Succeeded: true, Rev: 2, Results: []Result{{}, {}}}).
			add(1, 1, 9, rangeAll(), read(2, x)),
		// A compare-and-swap on a stale revision must fail.
		"cas on stale revision": (&h{}).
			add(0, 0, 1, put(0, "x"), wrote(2)).
			add(0, 2, 3, put(0, "y"), wrote(3)).
			add(1, 4, 5, Request{Txn: true, Cmps: []Cmp{{Key: 0, Target: CmpMod, Result: CmpEqual, Num: 2}}, Then: []Op{{Kind: OpPut, Key: 0, Value: "z"}}, Else: []Op{{Kind: OpGet, Key: 0}}},
				Response{Succeeded: true, Rev: 4, Results: []Result{{}}}),
		// Unknown writes cannot explain a value nobody wrote.
		"phantom value": (&h{}).
			add(0, 0, 1, put(0, "x"), unknown()).
			add(1, 2, 3, get(0), read(2, KV{Key: 0, Value: "w", Mod: 2, Create: 2, Version: 1})),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			final := int64(1)
			for _, r := range b.recs {
				final = max(final, r.Resp.Rev)
			}
			if res := check(t, b, final, nil); res != porcupine.Illegal {
				t.Fatalf("got %s, want Illegal", res)
			}
		})
	}
}

// A write whose client saw an error may still take effect, even after
// the error was returned.
func TestModelUnknownWriteTakesEffectLater(t *testing.T) {
	x := KV{Key: 0, Value: "x", Mod: 2, Create: 2, Version: 1}
	b := (&h{}).
		add(0, 0, 1, put(0, "x"), unknown()).
		add(1, 5, 6, get(0), read(1)).
		add(1, 7, 8, get(0), read(2, x))
	if res := check(t, b, 2, nil); res != porcupine.Ok {
		t.Fatalf("without log: got %s, want Ok", res)
	}
	b = (&h{}).
		add(0, 0, 1, put(0, "x"), unknown()).
		add(1, 5, 6, get(0), read(1)).
		add(1, 7, 8, put(1, "y"), wrote(3))
	log := []Event{{Rev: 2, Key: 0, Value: "x", Create: 2, Ver: 1}, {Rev: 3, Key: 1, Value: "y", Create: 3, Ver: 1}}
	if res := check(t, b, 3, log); res != porcupine.Ok {
		t.Fatalf("pinned by the log: got %s, want Ok", res)
	}
	// ... but never before it was called.
	b = (&h{}).
		add(1, 0, 1, get(0), read(2, x)).
		add(0, 2, 3, put(0, "x"), unknown())
	if res := check(t, b, 2, nil); res != porcupine.Illegal {
		t.Fatalf("seen before called: got %s, want Illegal", res)
	}
}

// Unknown operations that cannot have written are left out, and those
// that may have are left to porcupine.
func TestPrepareNarrowsUnknownWrites(t *testing.T) {
	b := (&h{}).
		add(0, 0, 1, put(0, "x"), wrote(2)).
		add(1, 0, 1, put(1, "lost"), unknown()).
		add(2, 0, 1, del(2), unknown())
	p := Prepare(b.recs, 1, 2, nil)
	if p.Dropped != 2 || p.Open != 0 || p.Gaps != 0 {
		t.Fatalf("no gap: dropped %d open %d gaps %d, want 2 0 0", p.Dropped, p.Open, p.Gaps)
	}
	p = Prepare(b.recs, 1, 3, nil)
	if p.Dropped != 0 || p.Open != 2 || p.Gaps != 1 {
		t.Fatalf("one gap: dropped %d open %d gaps %d, want 0 2 1", p.Dropped, p.Open, p.Gaps)
	}
	log := []Event{{Rev: 2, Key: 0, Value: "x", Create: 2, Ver: 1}, {Rev: 3, Key: 2, Delete: true}}
	p = Prepare(b.recs, 1, 3, log)
	if p.Dropped != 1 || p.Pinned != 1 || p.Gaps != 0 {
		t.Fatalf("log: dropped %d pinned %d gaps %d, want 1 1 0", p.Dropped, p.Pinned, p.Gaps)
	}
}

func TestCheckLogFindsDoubleApply(t *testing.T) {
	b := (&h{}).add(0, 0, 1, put(0, "x"), wrote(2))
	log := []Event{{Rev: 2, Key: 0, Value: "x", Create: 2, Ver: 1}, {Rev: 3, Key: 0, Value: "x", Create: 2, Ver: 2}}
	bad := checkLog(b.recs, log)
	if len(bad) == 0 || !strings.Contains(bad[0], "applied twice") {
		t.Fatalf("got %v, want a double apply", bad)
	}
	bad = checkLog(b.recs, log[1:])
	if len(bad) == 0 || !strings.Contains(strings.Join(bad, " "), "lost") {
		t.Fatalf("got %v, want a lost write", bad)
	}
}

func TestCheckWatch(t *testing.T) {
	log := []Event{{Rev: 2, Key: 0, Value: "a"}, {Rev: 3, Key: 1, Value: "b"}, {Rev: 3, Key: 2, Value: "c"}, {Rev: 4, Key: 0, Delete: true}}
	ok := &watcher{batches: []watchBatch{{events: log[:1]}, {stream: 1, events: log[1:3]}, {stream: 1, events: log[3:]}}}
	if bad := checkWatch(ok, log, 4); len(bad) != 0 {
		t.Fatalf("good watcher: %v", bad)
	}
	for name, w := range map[string]*watcher{
		"gap":        {batches: []watchBatch{{events: log[:1]}, {events: log[3:]}}},
		"repeat":     {batches: []watchBatch{{events: log[:3]}, {events: log[1:]}}},
		"torn":       {batches: []watchBatch{{events: log[:2]}, {events: log[2:]}}},
		"incomplete": {batches: []watchBatch{{events: log[:3]}}},
		"altered":    {batches: []watchBatch{{events: []Event{{Rev: 2, Key: 0, Value: "z"}}}, {events: log[1:]}}},
	} {
		if bad := checkWatch(w, log, 4); len(bad) == 0 {
			t.Errorf("%s: not detected", name)
		}
	}
}

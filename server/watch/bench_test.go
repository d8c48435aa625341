package watch

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/synod-db/synod/mvcc"
)

// drain consumes a stream until it closes, discarding what it reads.
func drain(st *Stream) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, ok, _ := st.Next(nil); !ok {
				return
			}
		}
	}()
	return done
}

// TestIdleWatcherMemory creates 100,000 idle watchers (70% single keys,
// 20% prefixes, 10% from-key or arbitrary ranges) on 100 streams and
// measures the heap they hold: the goal is at most 1 KiB each.
func TestIdleWatcherMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 watchers")
	}
	const nStreams, perStream = 100, 1000
	e := newEnv(t, Options{})
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	streams := make([]*Stream, nStreams)
	dones := make([]chan struct{}, nStreams)
	for i := range streams {
		streams[i] = e.hub.NewStream()
		dones[i] = drain(streams[i])
	}
	for i := range nStreams * perStream {
		var r Request
		switch i % 10 {
		case 0, 1:
			p := fmt.Sprintf("/registry/pods/ns%04d/", i%5000)
			r = Request{Key: []byte(p), End: []byte(p[:len(p)-1] + "0")}
		case 2:
			r = Request{Key: []byte(fmt.Sprintf("/config/%06d", i)), End: []byte{0}}
		default:
			r = Request{Key: []byte(fmt.Sprintf("/services/svc%06d/leader", i))}
		}
		if _, err := streams[i%nStreams].Watch(r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "created responses drained", func() bool {
		for _, st := range streams {
			st.mu.Lock()
			n := st.queued()
			st.mu.Unlock()
			if n > 0 {
				return false
			}
		}
		return true
	})
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	per := float64(int64(ms.HeapAlloc)-int64(before)) / float64(nStreams*perStream)
	t.Logf("%d idle watchers on %d streams: %.0f bytes of heap each", nStreams*perStream, nStreams, per)
	if st := e.hub.Stats(); st.Synced != nStreams*perStream {
		t.Fatalf("stats %+v", st)
	}
	if per > 1024 {
		t.Fatalf("%.0f bytes per idle watcher, want at most 1024", per)
	}
	for i, st := range streams {
		st.Close()
		<-dones[i]
	}
	if st := e.hub.Stats(); st.Synced+st.Unsynced+st.Streams != 0 {
		t.Fatalf("after closing every stream: %+v", st)
	}
}

// fanoutEnv prepares a hub with n watchers on key "k" spread over
// streams of perStream watchers, each stream drained by a goroutine,
// with queues large enough that no watcher falls behind.
func fanoutEnv(b *testing.B, n, perStream int, opts Options) (*Hub, func()) {
	opts.StreamMaxResponses = 1 << 20
	opts.StreamMaxBytes = 1 << 30
	h := New(nopSource{}, 1, opts)
	var streams []*Stream
	var dones []chan struct{}
	for i := range n {
		if i%perStream == 0 {
			st := h.NewStream()
			streams = append(streams, st)
			dones = append(dones, drain(st))
		}
		if _, err := streams[len(streams)-1].Watch(Request{Key: []byte("k")}); err != nil {
			b.Fatal(err)
		}
	}
	return h, func() {
		h.Close()
		for _, d := range dones {
			<-d
		}
	}
}

// nopSource is an empty history, for benchmarks that never replay.
type nopSource struct{}

func (nopSource) History(from, to int64, _ mvcc.HistoryOptions) (mvcc.HistoryResult, error) {
	return mvcc.HistoryResult{Next: from}, nil
}
func (nopSource) CompactedRev() int64 { return 0 }
func (nopSource) Rev() int64          { return 1 }

func putEvent(key string, rev int64) []mvcc.Event {
	return []mvcc.Event{{Type: mvcc.EventPut, KV: mvcc.KeyValue{Key: []byte(key), Value: []byte("value"), CreateRevision: 2, ModRevision: rev, Version: rev}}}
}

// BenchmarkNotifyFanout measures Notify of one put watched by n
// watchers (100 per stream): the apply goroutine's cost per write.
func BenchmarkNotifyFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000, 100000} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			h, stop := fanoutEnv(b, n, 100, Options{RecentRevisions: 1})
			defer stop()
			evs := make([][]mvcc.Event, 64)
			for i := range evs {
				evs[i] = putEvent("k", 0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				rev := int64(i) + 2
				ev := evs[i%len(evs)]
				ev[0].KV.ModRevision = rev
				h.Notify(rev, ev)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/watcher")
		})
	}
}

// BenchmarkNotifyUnwatched measures Notify of a put to a key that none
// of 100,000 single-key and 10,000 prefix watchers watches: the cost
// every write pays for the index.
func BenchmarkNotifyUnwatched(b *testing.B) {
	h := New(nopSource{}, 1, Options{RecentRevisions: 1})
	defer h.Close()
	st := h.NewStream()
	done := drain(st)
	defer func() { st.Close(); <-done }()
	for i := range 100000 {
		if _, err := st.Watch(Request{Key: []byte(fmt.Sprintf("/svc/%06d", i))}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10000 {
		p := fmt.Sprintf("/pfx/%05d/", i)
		if _, err := st.Watch(Request{Key: []byte(p), End: []byte(p[:len(p)-1] + "0")}); err != nil {
			b.Fatal(err)
		}
	}
	ev := putEvent("/other/key", 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		rev := int64(i) + 2
		ev[0].KV.ModRevision = rev
		h.Notify(rev, ev)
	}
}

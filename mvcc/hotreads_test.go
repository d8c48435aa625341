package mvcc

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// TestHotReadsNeverStale reads one key from several goroutines while a
// writer rewrites it at every revision, alone and in groups with other
// keys (run with -race). The key's value is the revision that wrote it,
// so a read served from a slot older than the store shows up as a value
// or mod revision behind the revision the read reports.
func TestHotReadsNeverStale(t *testing.T) {
	s, _ := openTest(t)
	hot := []byte("config/hot")
	if _, _, err := s.Put(1, hot, []byte(fmt.Sprint(s.Rev()+1)), 0, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			var last int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := s.Range(hot, nil, RangeOptions{})
				if err != nil {
					errc <- err
					return
				}
				if len(res.KVs) != 1 {
					errc <- fmt.Errorf("read at %d found %d versions of the key", res.Rev, len(res.KVs))
					return
				}
				kv := res.KVs[0]
				if kv.ModRevision != res.Rev || string(kv.Value) != fmt.Sprint(res.Rev) || res.Rev < last {
					errc <- fmt.Errorf("stale read: at revision %d (previous read %d) got mod %d value %q", res.Rev, last, kv.ModRevision, kv.Value)
					return
				}
				last = res.Rev
			}
		})
	}
	index := uint64(1)
	for i := range 600 {
		index++
		next := fmt.Sprint(s.Rev() + 1)
		var err error
		if i%3 == 0 {
			// A group of entries: the key and others change in several
			// revisions, visible only at the commit.
			g, gerr := s.Group()
			if gerr != nil {
				t.Fatal(gerr)
			}
			for j := range 3 {
				rev := fmt.Sprint(s.Rev() + int64(j) + 1)
				if _, _, err = g.Write(index, func(tx *WriteTxn) error {
					if _, err := tx.Put([]byte(fmt.Sprintf("other/%d", j)), []byte("x"), 0, PutOptions{}); err != nil {
						return err
					}
					_, err := tx.Put(hot, []byte(rev), 0, PutOptions{})
					return err
				}); err != nil {
					break
				}
				index++
			}
			if err == nil {
				err = g.Commit()
			}
			g.Close()
		} else {
			_, _, err = s.Put(index, hot, []byte(next), 0, PutOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestHotReadsDeleteAndRestore checks the two other ways a cached key's
// value can change under it: a deletion, and a restore from a snapshot
// taken before a later write that the cache holds.
func TestHotReadsDeleteAndRestore(t *testing.T) {
	s, _ := openTest(t)
	k := []byte("k")
	read := func() []byte {
		t.Helper()
		res, err := s.Range(k, nil, RangeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.KVs) == 0 {
			return nil
		}
		return res.KVs[0].Value
	}
	if _, _, err := s.Put(1, k, []byte("before"), 0, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := read(); string(got) != "before" {
		t.Fatalf("read %q, want before", got)
	}
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(2, k, []byte("after"), 0, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := read(); string(got) != "after" {
		t.Fatalf("read %q after the second put, want after", got)
	}
	if err := s.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if got := read(); string(got) != "before" {
		t.Fatalf("read %q after restoring the snapshot, want before", got)
	}
	if _, _, _, err := s.DeleteRange(3, k, nil, false); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != nil {
		t.Fatalf("read %q after the delete, want nothing", got)
	}
}

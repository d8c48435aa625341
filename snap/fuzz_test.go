package snap

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// FuzzLoad writes arbitrary bytes as a snapshot file and loads the
// directory. A load must never panic or allocate beyond the input's size;
// it either fails with ErrNoSnapshot and ErrCorrupt, having moved the file
// aside, or returns a snapshot whose data reads to the end without error
// and which survives a save and a load unchanged.
func FuzzLoad(f *testing.F) {
	const term, index = 5, 7
	seeds := []pb.Snapshot{
		{Metadata: pb.SnapshotMetadata{Term: term, Index: index}},
		{Metadata: testMeta(term, index), Data: []byte("hello")},
		testSnap(term, index, 200),
	}
	for _, sn := range seeds {
		b := fileBytes(f, sn)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte(fileMagic))
	f.Add(bytes.Repeat([]byte{0xff}, minFileLen))

	f.Fuzz(func(t *testing.T, in []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName(term, index))
		if err := os.WriteFile(path, in, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(dir, Options{Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		meta, r, err := s.LoadNewest()
		if err != nil {
			if !errors.Is(err, ErrNoSnapshot) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("load of a damaged file: %v, want ErrNoSnapshot and ErrCorrupt", err)
			}
			if _, serr := os.Stat(path + brokenSuffix); serr != nil {
				t.Fatalf("damaged file not moved aside: %v", serr)
			}
			return
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("reading a validated snapshot: %v", err)
		}
		if meta.Term != term || meta.Index != index {
			t.Fatalf("loaded term %d index %d from file %s", meta.Term, meta.Index, filepath.Base(path))
		}
		if len(data) >= len(in) {
			t.Fatalf("%d bytes of data from a %d-byte file", len(data), len(in))
		}
		s2 := open(t, t.TempDir(), Options{})
		mustSave(t, s2, pb.Snapshot{Metadata: meta, Data: data})
		got, err := s2.Load()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Metadata, meta) || !bytes.Equal(got.Data, data) {
			t.Fatalf("snapshot changed through a save and load: %+v / %+v", got.Metadata, meta)
		}
	})
}

package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// FuzzDecodeRecord feeds arbitrary bytes and chain values to decodeRecord.
// It must not panic; a record it accepts lies within the buffer and
// encodes back to the same bytes and crc; a zero header ends the records;
// any other rejection is errTorn and says how far the bad record reaches.
func FuzzDecodeRecord(f *testing.F) {
	rec, crc := appendRecord(nil, 0, crcRecord, crcPayload(0))
	rec, _ = appendRecord(rec, crc, entryRecord, pb.AppendEntry(nil, &pb.Entry{Index: 1, Term: 1, Data: []byte("x")}))
	f.Add(rec, uint32(0))
	f.Add(rec[:headerSize+3], uint32(0))
	f.Add(make([]byte, 20), uint32(7))
	f.Add([]byte{1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0, 3}, uint32(0))
	f.Fuzz(func(t *testing.T, buf []byte, prev uint32) {
		typ, payload, size, crc, extent, err := decodeRecord(buf, prev)
		switch {
		case err == nil:
			if size <= headerSize || size > len(buf) || extent != size || size != headerSize+1+len(payload) {
				t.Fatalf("accepted a record of size %d, extent %d, payload %d in %d bytes", size, extent, len(payload), len(buf))
			}
			if typ == 0 || typ > maxRecordType {
				t.Fatalf("accepted record type %d", typ)
			}
			again, crc2 := appendRecord(nil, prev, typ, payload)
			if !bytes.Equal(again, buf[:size]) || crc2 != crc {
				t.Fatalf("record does not encode back to its bytes: %x, was %x", again, buf[:size])
			}
		case errors.Is(err, errEndOfRecords):
			if size != 0 || extent != 0 || crc != prev || !allZero(buf[:min(len(buf), headerSize)]) {
				t.Fatalf("end of records at a header %x (size %d, extent %d)", buf[:min(len(buf), headerSize)], size, extent)
			}
		case errors.Is(err, errTorn):
			if size != 0 || crc != prev || extent <= 0 || extent > headerSize+maxRecordSize+1 {
				t.Fatalf("rejection %v with size %d, extent %d, crc %#x", err, size, extent, crc)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// fuzzSegments returns segment files written by the WAL, as seeds: an
// empty log, one with entries, hard states, snapshots and an overwrite,
// and crash-like variants of it (a preallocated tail, a torn last record,
// and stray bytes after zeros).
func fuzzSegments(tb testing.TB) [][]byte {
	var segs [][]byte
	for _, fill := range []bool{false, true} {
		dir := tb.TempDir()
		w, err := Create(dir, []byte("cluster=1"), Options{SegmentSize: 1 << 20, Logger: quiet()})
		mustT(tb, err)
		if fill {
			mustT(tb, w.Save(pb.HardState{Term: 1, Vote: 1, Commit: 3}, entries(1, 8, 1), true))
			mustT(tb, w.SaveSnapshot(Marker{Index: 3, Term: 1}))
			mustT(tb, w.Save(pb.HardState{Term: 2, Vote: 2, Commit: 5}, entries(6, 9, 2), false))
			mustT(tb, w.SaveSnapshot(Marker{Index: 20, Term: 2, ReplacesLog: true}))
			mustT(tb, w.Save(pb.HardState{Term: 2, Vote: 2, Commit: 20}, entries(21, 23, 2), true))
		}
		mustT(tb, w.Close())
		data, err := os.ReadFile(filepath.Join(dir, segmentName(0, 0)))
		mustT(tb, err)
		segs = append(segs, data)
	}
	full := segs[1]
	segs = append(segs,
		append(bytes.Clone(full), make([]byte, 64)...),
		append(bytes.Clone(full[:len(full)-7]), make([]byte, 64)...),
		append(append(bytes.Clone(full), make([]byte, headerSize)...), 1, 2, 3),
	)
	return segs
}

// FuzzOpenSegment writes arbitrary bytes as the only segment of a WAL and
// opens it. Open must not panic, and must either fail with ErrCorrupt or
// ErrSnapshotNotFound, or return a replay (entries contiguous after the
// marker) and a WAL that takes a new entry and replays everything again.
func FuzzOpenSegment(f *testing.F) {
	for _, seg := range fuzzSegments(f) {
		f.Add(seg)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		mustT(t, os.WriteFile(filepath.Join(dir, segmentName(0, 0)), data, 0o600))
		opts := Options{SegmentSize: 64 << 10, MaxSegments: -1, Logger: quiet()}
		w, rp, err := Open(dir, Marker{}, opts)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSnapshotNotFound) {
				t.Fatalf("open failed with %v, want ErrCorrupt or ErrSnapshotNotFound", err)
			}
			return
		}
		for i, e := range rp.Entries {
			if e.Index != uint64(i+1) {
				w.Close()
				t.Fatalf("replayed entry %d has index %d", i, e.Index)
			}
		}
		next := pb.Entry{Index: uint64(len(rp.Entries)) + 1, Term: 9, Data: []byte("appended after open")}
		if err := w.Save(pb.HardState{}, []pb.Entry{next}, true); err != nil {
			w.Close()
			t.Fatalf("save after a successful open: %v", err)
		}
		mustT(t, w.Close())
		w, rp2, err := Open(dir, Marker{}, opts)
		if err != nil {
			t.Fatalf("reopening a WAL that opened and took an entry: %v", err)
		}
		defer w.Close()
		if !bytes.Equal(rp2.Metadata, rp.Metadata) || rp2.HardState != rp.HardState {
			t.Fatalf("reopened with metadata %q hard state %+v, was %q %+v", rp2.Metadata, rp2.HardState, rp.Metadata, rp.HardState)
		}
		checkEntries(t, rp2.Entries, append(rp.Entries, next))
	})
}

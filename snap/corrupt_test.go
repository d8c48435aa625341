package snap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/synod-db/synod/raft/raftpb"
)

// fileBytes saves sn in a scratch directory and returns the file's bytes.
func fileBytes(t testing.TB, sn pb.Snapshot) []byte {
	t.Helper()
	dir := t.TempDir()
	s := open(t, dir, Options{})
	mustSave(t, s, sn)
	b, err := os.ReadFile(filepath.Join(dir, FileName(sn.Metadata.Term, sn.Metadata.Index)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkCorruptErr checks that err reports a corrupt path in the way users
// need: wrapping ErrCorrupt, naming the file and the offset, which lies in
// [0, limit].
func checkCorruptErr(t testing.TB, err error, path string, limit int64) *CorruptError {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v does not wrap ErrCorrupt", err)
	}
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *CorruptError", err)
	}
	if ce.Path != path {
		t.Fatalf("CorruptError.Path = %s, want %s", ce.Path, path)
	}
	if ce.Offset < 0 || ce.Offset > limit {
		t.Fatalf("CorruptError.Offset = %d, outside [0, %d]: %v", ce.Offset, limit, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprintf("byte offset %d", ce.Offset)) || !strings.Contains(msg, ".broken") {
		t.Fatalf("error message lacks the file, the offset or the advice: %s", msg)
	}
	return ce
}

type damage struct {
	name string
	b    []byte
}

// checkFallback writes older intact and newer damaged into a new directory
// and checks that the damage is detected, reported and moved aside, and that
// the older snapshot is loaded. It returns the *CorruptError ReadFile gave.
func checkFallback(t *testing.T, dir string, older pb.Snapshot, olderBytes []byte, newer pb.SnapshotMetadata, d damage) *CorruptError {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	oldPath := filepath.Join(dir, FileName(older.Metadata.Term, older.Metadata.Index))
	newPath := filepath.Join(dir, FileName(newer.Term, newer.Index))
	if err := os.WriteFile(oldPath, olderBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newPath, d.b, 0o600); err != nil {
		t.Fatal(err)
	}

	_, _, err := ReadFile(newPath)
	ce := checkCorruptErr(t, err, newPath, int64(len(d.b)))

	var logs logBuf
	s, err := New(dir, Options{Logger: newLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Load()
	if err != nil {
		t.Fatalf("%s: Load with an older valid snapshot present: %v", d.name, err)
	}
	checkSnap(t, got, older)
	if _, err := os.Stat(newPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: damaged file still under its name: %v", d.name, err)
	}
	kept, err := os.ReadFile(newPath + brokenSuffix)
	if err != nil {
		t.Fatalf("%s: damaged file not kept as .broken: %v", d.name, err)
	}
	if !bytes.Equal(kept, d.b) {
		t.Fatalf("%s: .broken file differs from the damaged file", d.name)
	}
	if l := logs.String(); !strings.Contains(l, "moved aside") || !strings.Contains(l, newPath) || !strings.Contains(l, "byte offset") {
		t.Fatalf("%s: move aside not logged with file and offset: %s", d.name, l)
	}
	return ce
}

func TestTruncatedAndFlipped(t *testing.T) {
	older := testSnap(1, 10, 50)
	olderBytes := fileBytes(t, older)
	newer := testSnap(2, 20, 300)
	good := fileBytes(t, newer)
	hdr, err := encodeHeader(newer.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	dataOff := int64(len(hdr))
	trOff := int64(len(good) - trailerLen)
	root := t.TempDir()

	t.Run("truncate", func(t *testing.T) {
		for n := 0; n < len(good); n++ {
			checkFallback(t, filepath.Join(root, fmt.Sprint("t", n)), older, olderBytes, newer.Metadata,
				damage{fmt.Sprintf("truncated to %d of %d bytes", n, len(good)), good[:n]})
		}
	})
	t.Run("flip", func(t *testing.T) {
		for off := range good {
			b := bytes.Clone(good)
			bit := byte(1) << (off % 8)
			b[off] ^= bit
			ce := checkFallback(t, filepath.Join(root, fmt.Sprint("f", off)), older, olderBytes, newer.Metadata,
				damage{fmt.Sprintf("bit %#x flipped at offset %d of %d", bit, off, len(good)), b})
			switch o := int64(off); {
			case o >= dataOff && o < trOff:
				if ce.Offset != dataOff {
					t.Fatalf("flip at %d in the data reported at %d, want the data start %d", off, ce.Offset, dataOff)
				}
			case o >= trOff:
				if ce.Offset < trOff {
					t.Fatalf("flip at %d in the trailer reported at %d, before the trailer at %d", off, ce.Offset, trOff)
				}
			}
		}
	})
	t.Run("extend", func(t *testing.T) {
		for _, extra := range [][]byte{{0}, []byte(endMagic), append(bytes.Clone(good[trOff:]), good[trOff:]...)} {
			b := append(bytes.Clone(good), extra...)
			checkFallback(t, filepath.Join(root, fmt.Sprint("e", len(extra))), older, olderBytes, newer.Metadata,
				damage{fmt.Sprintf("%d bytes appended", len(extra)), b})
		}
	})
	t.Run("misnamed", func(t *testing.T) {
		// A valid snapshot under another snapshot's name.
		other := fileBytes(t, testSnap(2, 21, 30))
		ce := checkFallback(t, filepath.Join(root, "m"), older, olderBytes, newer.Metadata, damage{"misnamed", other})
		if !strings.Contains(ce.Reason, "file name") {
			t.Fatalf("misnamed file reported as %v", ce)
		}
	})
	t.Run("not a snapshot", func(t *testing.T) {
		b := bytes.Repeat([]byte("not a snapshot "), 10)
		ce := checkFallback(t, filepath.Join(root, "n"), older, olderBytes, newer.Metadata, damage{"text", b})
		if ce.Offset != 0 {
			t.Fatalf("bad magic reported at %d", ce.Offset)
		}
	})
}

func TestAllCorrupt(t *testing.T) {
	dir := t.TempDir()
	a := testSnap(1, 10, 40)
	b := testSnap(1, 20, 40)
	for _, sn := range []pb.Snapshot{a, b} {
		fb := fileBytes(t, sn)
		if err := os.WriteFile(filepath.Join(dir, FileName(sn.Metadata.Term, sn.Metadata.Index)), fb[:len(fb)-1], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An earlier .broken file of the same name is kept, not overwritten.
	earlier := filepath.Join(dir, FileName(1, 20)+brokenSuffix)
	if err := os.WriteFile(earlier, []byte("earlier evidence"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{})
	_, _, err := s.LoadNewest()
	if !errors.Is(err, ErrNoSnapshot) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadNewest with only corrupt files: %v, want ErrNoSnapshot and ErrCorrupt", err)
	}
	for _, p := range []string{FileName(1, 10), FileName(1, 20)} {
		if !strings.Contains(err.Error(), filepath.Join(dir, p)) {
			t.Errorf("error does not name %s: %v", p, err)
		}
	}
	want := []string{
		FileName(1, 10) + brokenSuffix,
		FileName(1, 20) + brokenSuffix,
		FileName(1, 20) + brokenSuffix + ".1",
	}
	if got := names(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("directory holds %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(earlier); string(b) != "earlier evidence" {
		t.Fatal("earlier .broken file overwritten")
	}
	// Nothing is left to try: an error that does not mention corruption.
	if _, _, err := s.LoadNewest(); !errors.Is(err, ErrNoSnapshot) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("second LoadNewest: %v", err)
	}
}

func TestLoadAtCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	mustSave(t, s, testSnap(1, 10, 40))
	path := filepath.Join(dir, FileName(1, 10))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'X'}, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, _, err = s.LoadAt(1, 10)
	checkCorruptErr(t, err, path, 1000)
	if _, err := os.Stat(path + brokenSuffix); err != nil {
		t.Fatalf("corrupt file not moved aside by LoadAt: %v", err)
	}
}

// TestDamageAfterValidation changes the file between LoadNewest and the
// reading of its data: the reader must report it instead of io.EOF.
func TestDamageAfterValidation(t *testing.T) {
	want := testSnap(1, 10, 3*readBufSize+5)
	hdr, _ := encodeHeader(want.Metadata)
	for _, tc := range []struct {
		name   string
		damage func(f *os.File) error
	}{
		{"flip", func(f *os.File) error {
			_, err := f.WriteAt([]byte{^want.Data[readBufSize+3]}, int64(len(hdr)+readBufSize+3))
			return err
		}},
		{"truncate", func(f *os.File) error { return f.Truncate(int64(len(hdr) + 2*readBufSize)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			mustSave(t, s, want)
			_, r, err := s.LoadNewest()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			path := filepath.Join(dir, FileName(1, 10))
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(f); err != nil {
				t.Fatal(err)
			}
			f.Close()
			_, err = io.Copy(io.Discard, r)
			checkCorruptErr(t, err, path, int64(len(hdr)+len(want.Data)+trailerLen))
			// Reading on repeats the verdict instead of reporting io.EOF.
			if _, err2 := r.Read(make([]byte, 10)); err2 == io.EOF {
				t.Fatal("Read after the corruption verdict returned io.EOF")
			}
		})
	}
}

func TestIOErrorIsNotCorruption(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files regardless of their mode")
	}
	dir := t.TempDir()
	s := open(t, dir, Options{})
	mustSave(t, s, testSnap(1, 10, 40))
	mustSave(t, s, testSnap(1, 20, 40))
	path := filepath.Join(dir, FileName(1, 20))
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.LoadNewest()
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("LoadNewest of an unreadable file: %v, want a plain error", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name the file: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("unreadable file was moved: %v", err)
	}
}

// craft builds a file around raw metadata bytes with correct checksums, to
// reach the checks behind them.
func craft(version byte, meta, data []byte) []byte {
	b := append([]byte(fileMagic), version, 0, 0, 0, 0)
	b[len(fileMagic)+1] = byte(len(meta) >> 24)
	b[len(fileMagic)+2] = byte(len(meta) >> 16)
	b[len(fileMagic)+3] = byte(len(meta) >> 8)
	b[len(fileMagic)+4] = byte(len(meta))
	b = append(b, meta...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	b = append(b, data...)
	return append(b, encodeTrailer(uint64(len(data)), crc32.Checksum(data, castagnoli))...)
}

func TestCraftedHeaders(t *testing.T) {
	meta := func(sn pb.Snapshot) []byte { return pb.AppendSnapshot(nil, &sn) }
	good := meta(pb.Snapshot{Metadata: testMeta(2, 20)})
	for _, tc := range []struct {
		name   string
		file   []byte
		reason string
		cause  error
	}{
		{"newer version", craft(formatVersion+1, good, []byte("data")), "format version", nil},
		{"undecodable metadata", craft(formatVersion, []byte{pb.EncodingVersion, 20}, nil), "does not decode", pb.ErrMalformed},
		{"inline data", craft(formatVersion, meta(pb.Snapshot{Metadata: testMeta(2, 20), Data: []byte("x")}), nil), "inline data", nil},
		{"index 0", craft(formatVersion, meta(pb.Snapshot{Metadata: testMeta(2, 0)}), nil), "index 0", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName(2, 20))
			if err := os.WriteFile(path, tc.file, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := ReadFile(path)
			ce := checkCorruptErr(t, err, path, int64(len(tc.file)))
			if !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("reason %q does not mention %q", ce.Reason, tc.reason)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Fatalf("error %v does not wrap %v", err, tc.cause)
			}
		})
	}
	// The crafted good file is accepted, under any name that is not a
	// snapshot name too (ReadFile serves tools).
	path := filepath.Join(t.TempDir(), "copy.bin")
	if err := os.WriteFile(path, craft(formatVersion, good, []byte("data")), 0o600); err != nil {
		t.Fatal(err)
	}
	m, r, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); string(got) != "data" || m.Index != 20 {
		t.Fatalf("crafted file read as index %d data %q", m.Index, got)
	}
}

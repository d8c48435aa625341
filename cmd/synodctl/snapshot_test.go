package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// snapshotStream returns body followed by its SHA-256 digest, the way a
// server ends a snapshot stream.
func snapshotStream(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(append([]byte{}, body...), sum[:]...)
}

// testBody is a snapshot body of n pseudo-random bytes.
func testBody(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func TestDigestVerifier(t *testing.T) {
	for _, n := range []int{1, 31, 32, 33, 100, 4096, 1<<20 + 7} {
		body := testBody(n)
		good := snapshotStream(body)
		want := sha256.Sum256(body)

		corruptBody := append([]byte{}, good...)
		corruptBody[n/2] ^= 0x01
		corruptDigest := append([]byte{}, good...)
		corruptDigest[len(corruptDigest)-1] ^= 0x80

		// Feed the stream in many shapes: one write, byte by byte, and
		// in odd-sized pieces that straddle the 32-byte window.
		readers := map[string]func([]byte) io.Reader{
			"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
			"one-byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
			"half":     func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
			"chunks-of-7": func(b []byte) io.Reader {
				return &chunkReader{b: b, n: 7}
			},
			"chunks-of-45": func(b []byte) io.Reader {
				return &chunkReader{b: b, n: 45}
			},
		}
		if n > 5000 {
			delete(readers, "one-byte")
			delete(readers, "chunks-of-7")
		}
		for name, mk := range readers {
			v := newDigestVerifier()
			if _, err := io.CopyBuffer(v, mk(good), make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
			sum, err := v.verify()
			if err != nil || !bytes.Equal(sum, want[:]) {
				t.Errorf("n=%d %s: good stream: sum %x, err %v", n, name, sum, err)
			}
			for what, bad := range map[string][]byte{"corrupt body": corruptBody, "corrupt digest": corruptDigest} {
				v := newDigestVerifier()
				if _, err := io.CopyBuffer(v, mk(bad), make([]byte, 64)); err != nil {
					t.Fatal(err)
				}
				_, err := v.verify()
				if !errors.Is(err, errSnapshotDigest) || !strings.Contains(err.Error(), "does not match") {
					t.Errorf("n=%d %s %s: err %v", n, name, what, err)
				}
			}
		}
	}
}

func TestDigestVerifierShortStreams(t *testing.T) {
	for _, n := range []int{0, 1, 31} {
		v := newDigestVerifier()
		v.Write(make([]byte, n))
		if _, err := v.verify(); !errors.Is(err, errSnapshotDigest) || !strings.Contains(err.Error(), "too short") {
			t.Errorf("%d-byte stream: %v", n, err)
		}
	}
	// Exactly a digest (of nothing) is well-formed but holds no snapshot.
	v := newDigestVerifier()
	v.Write(snapshotStream(nil))
	if _, err := v.verify(); !errors.Is(err, errSnapshotDigest) || !strings.Contains(err.Error(), "no data") {
		t.Errorf("digest-only stream: %v", err)
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := min(r.n, len(p), len(r.b))
	copy(p, r.b[:k])
	r.b = r.b[k:]
	return k, nil
}

func TestSaveSnapshot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	stream := snapshotStream(testBody(100000))
	info, err := saveSnapshot(path, bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stream) {
		t.Errorf("the file does not hold the stream as received (digest included)")
	}
	body := sha256.Sum256(stream[:len(stream)-32])
	if info.Size != int64(len(stream)) || info.SHA256 != hex.EncodeToString(body[:]) || info.Path != path {
		t.Errorf("info %+v", info)
	}
	assertOnlyFiles(t, dir, "backup.db")
}

func TestSaveSnapshotCorruptLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	// An earlier snapshot at the path must survive a failed save.
	if err := os.WriteFile(path, []byte("previous"), 0o600); err != nil {
		t.Fatal(err)
	}
	stream := snapshotStream(testBody(5000))
	stream[10] ^= 0xff
	_, err := saveSnapshot(path, bytes.NewReader(stream))
	if !errors.Is(err, errSnapshotDigest) {
		t.Fatalf("err %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "previous" {
		t.Errorf("the previous file was changed to %d bytes", len(b))
	}
	assertOnlyFiles(t, dir, "backup.db")

	// A stream cut short by an error is not saved either.
	_, err = saveSnapshot(path, io.MultiReader(bytes.NewReader(stream[:100]), iotest.ErrReader(errors.New("stream reset"))))
	if err == nil || !strings.Contains(err.Error(), "receiving the snapshot after 100 bytes: stream reset") {
		t.Errorf("err %v", err)
	}
	assertOnlyFiles(t, dir, "backup.db")
}

func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("directory holds %q, want %q (temporary files must not be left behind)", got, names)
	}
}

func TestSnapshotSaveCommand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snap.db")
	s := &fakeServer{snapshot: snapshotStream(testBody(3000))}
	out := runOK(t, s, "snapshot", "save", path)
	if out != "Snapshot saved at "+path+" (3.0 kB at revision 42, SHA-256 verified)\n" {
		t.Errorf("stdout %q", out)
	}
	js := runOK(t, s, "snapshot", "save", path, "-w", "json")
	var info snapshotInfo
	if err := json.Unmarshal([]byte(js), &info); err != nil || info.Size != 3032 || info.Version != "3.7.0" || info.Revision != 42 || len(info.SHA256) != 64 {
		t.Errorf("json %s (%v)", js, err)
	}

	s.snapshot[5] ^= 1
	r := runFail(t, s, "snapshot integrity check failed: the stream's trailing SHA-256 digest", "snapshot", "save", filepath.Join(dir, "bad.db"))
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
	assertOnlyFiles(t, dir, "snap.db")

	runFail(t, s, "snapshot save needs exactly one endpoint", "snapshot", "save", path, "--endpoints=a:1,b:2")
	runFail(t, s, "save expects <file>, got no arguments", "snapshot", "save")
	s.snapshotErr = errors.New("etcdserver: not capable")
	runFail(t, s, "requesting a snapshot: etcdserver: not capable", "snapshot", "save", path)
}

package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/synod-db/synod/raft/raftpb"
)

// FuzzFrames feeds arbitrary bytes to every reader of the wire format: the
// handshake and response readers, the frame reader with the message checks
// of both stream kinds, and the snapshot data reader. None may panic or
// allocate beyond what the input justifies; every failure must be one of
// the documented errors, and whatever a reader accepts must re-encode to
// the same bytes.
func FuzzFrames(f *testing.F) {
	m := app(1, 2, 5, []byte("entry"))
	s := snapMsg(1, 2, 9)
	var seed []byte
	seed = appendMessageFrame(seed, &m, raftpb.MessageSize(&m))
	seed = append(seed, keepaliveFrame...)
	f.Add(seed)
	f.Add(appendMessageFrame(nil, &s, raftpb.MessageSize(&s)))
	snapStream := appendFrame(nil, frameSnapChunk, []byte("abc"))
	snapStream = appendFrame(snapStream, frameSnapEnd, binary.BigEndian.AppendUint64(nil, 3))
	f.Add(snapStream)
	f.Add(appendHandshake(nil, handshake{version: 1, kind: kindMessages, clusterID: 7, from: 1, to: 2}))
	f.Add(appendResponse(nil, response{version: 1, code: codeRemoved, reason: "gone"}))
	f.Add(appendAck(nil, errors.New("no")))
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})

	const maxFrame = 1 << 16
	f.Fuzz(func(t *testing.T, in []byte) {
		readHandshake(bytes.NewReader(in))
		readResponse(bytes.NewReader(in))

		fr := &frameReader{r: bytes.NewReader(in), max: maxFrame}
		for range 64 {
			typ, payload, err := fr.next(nil)
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("frame reader error %v is not io.EOF, ErrProtocol or io.ErrUnexpectedEOF", err)
				}
				break
			}
			if len(payload) > maxFrame {
				t.Fatalf("payload of %d bytes over the limit", len(payload))
			}
			if again := appendFrame(nil, typ, payload); !bytes.Contains(in, again) {
				t.Fatalf("accepted frame does not re-encode to its input")
			}
			switch typ {
			case frameMessage:
				for _, snap := range []bool{false, true} {
					var m raftpb.Message
					if err := decodeMessage(payload, 1, 2, snap, &m); err != nil {
						if !errors.Is(err, ErrProtocol) {
							t.Fatalf("decode error %v does not wrap ErrProtocol", err)
						}
						continue
					}
					if m.From != 1 || m.To != 2 || (m.Type == raftpb.MsgSnap) != snap || m.Type.IsLocal() {
						t.Fatalf("accepted a message the checks forbid: %+v", m)
					}
				}
			case frameSnapAck:
				parseAck(payload)
			}
		}

		sr := &snapshotReader{fr: &frameReader{r: bytes.NewReader(in), max: maxFrame}}
		n, err := io.Copy(io.Discard, sr)
		if err == nil && uint64(n) != sr.total {
			t.Fatalf("snapshot reader returned %d bytes, counted %d", n, sr.total)
		}
		if err != nil && !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("snapshot reader error %v is not ErrProtocol or io.ErrUnexpectedEOF", err)
		}
	})
}

func TestSnapshotReader(t *testing.T) {
	data := randomBytes(t, 2500)
	stream := appendFrame(nil, frameSnapChunk, data[:1000])
	stream = appendFrame(stream, frameSnapChunk, data[1000:2000])
	stream = appendFrame(stream, frameSnapChunk, data[2000:])
	stream = appendFrame(stream, frameSnapEnd, binary.BigEndian.AppendUint64(nil, 2500))
	read := func(in []byte) ([]byte, error) {
		return io.ReadAll(&snapshotReader{fr: &frameReader{r: bytes.NewReader(in), max: 4096}})
	}
	got, err := read(stream)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("intact stream: %d bytes, %v", len(got), err)
	}
	for cut := 0; cut < len(stream); cut += 97 {
		if _, err := read(stream[:cut]); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("stream cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
	for i := 0; i < len(stream); i += 13 {
		bad := bytes.Clone(stream)
		bad[i] ^= 0x40
		if _, err := read(bad); err == nil {
			t.Fatalf("stream with byte %d flipped read without error", i)
		}
	}
	// A missing chunk is caught by the end frame's count.
	skip := appendFrame(nil, frameSnapChunk, data[:1000])
	skip = appendFrame(skip, frameSnapEnd, binary.BigEndian.AppendUint64(nil, 2500))
	if _, err := read(skip); !errors.Is(err, ErrProtocol) {
		t.Fatalf("stream missing chunks: %v, want ErrProtocol", err)
	}
	// drain checks what a consumer left unread.
	sr := &snapshotReader{fr: &frameReader{r: bytes.NewReader(stream), max: 4096}}
	if _, err := sr.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := sr.drain(); err != nil || sr.total != 2500 {
		t.Fatalf("drain: %v after %d bytes", err, sr.total)
	}
	bad := bytes.Clone(stream)
	bad[len(bad)-20] ^= 1
	sr = &snapshotReader{fr: &frameReader{r: bytes.NewReader(bad), max: 4096}}
	if err := sr.drain(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("drain of a damaged stream: %v", err)
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	hs := handshake{version: protocolVersion, kind: kindSnapshot, clusterID: 1 << 60, from: 3, to: 1<<64 - 1, keepalive: 250e6}
	got, err := readHandshake(bytes.NewReader(appendHandshake(nil, hs)))
	if err != nil || got != hs {
		t.Fatalf("handshake round trip: %+v, %v; want %+v", got, err, hs)
	}
	r := response{version: protocolVersion, code: codeWrongMember, clusterID: 5, memberID: 6, keepalive: 1e9, reason: "not me\x00\n"}
	gotr, err := readResponse(bytes.NewReader(appendResponse(nil, r)))
	r.reason = "not me??" // control characters from the network are masked
	if err != nil || gotr != r {
		t.Fatalf("response round trip: %+v, %v; want %+v", gotr, err, r)
	}
	long := response{reason: string(bytes.Repeat([]byte{'x'}, 5000))}
	gotr, err = readResponse(bytes.NewReader(appendResponse(nil, long)))
	if err != nil || len(gotr.reason) != maxReasonLen {
		t.Fatalf("long reason: %d bytes, %v", len(gotr.reason), err)
	}
	if _, err := readHandshake(bytes.NewReader([]byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"))); !errors.Is(err, ErrProtocol) {
		t.Fatalf("HTTP request as handshake: %v", err)
	}
}

package raftpb

import (
	"bytes"
	"reflect"
	"testing"
)

// The fuzz targets share one property, checked by fuzzDecode: decoding
// arbitrary bytes never panics; a failure is an ErrMalformed error naming
// an offset; a success re-encodes to a canonical form that is no longer
// than the input (the decoder accepts overlong varints, the encoder never
// writes them), decodes to an equal value, and re-encodes to the same bytes.

// fuzzSeeds adds the encodings of a few random values of codec c, plus
// degenerate inputs, to the corpus of f.
func fuzzSeeds(f *testing.F, c codec, stream uint64) {
	r := newRand(stream)
	for range 12 {
		f.Add(c.enc(c.gen(r)))
	}
	f.Add([]byte{})
	f.Add([]byte{EncodingVersion})
	f.Add([]byte{EncodingVersion + 1})
}

func fuzzDecode(t *testing.T, c codec, b []byte) {
	v, err := c.dec(b)
	if err != nil {
		checkMalformed(t, err, "decoding %x", b)
		return
	}
	enc := c.enc(v)
	if len(enc) > len(b) {
		t.Fatalf("re-encoding of %x is longer: %x", b, enc)
	}
	v2, err := c.dec(enc)
	if err != nil {
		t.Fatalf("re-encoding %x of %+v does not decode: %v", enc, v, err)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("decode(encode(v)) != v:\n  v = %+v\nv2 = %+v", v, v2)
	}
	if enc2 := c.enc(v2); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not stable: %x then %x", enc, enc2)
	}
}

func codecNamed(name string) codec {
	for _, c := range codecs {
		if c.name == name {
			return c
		}
	}
	panic("no codec " + name)
}

// FuzzUnmarshalMessage checks the decoding property for messages, and that
// MessageSize agrees with the encoding of every decodable message.
func FuzzUnmarshalMessage(f *testing.F) {
	c := codecNamed("Message")
	fuzzSeeds(f, c, 1000)
	m := bigMessage()
	f.Add(AppendMessage(nil, &m))
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzDecode(t, c, b)
		var m Message
		if UnmarshalMessage(b, &m) == nil {
			if n, enc := MessageSize(&m), AppendMessage(nil, &m); n != len(enc) {
				t.Fatalf("MessageSize = %d, encoding has %d bytes", n, len(enc))
			}
		}
	})
}

// FuzzUnmarshalEntry checks the decoding property for entries.
func FuzzUnmarshalEntry(f *testing.F) {
	c := codecNamed("Entry")
	fuzzSeeds(f, c, 1001)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, c, b) })
}

// FuzzUnmarshalSnapshot checks the decoding property for snapshots.
func FuzzUnmarshalSnapshot(f *testing.F) {
	c := codecNamed("Snapshot")
	fuzzSeeds(f, c, 1002)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, c, b) })
}

// FuzzUnmarshalConfChangeV2 checks the decoding property for ConfChangeV2.
func FuzzUnmarshalConfChangeV2(f *testing.F) {
	c := codecNamed("ConfChangeV2")
	fuzzSeeds(f, c, 1003)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, c, b) })
}

// FuzzUnmarshalConfChange checks the decoding property for ConfChange.
func FuzzUnmarshalConfChange(f *testing.F) {
	c := codecNamed("ConfChange")
	fuzzSeeds(f, c, 1004)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, c, b) })
}

// FuzzUnmarshalHardState checks the decoding property for hard states.
func FuzzUnmarshalHardState(f *testing.F) {
	c := codecNamed("HardState")
	fuzzSeeds(f, c, 1005)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, c, b) })
}

// FuzzUnmarshalConfState checks the decoding property for conf states.
func FuzzUnmarshalConfState(f *testing.F) {
	c := codecNamed("ConfState")
	fuzzSeeds(f, c, 1006)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, c, b) })
}

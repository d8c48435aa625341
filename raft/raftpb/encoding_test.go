package raftpb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// testSeed is the fixed seed of every randomized test in this package; a
// failure prints it together with the iteration so it can be replayed.
const testSeed = 20240611

func newRand(stream uint64) *rand.Rand { return rand.New(rand.NewPCG(testSeed, stream)) }

// randUint returns a value biased towards the edges of the varint encoding:
// zero, one-byte values, multi-byte values and the largest ones.
func randUint(r *rand.Rand) uint64 {
	switch r.IntN(7) {
	case 0:
		return 0
	case 1:
		return r.Uint64N(0x80)
	case 2:
		return 0x80 + r.Uint64N(1<<14)
	case 3:
		return math.MaxUint64 - r.Uint64N(4)
	case 4:
		return 1 << r.UintN(64)
	case 5:
		return r.Uint64()
	default:
		return r.Uint64() >> r.UintN(64)
	}
}

// randBytes returns nil, an empty non-nil slice, or random bytes of a length
// whose varint takes one or two bytes.
func randBytes(r *rand.Rand) []byte {
	switch r.IntN(6) {
	case 0:
		return nil
	case 1:
		return []byte{}
	case 2:
		b := make([]byte, 128+r.IntN(200))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	default:
		b := make([]byte, r.IntN(20))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
}

func randIDs(r *rand.Rand) []uint64 {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []uint64{}
	}
	ids := make([]uint64, r.IntN(8))
	for i := range ids {
		ids[i] = randUint(r)
	}
	return ids
}

func randEntry(r *rand.Rand) Entry {
	return Entry{
		Term:  randUint(r),
		Index: randUint(r),
		Type:  EntryType(r.IntN(int(EntryConfChangeV2) + 1)),
		Data:  randBytes(r),
	}
}

func randConfState(r *rand.Rand) ConfState {
	return ConfState{
		Voters:         randIDs(r),
		Learners:       randIDs(r),
		VotersOutgoing: randIDs(r),
		LearnersNext:   randIDs(r),
		AutoLeave:      r.IntN(2) == 0,
	}
}

func randSnapshot(r *rand.Rand) Snapshot {
	return Snapshot{
		Data: randBytes(r),
		Metadata: SnapshotMetadata{
			ConfState: randConfState(r),
			Index:     randUint(r),
			Term:      randUint(r),
		},
	}
}

func randHardState(r *rand.Rand) HardState {
	return HardState{Term: randUint(r), Vote: randUint(r), Commit: randUint(r)}
}

func randMessage(r *rand.Rand) Message {
	m := Message{
		Type:       MessageType(r.IntN(int(msgTypeCount))),
		To:         randUint(r),
		From:       randUint(r),
		Term:       randUint(r),
		LogTerm:    randUint(r),
		Index:      randUint(r),
		Commit:     randUint(r),
		Reject:     r.IntN(2) == 0,
		RejectHint: randUint(r),
		Context:    randBytes(r),
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		m.Entries = []Entry{}
	default:
		m.Entries = make([]Entry, 1+r.IntN(6))
		for i := range m.Entries {
			m.Entries[i] = randEntry(r)
		}
	}
	if r.IntN(3) == 0 {
		s := randSnapshot(r)
		m.Snapshot = &s
	}
	return m
}

func randConfChange(r *rand.Rand) ConfChange {
	return ConfChange{
		Type:    ConfChangeType(r.IntN(int(confChangeTypeCount))),
		NodeID:  randUint(r),
		Context: randBytes(r),
		ID:      randUint(r),
	}
}

func randConfChangeV2(r *rand.Rand) ConfChangeV2 {
	cc := ConfChangeV2{
		Transition: ConfChangeTransition(r.IntN(int(confChangeTransitionCount))),
		Context:    randBytes(r),
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		cc.Changes = []ConfChangeSingle{}
	default:
		cc.Changes = make([]ConfChangeSingle, 1+r.IntN(6))
		for i := range cc.Changes {
			cc.Changes[i] = ConfChangeSingle{
				Type:   ConfChangeType(r.IntN(int(confChangeTypeCount))),
				NodeID: randUint(r),
			}
		}
	}
	return cc
}

// The norm functions return the value a decoder is expected to produce for
// v: the encoding does not tell an empty slice from a nil one, and decoders
// return nil for both.

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func normIDs(ids []uint64) []uint64 {
	if len(ids) == 0 {
		return nil
	}
	return ids
}

func normEntry(e Entry) Entry {
	e.Data = normBytes(e.Data)
	return e
}

func normConfState(cs ConfState) ConfState {
	cs.Voters = normIDs(cs.Voters)
	cs.Learners = normIDs(cs.Learners)
	cs.VotersOutgoing = normIDs(cs.VotersOutgoing)
	cs.LearnersNext = normIDs(cs.LearnersNext)
	return cs
}

func normSnapshot(s Snapshot) Snapshot {
	s.Data = normBytes(s.Data)
	s.Metadata.ConfState = normConfState(s.Metadata.ConfState)
	return s
}

func normMessage(m Message) Message {
	m.Context = normBytes(m.Context)
	if len(m.Entries) == 0 {
		m.Entries = nil
	} else {
		es := make([]Entry, len(m.Entries))
		for i, e := range m.Entries {
			es[i] = normEntry(e)
		}
		m.Entries = es
	}
	if m.Snapshot != nil {
		s := normSnapshot(*m.Snapshot)
		m.Snapshot = &s
	}
	return m
}

func normConfChange(cc ConfChange) ConfChange {
	cc.Context = normBytes(cc.Context)
	return cc
}

func normConfChangeV2(cc ConfChangeV2) ConfChangeV2 {
	cc.Context = normBytes(cc.Context)
	if len(cc.Changes) == 0 {
		cc.Changes = nil
	}
	return cc
}

// codec describes one encoded type uniformly, so that the generic tests
// (round trip, truncation, trailing bytes, version) run over all of them.
type codec struct {
	name string
	gen  func(r *rand.Rand) any
	// enc encodes v into a fresh buffer.
	enc func(v any) []byte
	// app appends the encoding of v to dst; nil for types without an
	// Append function.
	app func(dst []byte, v any) []byte
	dec func(b []byte) (any, error)
	// norm returns what dec is expected to return for v.
	norm func(v any) any
}

var codecs = []codec{
	{
		name: "Message",
		gen:  func(r *rand.Rand) any { return randMessage(r) },
		enc:  func(v any) []byte { m := v.(Message); return AppendMessage(nil, &m) },
		app:  func(dst []byte, v any) []byte { m := v.(Message); return AppendMessage(dst, &m) },
		dec: func(b []byte) (any, error) {
			var m Message
			err := UnmarshalMessage(b, &m)
			return m, err
		},
		norm: func(v any) any { return normMessage(v.(Message)) },
	},
	{
		name: "Entry",
		gen:  func(r *rand.Rand) any { return randEntry(r) },
		enc:  func(v any) []byte { e := v.(Entry); return AppendEntry(nil, &e) },
		app:  func(dst []byte, v any) []byte { e := v.(Entry); return AppendEntry(dst, &e) },
		dec: func(b []byte) (any, error) {
			var e Entry
			err := UnmarshalEntry(b, &e)
			return e, err
		},
		norm: func(v any) any { return normEntry(v.(Entry)) },
	},
	{
		name: "HardState",
		gen:  func(r *rand.Rand) any { return randHardState(r) },
		enc:  func(v any) []byte { return AppendHardState(nil, v.(HardState)) },
		app:  func(dst []byte, v any) []byte { return AppendHardState(dst, v.(HardState)) },
		dec:  func(b []byte) (any, error) { return UnmarshalHardState(b) },
		norm: func(v any) any { return v },
	},
	{
		name: "ConfState",
		gen:  func(r *rand.Rand) any { return randConfState(r) },
		enc:  func(v any) []byte { cs := v.(ConfState); return AppendConfState(nil, &cs) },
		app:  func(dst []byte, v any) []byte { cs := v.(ConfState); return AppendConfState(dst, &cs) },
		dec:  func(b []byte) (any, error) { return UnmarshalConfState(b) },
		norm: func(v any) any { return normConfState(v.(ConfState)) },
	},
	{
		name: "Snapshot",
		gen:  func(r *rand.Rand) any { return randSnapshot(r) },
		enc:  func(v any) []byte { s := v.(Snapshot); return AppendSnapshot(nil, &s) },
		app:  func(dst []byte, v any) []byte { s := v.(Snapshot); return AppendSnapshot(dst, &s) },
		dec:  func(b []byte) (any, error) { return UnmarshalSnapshot(b) },
		norm: func(v any) any { return normSnapshot(v.(Snapshot)) },
	},
	{
		name: "ConfChange",
		gen:  func(r *rand.Rand) any { return randConfChange(r) },
		enc:  func(v any) []byte { return MarshalConfChange(v.(ConfChange)) },
		dec:  func(b []byte) (any, error) { return UnmarshalConfChange(b) },
		norm: func(v any) any { return normConfChange(v.(ConfChange)) },
	},
	{
		name: "ConfChangeV2",
		gen:  func(r *rand.Rand) any { return randConfChangeV2(r) },
		enc:  func(v any) []byte { return MarshalConfChangeV2(v.(ConfChangeV2)) },
		dec:  func(b []byte) (any, error) { return UnmarshalConfChangeV2(b) },
		norm: func(v any) any { return normConfChangeV2(v.(ConfChangeV2)) },
	},
}

// codecFor returns the codec of v's type.
func codecFor(t *testing.T, v any) *codec {
	t.Helper()
	for i := range codecs {
		if reflect.TypeOf(codecs[i].gen(newRand(0))) == reflect.TypeOf(v) {
			return &codecs[i]
		}
	}
	t.Fatalf("no codec for %T", v)
	return nil
}

var offsetRE = regexp.MustCompile(`at offset (\d+)`)

// checkMalformed fails unless err is a decoding error as documented: it
// wraps ErrMalformed and names the offset of the problem.
func checkMalformed(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err == nil {
		t.Fatalf(format+": decoding succeeded, want an error", args...)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf(format+": error %q does not wrap ErrMalformed", append(args, err)...)
	}
	if !offsetRE.MatchString(err.Error()) {
		t.Fatalf(format+": error %q does not mention an offset", append(args, err)...)
	}
}

// TestRoundTripRandom checks, for every encoded type and many random values
// (including nil and empty fields, extreme varints, messages with and
// without snapshot), that decoding the encoding returns the value, that
// appending to a non-empty buffer keeps the prefix, and that re-encoding
// the decoded value gives the same bytes.
func TestRoundTripRandom(t *testing.T) {
	for ci, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			r := newRand(uint64(ci))
			for i := range 3000 {
				v := c.gen(r)
				b := c.enc(v)
				got, err := c.dec(b)
				if err != nil {
					t.Fatalf("seed %d iteration %d: decoding %+v: %v", testSeed, i, v, err)
				}
				if want := c.norm(v); !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d iteration %d: round trip\n got %+v\nwant %+v", testSeed, i, got, want)
				}
				if again := c.enc(got); !bytes.Equal(again, b) {
					t.Fatalf("seed %d iteration %d: re-encoding differs:\n got %x\nwant %x", testSeed, i, again, b)
				}
				if c.app != nil {
					prefix := []byte("prefix")
					out := c.app(append([]byte(nil), prefix...), v)
					if !bytes.HasPrefix(out, prefix) || !bytes.Equal(out[len(prefix):], b) {
						t.Fatalf("seed %d iteration %d: append to a non-empty buffer gave %x, want %x after the prefix", testSeed, i, out, b)
					}
				}
			}
		})
	}
}

// TestRoundTripEdgeValues checks hand-picked values: the zero value of each
// type, every field at its maximum, an empty (but present) snapshot, and
// entries without data.
func TestRoundTripEdgeValues(t *testing.T) {
	const mx = math.MaxUint64
	maxCS := ConfState{Voters: []uint64{mx, 0, 1}, Learners: []uint64{mx}, VotersOutgoing: []uint64{0}, LearnersNext: []uint64{mx - 1}, AutoLeave: true}
	values := []any{
		Message{},
		Message{Snapshot: &Snapshot{}},
		Message{Entries: []Entry{{}, {}, {}}},
		Message{
			Type: MsgPreVoteResp, To: mx, From: mx, Term: mx, LogTerm: mx, Index: mx, Commit: mx,
			Reject: true, RejectHint: mx, Context: bytes.Repeat([]byte{0xff}, 1000),
			Entries:  []Entry{{Term: mx, Index: mx, Type: EntryConfChangeV2, Data: []byte{0}}},
			Snapshot: &Snapshot{Data: []byte{1, 2}, Metadata: SnapshotMetadata{ConfState: maxCS, Index: mx, Term: mx}},
		},
		Entry{},
		Entry{Term: mx, Index: mx, Type: EntryConfChange, Data: make([]byte, 1<<16)},
		HardState{},
		HardState{Term: mx, Vote: mx, Commit: mx},
		ConfState{},
		maxCS,
		Snapshot{},
		Snapshot{Metadata: SnapshotMetadata{ConfState: maxCS, Index: mx, Term: mx}},
		ConfChange{},
		ConfChange{Type: ConfChangeAddLearnerNode, NodeID: mx, ID: mx, Context: []byte("ctx")},
		ConfChangeV2{},
		ConfChangeV2{Transition: ConfChangeTransitionJointExplicit, Changes: []ConfChangeSingle{{ConfChangeAddLearnerNode, mx}, {}}, Context: []byte{0}},
	}
	for i, v := range values {
		c := codecFor(t, v)
		got, err := c.dec(c.enc(v))
		if err != nil {
			t.Fatalf("value %d (%+v): %v", i, v, err)
		}
		if want := c.norm(v); !reflect.DeepEqual(got, want) {
			t.Fatalf("value %d: round trip\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// TestSnapshotPresence checks that the presence of a snapshot survives the
// round trip independently of its content: nil stays nil and a zero
// snapshot stays non-nil.
func TestSnapshotPresence(t *testing.T) {
	for _, m := range []Message{{Type: MsgSnap}, {Type: MsgSnap, Snapshot: &Snapshot{}}} {
		var got Message
		if err := UnmarshalMessage(AppendMessage(nil, &m), &got); err != nil {
			t.Fatal(err)
		}
		if (got.Snapshot == nil) != (m.Snapshot == nil) {
			t.Fatalf("snapshot presence: sent %v, decoded %v", m.Snapshot != nil, got.Snapshot != nil)
		}
	}
}

// TestUnmarshalMessageResetsTarget checks that decoding into a Message that
// already holds values replaces all of them, so that a reused Message does
// not leak fields from the previous one.
func TestUnmarshalMessageResetsTarget(t *testing.T) {
	m := Message{
		Type: MsgApp, To: 9, Reject: true, Context: []byte("old"),
		Entries: []Entry{{Index: 1}}, Snapshot: &Snapshot{Data: []byte("s")},
	}
	small := Message{Type: MsgHeartbeat, To: 2}
	if err := UnmarshalMessage(AppendMessage(nil, &small), &m); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, small) {
		t.Fatalf("decoded %+v, want %+v", m, small)
	}
}

// TestMessageSize checks that MessageSize is the exact length of the
// encoding for random messages, and that MarshalMessage returns a buffer of
// exactly that capacity holding the same bytes as AppendMessage.
func TestMessageSize(t *testing.T) {
	r := newRand(100)
	for i := range 3000 {
		m := randMessage(r)
		b := AppendMessage(nil, &m)
		if n := MessageSize(&m); n != len(b) {
			t.Fatalf("seed %d iteration %d: MessageSize = %d, encoding has %d bytes (%+v)", testSeed, i, n, len(b), m)
		}
		mb := MarshalMessage(&m)
		if !bytes.Equal(mb, b) || cap(mb) != len(b) {
			t.Fatalf("seed %d iteration %d: MarshalMessage gave len %d cap %d, want the %d bytes of AppendMessage", testSeed, i, len(mb), cap(mb), len(b))
		}
	}
}

// bigMessage is a typical large append: several entries, a context and a
// snapshot, so that every encoding path runs.
func bigMessage() Message {
	return Message{
		Type: MsgApp, To: 2, From: 1, Term: 7, LogTerm: 7, Index: 1000, Commit: 999, RejectHint: 300,
		Context: []byte("ctx"),
		Entries: []Entry{
			{Term: 7, Index: 1001, Data: bytes.Repeat([]byte("a"), 128)},
			{Term: 7, Index: 1002, Type: EntryConfChangeV2, Data: bytes.Repeat([]byte("b"), 300)},
			{Term: 7, Index: 1003},
		},
		Snapshot: &Snapshot{
			Data:     bytes.Repeat([]byte("s"), 64),
			Metadata: SnapshotMetadata{Index: 900, Term: 6, ConfState: ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
		},
	}
}

// TestAppendMessageNoAlloc checks the documented promise that AppendMessage
// into a buffer with enough capacity, and MessageSize, do not allocate.
func TestAppendMessageNoAlloc(t *testing.T) {
	m := bigMessage()
	buf := make([]byte, 0, 4096)
	if a := testing.AllocsPerRun(100, func() { buf = AppendMessage(buf[:0], &m) }); a != 0 {
		t.Fatalf("AppendMessage into a reused buffer made %v allocations per run, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() { _ = MessageSize(&m) }); a != 0 {
		t.Fatalf("MessageSize made %v allocations per run, want 0", a)
	}
	// The other append functions make the same promise implicitly.
	e, hs, cs, s := m.Entries[0], HardState{Term: 1, Vote: 2, Commit: 3}, m.Snapshot.Metadata.ConfState, *m.Snapshot
	if a := testing.AllocsPerRun(100, func() {
		buf = AppendEntry(buf[:0], &e)
		buf = AppendHardState(buf, hs)
		buf = AppendConfState(buf, &cs)
		buf = AppendSnapshot(buf, &s)
	}); a != 0 {
		t.Fatalf("AppendEntry/HardState/ConfState/Snapshot into a reused buffer made %v allocations per run, want 0", a)
	}
}

// TestDecodeTruncated checks that every strict prefix of a valid encoding,
// including the empty input, is refused with a malformed-input error (and
// does not panic).
func TestDecodeTruncated(t *testing.T) {
	for ci, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			r := newRand(200 + uint64(ci))
			for i := range 300 {
				v := c.gen(r)
				b := c.enc(v)
				for n := range len(b) {
					_, err := c.dec(b[:n:n])
					checkMalformed(t, err, "seed %d iteration %d: prefix of %d of %d bytes", testSeed, i, n, len(b))
				}
			}
		})
	}
}

// TestDecodeTrailingBytes checks that bytes after a complete value are
// refused, and that the error points at the first extra byte.
func TestDecodeTrailingBytes(t *testing.T) {
	for ci, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			r := newRand(300 + uint64(ci))
			for i := range 200 {
				b := c.enc(c.gen(r))
				n := len(b)
				for _, extra := range [][]byte{{0}, {EncodingVersion}, {1, 2, 3}} {
					_, err := c.dec(append(b[:n:n], extra...))
					checkMalformed(t, err, "seed %d iteration %d: %d trailing bytes", testSeed, i, len(extra))
					if !strings.Contains(err.Error(), "trailing") || offsetRE.FindStringSubmatch(err.Error())[1] != strconv.Itoa(n) {
						t.Fatalf("seed %d iteration %d: error %q should report trailing bytes at offset %d", testSeed, i, err, n)
					}
				}
			}
		})
	}
}

// TestDecodeWrongVersion checks that a value whose version byte is not
// EncodingVersion is refused at offset 0, with an error naming the version.
func TestDecodeWrongVersion(t *testing.T) {
	for ci, c := range codecs {
		r := newRand(400 + uint64(ci))
		b := c.enc(c.gen(r))
		for _, v := range []byte{0, EncodingVersion + 1, 0xff} {
			bad := append([]byte(nil), b...)
			bad[0] = v
			_, err := c.dec(bad)
			checkMalformed(t, err, "%s with version %d", c.name, v)
			if !strings.Contains(err.Error(), "version") || !strings.Contains(err.Error(), "at offset 0") {
				t.Fatalf("%s with version %d: error %q should name the version at offset 0", c.name, v, err)
			}
		}
	}
}

// uv is shorthand for the varint encoding of v in hand-built inputs.
func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// zeroMsgHead is the encoding of a zero Message up to (excluding) the entry
// count: version, type, flags, seven zero varints, an empty context.
var zeroMsgHead = []byte{EncodingVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// overflow is a varint that does not fit in 64 bits.
var overflow = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}

// TestDecodeErrors checks hand-built malformed inputs: each must be refused
// with an ErrMalformed error that names the problem and the exact offset of
// the offending byte.
func TestDecodeErrors(t *testing.T) {
	msg := func(b []byte) error { var m Message; return UnmarshalMessage(b, &m) }
	ent := func(b []byte) error { var e Entry; return UnmarshalEntry(b, &e) }
	hs := func(b []byte) error { _, err := UnmarshalHardState(b); return err }
	cs := func(b []byte) error { _, err := UnmarshalConfState(b); return err }
	snap := func(b []byte) error { _, err := UnmarshalSnapshot(b); return err }
	cc := func(b []byte) error { _, err := UnmarshalConfChange(b); return err }
	cc2 := func(b []byte) error { _, err := UnmarshalConfChangeV2(b); return err }
	tests := []struct {
		name   string
		dec    func([]byte) error
		in     []byte
		substr string
		offset int
	}{
		{"empty message", msg, nil, "unexpected end of input", 0},
		{"empty entry", ent, []byte{}, "unexpected end of input", 0},
		{"empty hard state", hs, nil, "unexpected end of input", 0},
		{"empty conf state", cs, nil, "unexpected end of input", 0},
		{"empty snapshot", snap, nil, "unexpected end of input", 0},
		{"empty conf change", cc, nil, "unexpected end of input", 0},
		{"empty conf change v2", cc2, nil, "unexpected end of input", 0},
		{"message type out of range", msg, cat([]byte{EncodingVersion, byte(msgTypeCount)}, zeroMsgHead[2:], uv(0)), "unknown message type 19", 1},
		{"message type 255", msg, cat([]byte{EncodingVersion, 0xff}, zeroMsgHead[2:], uv(0)), "unknown message type 255", 1},
		{"message unknown flag", msg, cat([]byte{EncodingVersion, byte(MsgApp), 0x04}, zeroMsgHead[3:], uv(0)), "unknown message flags 0x4", 2},
		{"message varint overflow", msg, cat(zeroMsgHead[:3], overflow), "bad varint", 3},
		{"message context longer than input", msg, cat(zeroMsgHead[:10], uv(5), []byte{1, 2}), "longer than the remaining 2 bytes", 11},
		{"message entry type", msg, cat(zeroMsgHead, uv(1), []byte{1, 2, 3, 0}), "unknown entry type 3", 14},
		{"message snapshot flag without snapshot", msg, cat([]byte{EncodingVersion, 0, flagHasSnapshot}, zeroMsgHead[3:], uv(0)), "bad varint", 12},
		{"message snapshot conf state flag", msg, cat([]byte{EncodingVersion, 0, flagHasSnapshot}, zeroMsgHead[3:], uv(0), []byte{5, 6, 0, 0, 0, 0, 0x80, 0}), "unknown conf state flags 0x80", 18},
		{"entry type", ent, []byte{EncodingVersion, 5, 6, 3, 0}, "unknown entry type 3", 3},
		{"entry data truncated", ent, []byte{EncodingVersion, 5, 6, 0, 3, 1}, "longer than the remaining 1 bytes", 5},
		{"hard state overflow", hs, cat([]byte{EncodingVersion}, overflow, uv(0), uv(0)), "bad varint", 1},
		{"hard state 11-byte varint", hs, cat([]byte{EncodingVersion, 0, 0}, bytes.Repeat([]byte{0x80}, 10), []byte{0}), "bad varint", 3},
		{"conf state flags", cs, []byte{EncodingVersion, 0, 0, 0, 0, 2}, "unknown conf state flags 0x2", 5},
		{"conf state id truncated", cs, []byte{EncodingVersion, 2, 1, 0x80}, "bad varint", 3},
		{"snapshot data truncated", snap, []byte{EncodingVersion, 1, 1, 0, 0, 0, 0, 0, 4, 9}, "longer than the remaining 1 bytes", 9},
		{"conf change type", cc, []byte{EncodingVersion, byte(confChangeTypeCount), 1, 1, 0}, "unknown conf change type 4", 1},
		{"conf change v2 transition", cc2, []byte{EncodingVersion, byte(confChangeTransitionCount), 0, 0}, "unknown conf change transition 3", 1},
		{"conf change v2 change type", cc2, []byte{EncodingVersion, 0, 2, 0, 1, 9, 1, 0}, "unknown conf change type 9", 5},
		{"conf change v2 too many changes", cc2, []byte{EncodingVersion, 0, 3, 0, 1, 0, 1, 0}, "list of 3 elements", 3},
	}
	for _, tt := range tests {
		err := tt.dec(tt.in)
		checkMalformed(t, err, "%s", tt.name)
		if !strings.Contains(err.Error(), tt.substr) {
			t.Errorf("%s: error %q does not contain %q", tt.name, err, tt.substr)
		}
		if got := offsetRE.FindStringSubmatch(err.Error())[1]; got != strconv.Itoa(tt.offset) {
			t.Errorf("%s: error %q reports offset %s, want %d", tt.name, err, got, tt.offset)
		}
	}
}

// TestDecodeHugeLengths checks that declared lengths far beyond the input
// (for byte strings, entry lists, ID lists and change lists) are refused
// before anything of that size is allocated.
func TestDecodeHugeLengths(t *testing.T) {
	pad := make([]byte, 64)
	inputs := map[string]func(n uint64) error{
		"message context": func(n uint64) error {
			var m Message
			return UnmarshalMessage(cat(zeroMsgHead[:10], uv(n), pad), &m)
		},
		"message entries": func(n uint64) error {
			var m Message
			return UnmarshalMessage(cat(zeroMsgHead, uv(n), pad), &m)
		},
		"entry data": func(n uint64) error {
			var e Entry
			return UnmarshalEntry(cat([]byte{EncodingVersion, 1, 1, 0}, uv(n), pad), &e)
		},
		"conf state voters": func(n uint64) error {
			_, err := UnmarshalConfState(cat([]byte{EncodingVersion}, uv(n), pad))
			return err
		},
		"conf state learners next": func(n uint64) error {
			_, err := UnmarshalConfState(cat([]byte{EncodingVersion, 0, 0, 0}, uv(n), pad))
			return err
		},
		"snapshot data": func(n uint64) error {
			_, err := UnmarshalSnapshot(cat([]byte{EncodingVersion, 1, 1, 0, 0, 0, 0, 0}, uv(n), pad))
			return err
		},
		"conf change context": func(n uint64) error {
			_, err := UnmarshalConfChange(cat([]byte{EncodingVersion, 0, 1, 1}, uv(n), pad))
			return err
		},
		"conf change v2 changes": func(n uint64) error {
			_, err := UnmarshalConfChangeV2(cat([]byte{EncodingVersion, 0}, uv(n), pad))
			return err
		},
	}
	for name, dec := range inputs {
		for _, n := range []uint64{uint64(len(pad)) + 1, 1 << 20, 1 << 31, 1 << 62, math.MaxUint64} {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range 10 {
				checkMalformed(t, dec(n), "%s with declared length %d", name, n)
			}
			runtime.ReadMemStats(&after)
			// Ten decodings of a 1<<20-element list would take tens of
			// megabytes; the error path needs a few hundred bytes each.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("%s with declared length %d: allocated %d bytes for 10 decodings", name, n, grew)
			}
		}
	}
}

// TestEveryErrorIsMalformed flips random bytes in random valid encodings and
// checks that every decoder either succeeds or returns an ErrMalformed error
// with an offset; it never panics.
func TestEveryErrorIsMalformed(t *testing.T) {
	for ci, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			r := newRand(500 + uint64(ci))
			failures := 0
			for i := range 3000 {
				b := c.enc(c.gen(r))
				for range 1 + r.IntN(3) {
					b[r.IntN(len(b))] = byte(r.Uint32())
				}
				if _, err := c.dec(b); err != nil {
					failures++
					checkMalformed(t, err, "seed %d iteration %d: corrupted %x", testSeed, i, b)
				}
			}
			if failures == 0 {
				t.Fatalf("no corrupted input was refused; the test does not exercise the error paths")
			}
		})
	}
}

// TestConfChangesFromString checks the terse conf change syntax: each token
// kind, whitespace handling, the empty string, and every way a token can be
// wrong.
func TestConfChangesFromString(t *testing.T) {
	got, err := ConfChangesFromString("  v1 l2\tr3\nu4 v18446744073709551615 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []ConfChangeSingle{
		{ConfChangeAddNode, 1}, {ConfChangeAddLearnerNode, 2}, {ConfChangeRemoveNode, 3},
		{ConfChangeUpdateNode, 4}, {ConfChangeAddNode, math.MaxUint64},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got, err := ConfChangesFromString(" "); err != nil || got != nil {
		t.Fatalf("blank input: got %v, %v; want nil, nil", got, err)
	}
	for _, bad := range []string{"v", "x1", "V1", "v1 q2", "vx", "v-1", "v18446744073709551616", "1"} {
		if got, err := ConfChangesFromString(bad); err == nil || !strings.Contains(err.Error(), "conf change token") {
			t.Errorf("%q: got %v, %v; want a conf change token error", bad, got, err)
		}
	}
}

// TestConfChangeV2EnterLeaveJoint checks which ConfChangeV2 values enter a
// joint configuration (and with which auto-leave), and which leave one.
func TestConfChangeV2EnterLeaveJoint(t *testing.T) {
	one := []ConfChangeSingle{{ConfChangeAddNode, 1}}
	two := []ConfChangeSingle{{ConfChangeAddNode, 1}, {ConfChangeAddNode, 2}}
	tests := []struct {
		cc                  ConfChangeV2
		wantAuto, wantEnter bool
		wantLeave           bool
	}{
		{ConfChangeV2{}, false, false, true},
		{ConfChangeV2{Context: []byte("x")}, false, false, false},
		{ConfChangeV2{Changes: []ConfChangeSingle{}}, false, false, true},
		{ConfChangeV2{Changes: one}, false, false, false},
		{ConfChangeV2{Changes: two}, true, true, false},
		{ConfChangeV2{Transition: ConfChangeTransitionJointImplicit}, true, true, false},
		{ConfChangeV2{Transition: ConfChangeTransitionJointImplicit, Changes: one}, true, true, false},
		{ConfChangeV2{Transition: ConfChangeTransitionJointExplicit, Changes: one}, false, true, false},
		{ConfChangeV2{Transition: ConfChangeTransitionJointExplicit, Changes: two}, false, true, false},
		{ConfChangeV2{Transition: ConfChangeTransitionJointExplicit}, false, true, false},
		{ConfChangeV2{Transition: confChangeTransitionCount, Changes: two}, false, false, false},
	}
	for i, tt := range tests {
		auto, ok := tt.cc.EnterJoint()
		if auto != tt.wantAuto || ok != tt.wantEnter {
			t.Errorf("%d: %+v.EnterJoint() = %v, %v; want %v, %v", i, tt.cc, auto, ok, tt.wantAuto, tt.wantEnter)
		}
		if got := tt.cc.LeaveJoint(); got != tt.wantLeave {
			t.Errorf("%d: %+v.LeaveJoint() = %v, want %v", i, tt.cc, got, tt.wantLeave)
		}
	}
}

// TestConfChangeForms checks the conversions between ConfChange and
// ConfChangeV2 through the ConfChangeI interface.
func TestConfChangeForms(t *testing.T) {
	v1 := ConfChange{Type: ConfChangeRemoveNode, NodeID: 3, Context: []byte("c"), ID: 77}
	if got, ok := v1.AsV1(); !ok || !reflect.DeepEqual(got, v1) {
		t.Fatalf("AsV1 of a ConfChange = %+v, %v", got, ok)
	}
	want := ConfChangeV2{Changes: []ConfChangeSingle{{ConfChangeRemoveNode, 3}}, Context: []byte("c")}
	if got := v1.AsV2(); !reflect.DeepEqual(got, want) {
		t.Fatalf("AsV2 = %+v, want %+v", got, want)
	}
	if _, ok := want.AsV1(); ok {
		t.Fatalf("a ConfChangeV2 claims a single-change form")
	}
	if got := want.AsV2(); !reflect.DeepEqual(got, want) {
		t.Fatalf("AsV2 of a ConfChangeV2 = %+v, want itself", got)
	}
}

// TestToEntryRoundTrip checks that ToEntry picks the entry type matching
// the conf change form and that ConfChangeFromEntry gives the change back;
// entries of other types or with bad data are refused.
func TestToEntryRoundTrip(t *testing.T) {
	r := newRand(600)
	for i := range 500 {
		var cc ConfChangeI
		wantType := EntryConfChange
		if i%2 == 0 {
			cc = randConfChange(r)
		} else {
			cc = randConfChangeV2(r)
			wantType = EntryConfChangeV2
		}
		e := ToEntry(cc)
		if e.Type != wantType {
			t.Fatalf("iteration %d: ToEntry(%T) has type %s, want %s", i, cc, e.Type, wantType)
		}
		got, err := ConfChangeFromEntry(e)
		if err != nil {
			t.Fatalf("seed %d iteration %d: %v", testSeed, i, err)
		}
		var want any
		switch v := cc.(type) {
		case ConfChange:
			want = normConfChange(v)
		case ConfChangeV2:
			want = normConfChangeV2(v)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d iteration %d: got %+v, want %+v", testSeed, i, got, want)
		}
	}
	if _, err := ConfChangeFromEntry(Entry{Index: 5, Type: EntryNormal}); err == nil || !strings.Contains(err.Error(), "not a conf change") {
		t.Fatalf("normal entry: err = %v, want a not-a-conf-change error", err)
	}
	for _, typ := range []EntryType{EntryConfChange, EntryConfChangeV2} {
		_, err := ConfChangeFromEntry(Entry{Type: typ, Data: []byte{EncodingVersion, 0xee}})
		checkMalformed(t, err, "bad %s data", typ)
	}
}

// TestConfStateEquivalent checks that Equivalent ignores the order of IDs
// but notices any other difference in any field, and that it is symmetric
// even for lists with repeated IDs.
func TestConfStateEquivalent(t *testing.T) {
	base := ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: true}
	same := ConfState{Voters: []uint64{3, 1, 2}, Learners: []uint64{4}, VotersOutgoing: []uint64{5, 1}, LearnersNext: []uint64{5}, AutoLeave: true}
	if err := base.Equivalent(same); err != nil {
		t.Fatalf("reordered IDs: %v", err)
	}
	if err := (ConfState{}).Equivalent(ConfState{Voters: []uint64{}, Learners: []uint64{}}); err != nil {
		t.Fatalf("nil and empty lists: %v", err)
	}
	differ := []ConfState{
		{Voters: []uint64{1, 2}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: true},
		{Voters: []uint64{1, 2, 6}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: true},
		{Voters: []uint64{1, 2, 3}, Learners: nil, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: true},
		{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, VotersOutgoing: []uint64{1}, LearnersNext: []uint64{5}, AutoLeave: true},
		{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: nil, AutoLeave: true},
		{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: false},
		{Voters: []uint64{1, 2, 2}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: true},
		{Voters: []uint64{1, 1, 2}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: true},
	}
	for i, other := range differ {
		if err := base.Equivalent(other); err == nil {
			t.Errorf("%d: %+v reported equivalent to %+v", i, other, base)
		}
		if err := other.Equivalent(base); err == nil {
			t.Errorf("%d (reversed): %+v reported equivalent to %+v", i, base, other)
		}
	}
	dup := ConfState{Voters: []uint64{1, 1, 2}}
	if err := dup.Equivalent(ConfState{Voters: []uint64{2, 1, 1}}); err != nil {
		t.Errorf("same multiset of IDs in another order: %v", err)
	}
}

// TestTypeHelpers checks the small methods on the enum and state types:
// names (including out-of-range values), validity, locality, response
// classification, vote response types and emptiness.
func TestTypeHelpers(t *testing.T) {
	if got := MsgPreVoteResp.String(); got != "MsgPreVoteResp" {
		t.Errorf("MsgPreVoteResp.String() = %q", got)
	}
	if got := msgTypeCount.String(); got != "MessageType(19)" {
		t.Errorf("out-of-range message type prints %q", got)
	}
	for mt := range MessageType(255) {
		if mt.Valid() != (mt < msgTypeCount) {
			t.Errorf("%v.Valid() = %v", mt, mt.Valid())
		}
	}
	local := map[MessageType]bool{MsgHup: true, MsgBeat: true, MsgUnreachable: true, MsgSnapStatus: true, MsgCheckQuorum: true}
	resp := map[MessageType]bool{MsgAppResp: true, MsgVoteResp: true, MsgHeartbeatResp: true, MsgUnreachable: true, MsgPreVoteResp: true}
	for mt := range msgTypeCount {
		if mt.IsLocal() != local[mt] {
			t.Errorf("%v.IsLocal() = %v", mt, mt.IsLocal())
		}
		if mt.IsResponse() != resp[mt] {
			t.Errorf("%v.IsResponse() = %v", mt, mt.IsResponse())
		}
	}
	if VoteResponseType(MsgPreVote) != MsgPreVoteResp || VoteResponseType(MsgVote) != MsgVoteResp {
		t.Errorf("VoteResponseType is wrong")
	}
	for typ, want := range map[EntryType]string{EntryNormal: "EntryNormal", EntryConfChange: "EntryConfChange", EntryConfChangeV2: "EntryConfChangeV2", 3: "EntryType(3)"} {
		if got := typ.String(); got != want {
			t.Errorf("EntryType %d prints %q, want %q", uint8(typ), got, want)
		}
	}
	for typ, want := range map[ConfChangeType]string{ConfChangeAddNode: "AddNode", ConfChangeRemoveNode: "RemoveNode", ConfChangeUpdateNode: "UpdateNode", ConfChangeAddLearnerNode: "AddLearnerNode", 4: "ConfChangeType(4)"} {
		if got := typ.String(); got != want {
			t.Errorf("ConfChangeType %d prints %q, want %q", uint8(typ), got, want)
		}
	}
	if !(HardState{}).IsEmpty() || (HardState{Commit: 1}).IsEmpty() {
		t.Errorf("HardState.IsEmpty is wrong")
	}
	var nilSnap *Snapshot
	if !nilSnap.IsEmpty() || !(&Snapshot{Data: []byte("x")}).IsEmpty() || (&Snapshot{Metadata: SnapshotMetadata{Index: 1}}).IsEmpty() {
		t.Errorf("Snapshot.IsEmpty is wrong")
	}
	if n := (&Entry{Term: 5, Data: []byte("abc")}).PayloadSize(); n != 3 {
		t.Errorf("PayloadSize = %d, want 3", n)
	}
}

// BenchmarkAppendMessage measures encoding a typical append message into a
// reused buffer.
func BenchmarkAppendMessage(b *testing.B) {
	m := bigMessage()
	buf := make([]byte, 0, MessageSize(&m))
	b.SetBytes(int64(MessageSize(&m)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMessage(buf[:0], &m)
	}
}

// BenchmarkUnmarshalMessage measures decoding a typical append message.
func BenchmarkUnmarshalMessage(b *testing.B) {
	m := bigMessage()
	enc := MarshalMessage(&m)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	var out Message
	for b.Loop() {
		if err := UnmarshalMessage(enc, &out); err != nil {
			b.Fatal(err)
		}
	}
}

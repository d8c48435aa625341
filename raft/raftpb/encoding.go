package raftpb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The encoding is synod's own: a version byte, then the fields in a fixed
// order as unsigned varints, with byte strings and lists prefixed by their
// length. It is compact (small numbers take one byte), cheap to produce with
// append-style functions that reuse the caller's buffer, and strict to read:
// every length is checked against the bytes that remain, so malformed input
// yields an error, never a panic or a huge allocation.
//
// Decoded values alias the input buffer (Entry.Data, Context, Snapshot.Data
// point into it); callers that reuse the buffer must copy first.

// EncodingVersion is the version byte that leads every encoded value.
// Decoders refuse other versions so that a member never misreads bytes
// written by a newer format.
const EncodingVersion = 1

// ErrMalformed is wrapped by every decoding error, so callers can tell bad
// bytes from other failures with errors.Is.
var ErrMalformed = errors.New("raftpb: malformed encoding")

const (
	flagReject      = 1 << 0
	flagHasSnapshot = 1 << 1
	flagAutoLeave   = 1 << 0
)

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendIDs(dst []byte, ids []uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ids)))
	for _, id := range ids {
		dst = binary.AppendUvarint(dst, id)
	}
	return dst
}

// AppendEntry appends the encoding of e (without the version byte, which
// the enclosing value carries) to dst.
func appendEntryBody(dst []byte, e *Entry) []byte {
	dst = binary.AppendUvarint(dst, e.Term)
	dst = binary.AppendUvarint(dst, e.Index)
	dst = append(dst, byte(e.Type))
	return appendBytes(dst, e.Data)
}

func appendConfStateBody(dst []byte, cs *ConfState) []byte {
	dst = appendIDs(dst, cs.Voters)
	dst = appendIDs(dst, cs.Learners)
	dst = appendIDs(dst, cs.VotersOutgoing)
	dst = appendIDs(dst, cs.LearnersNext)
	var flags byte
	if cs.AutoLeave {
		flags |= flagAutoLeave
	}
	return append(dst, flags)
}

func appendSnapshotBody(dst []byte, s *Snapshot) []byte {
	dst = binary.AppendUvarint(dst, s.Metadata.Index)
	dst = binary.AppendUvarint(dst, s.Metadata.Term)
	dst = appendConfStateBody(dst, &s.Metadata.ConfState)
	return appendBytes(dst, s.Data)
}

// AppendMessage appends the encoding of m to dst and returns the extended
// slice. With a reused dst it does not allocate.
func AppendMessage(dst []byte, m *Message) []byte {
	dst = append(dst, EncodingVersion, byte(m.Type))
	var flags byte
	if m.Reject {
		flags |= flagReject
	}
	if m.Snapshot != nil {
		flags |= flagHasSnapshot
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, m.To)
	dst = binary.AppendUvarint(dst, m.From)
	dst = binary.AppendUvarint(dst, m.Term)
	dst = binary.AppendUvarint(dst, m.LogTerm)
	dst = binary.AppendUvarint(dst, m.Index)
	dst = binary.AppendUvarint(dst, m.Commit)
	dst = binary.AppendUvarint(dst, m.RejectHint)
	dst = appendBytes(dst, m.Context)
	dst = binary.AppendUvarint(dst, uint64(len(m.Entries)))
	for i := range m.Entries {
		dst = appendEntryBody(dst, &m.Entries[i])
	}
	if m.Snapshot != nil {
		dst = appendSnapshotBody(dst, m.Snapshot)
	}
	return dst
}

// MarshalMessage returns the encoding of m in a new buffer of exact size.
func MarshalMessage(m *Message) []byte {
	return AppendMessage(make([]byte, 0, MessageSize(m)), m)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func bytesLen(b []byte) int { return uvarintLen(uint64(len(b))) + len(b) }

func idsLen(ids []uint64) int {
	n := uvarintLen(uint64(len(ids)))
	for _, id := range ids {
		n += uvarintLen(id)
	}
	return n
}

func entryBodyLen(e *Entry) int {
	return uvarintLen(e.Term) + uvarintLen(e.Index) + 1 + bytesLen(e.Data)
}

func confStateBodyLen(cs *ConfState) int {
	return idsLen(cs.Voters) + idsLen(cs.Learners) + idsLen(cs.VotersOutgoing) + idsLen(cs.LearnersNext) + 1
}

func snapshotBodyLen(s *Snapshot) int {
	return uvarintLen(s.Metadata.Index) + uvarintLen(s.Metadata.Term) + confStateBodyLen(&s.Metadata.ConfState) + bytesLen(s.Data)
}

// MessageSize returns the exact length of m's encoding, so that callers can
// size buffers and enforce frame limits without encoding twice.
func MessageSize(m *Message) int {
	n := 3 + uvarintLen(m.To) + uvarintLen(m.From) + uvarintLen(m.Term) + uvarintLen(m.LogTerm) +
		uvarintLen(m.Index) + uvarintLen(m.Commit) + uvarintLen(m.RejectHint) + bytesLen(m.Context) +
		uvarintLen(uint64(len(m.Entries)))
	for i := range m.Entries {
		n += entryBodyLen(&m.Entries[i])
	}
	if m.Snapshot != nil {
		n += snapshotBodyLen(m.Snapshot)
	}
	return n
}

// decoder reads the encoding and remembers the first error, so that callers
// read all fields and check once.
type decoder struct {
	what string
	buf  []byte
	off  int
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d: %s", ErrMalformed, d.what, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail("unexpected end of input")
		return 0
	}
	b := d.buf[d.off]
	d.off++
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// count reads a list length and checks that at least minSize bytes per
// element remain, which bounds allocations by the input size.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.buf)-d.off)/uint64(minSize) {
		d.fail("list of %d elements longer than the remaining %d bytes", n, len(d.buf)-d.off)
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil || n == 0 {
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

func (d *decoder) ids() []uint64 {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = d.uvarint()
	}
	return ids
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != EncodingVersion {
		d.off--
		d.fail("unsupported encoding version %d (this build reads version %d); upgrade this member", v, EncodingVersion)
	}
}

func (d *decoder) end() error {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", len(d.buf)-d.off)
	}
	return d.err
}

func (d *decoder) entry(e *Entry) {
	e.Term = d.uvarint()
	e.Index = d.uvarint()
	t := d.byte()
	if d.err == nil && t > byte(EntryConfChangeV2) {
		d.off--
		d.fail("unknown entry type %d", t)
	}
	e.Type = EntryType(t)
	e.Data = d.bytes()
}

func (d *decoder) confState(cs *ConfState) {
	cs.Voters = d.ids()
	cs.Learners = d.ids()
	cs.VotersOutgoing = d.ids()
	cs.LearnersNext = d.ids()
	flags := d.byte()
	if d.err == nil && flags&^flagAutoLeave != 0 {
		d.off--
		d.fail("unknown conf state flags %#x", flags)
	}
	cs.AutoLeave = flags&flagAutoLeave != 0
}

func (d *decoder) snapshot(s *Snapshot) {
	s.Metadata.Index = d.uvarint()
	s.Metadata.Term = d.uvarint()
	d.confState(&s.Metadata.ConfState)
	s.Data = d.bytes()
}

// minEntrySize is the smallest encoded entry: term, index, type, data length.
const minEntrySize = 4

// UnmarshalMessage decodes a message produced by AppendMessage. Malformed
// input returns an error wrapping ErrMalformed that names the offset.
func UnmarshalMessage(b []byte, m *Message) error {
	d := decoder{what: "message", buf: b}
	d.version()
	t := d.byte()
	if d.err == nil && !MessageType(t).Valid() {
		d.off--
		d.fail("unknown message type %d", t)
	}
	flags := d.byte()
	if d.err == nil && flags&^(flagReject|flagHasSnapshot) != 0 {
		d.off--
		d.fail("unknown message flags %#x", flags)
	}
	*m = Message{Type: MessageType(t), Reject: flags&flagReject != 0}
	m.To = d.uvarint()
	m.From = d.uvarint()
	m.Term = d.uvarint()
	m.LogTerm = d.uvarint()
	m.Index = d.uvarint()
	m.Commit = d.uvarint()
	m.RejectHint = d.uvarint()
	m.Context = d.bytes()
	if n := d.count(minEntrySize); n > 0 {
		m.Entries = make([]Entry, n)
		for i := range m.Entries {
			d.entry(&m.Entries[i])
		}
	}
	if flags&flagHasSnapshot != 0 && d.err == nil {
		m.Snapshot = new(Snapshot)
		d.snapshot(m.Snapshot)
	}
	return d.end()
}

// AppendEntry appends the encoding of e to dst.
func AppendEntry(dst []byte, e *Entry) []byte {
	return appendEntryBody(append(dst, EncodingVersion), e)
}

// UnmarshalEntry decodes an entry produced by AppendEntry.
func UnmarshalEntry(b []byte, e *Entry) error {
	d := decoder{what: "entry", buf: b}
	d.version()
	d.entry(e)
	return d.end()
}

// AppendHardState appends the encoding of h to dst.
func AppendHardState(dst []byte, h HardState) []byte {
	dst = append(dst, EncodingVersion)
	dst = binary.AppendUvarint(dst, h.Term)
	dst = binary.AppendUvarint(dst, h.Vote)
	return binary.AppendUvarint(dst, h.Commit)
}

// UnmarshalHardState decodes a hard state produced by AppendHardState.
func UnmarshalHardState(b []byte) (HardState, error) {
	d := decoder{what: "hard state", buf: b}
	d.version()
	h := HardState{Term: d.uvarint(), Vote: d.uvarint(), Commit: d.uvarint()}
	return h, d.end()
}

// AppendConfState appends the encoding of cs to dst.
func AppendConfState(dst []byte, cs *ConfState) []byte {
	return appendConfStateBody(append(dst, EncodingVersion), cs)
}

// UnmarshalConfState decodes a conf state produced by AppendConfState.
func UnmarshalConfState(b []byte) (ConfState, error) {
	d := decoder{what: "conf state", buf: b}
	d.version()
	var cs ConfState
	d.confState(&cs)
	return cs, d.end()
}

// AppendSnapshot appends the encoding of s (metadata and data) to dst.
func AppendSnapshot(dst []byte, s *Snapshot) []byte {
	return appendSnapshotBody(append(dst, EncodingVersion), s)
}

// UnmarshalSnapshot decodes a snapshot produced by AppendSnapshot.
func UnmarshalSnapshot(b []byte) (Snapshot, error) {
	d := decoder{what: "snapshot", buf: b}
	d.version()
	var s Snapshot
	d.snapshot(&s)
	return s, d.end()
}

// MarshalConfChange encodes cc.
func MarshalConfChange(cc ConfChange) []byte {
	dst := []byte{EncodingVersion, byte(cc.Type)}
	dst = binary.AppendUvarint(dst, cc.NodeID)
	dst = binary.AppendUvarint(dst, cc.ID)
	return appendBytes(dst, cc.Context)
}

// UnmarshalConfChange decodes a ConfChange produced by MarshalConfChange.
func UnmarshalConfChange(b []byte) (ConfChange, error) {
	d := decoder{what: "conf change", buf: b}
	d.version()
	var cc ConfChange
	cc.Type = d.confChangeType()
	cc.NodeID = d.uvarint()
	cc.ID = d.uvarint()
	cc.Context = d.bytes()
	return cc, d.end()
}

func (d *decoder) confChangeType() ConfChangeType {
	t := d.byte()
	if d.err == nil && t >= byte(confChangeTypeCount) {
		d.off--
		d.fail("unknown conf change type %d", t)
	}
	return ConfChangeType(t)
}

// MarshalConfChangeV2 encodes cc.
func MarshalConfChangeV2(cc ConfChangeV2) []byte {
	dst := []byte{EncodingVersion, byte(cc.Transition)}
	dst = binary.AppendUvarint(dst, uint64(len(cc.Changes)))
	for _, c := range cc.Changes {
		dst = append(dst, byte(c.Type))
		dst = binary.AppendUvarint(dst, c.NodeID)
	}
	return appendBytes(dst, cc.Context)
}

// UnmarshalConfChangeV2 decodes a ConfChangeV2 produced by MarshalConfChangeV2.
func UnmarshalConfChangeV2(b []byte) (ConfChangeV2, error) {
	d := decoder{what: "conf change v2", buf: b}
	d.version()
	var cc ConfChangeV2
	t := d.byte()
	if d.err == nil && t >= byte(confChangeTransitionCount) {
		d.off--
		d.fail("unknown conf change transition %d", t)
	}
	cc.Transition = ConfChangeTransition(t)
	if n := d.count(2); n > 0 {
		cc.Changes = make([]ConfChangeSingle, n)
		for i := range cc.Changes {
			cc.Changes[i].Type = d.confChangeType()
			cc.Changes[i].NodeID = d.uvarint()
		}
	}
	cc.Context = d.bytes()
	return cc, d.end()
}

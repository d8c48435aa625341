package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/synod-db/synod/raft/raftpb"
)

// This file holds the byte layouts described in doc.go and nothing else:
// handshakes, frames, and the snapshot data stream. Every reader here
// checks lengths before it allocates and returns an error wrapping
// ErrProtocol for anything it does not understand; none of them panics on
// any input.

const (
	// magic opens every handshake request and response, so that a stray
	// client (an etcd member, curl, a port scanner) is recognised at once.
	magic = "SYNODNET"
	// protocolVersion is the version this build speaks. A peer speaking
	// another version is refused with a reason naming both. Version 2
	// came with synod's raft entry envelope (server/entry.go): a member
	// of version 1 would skip enveloped entries and diverge, so the two
	// refuse each other.
	protocolVersion = 2

	requestLen        = 8 + 1 + 1 + 8 + 8 + 8 + 4 + 4 // magic, version, kind, cluster, from, to, keepalive, crc
	responseHeaderLen = 8 + 1 + 1 + 8 + 8 + 4 + 2     // magic, version, code, cluster, member, keepalive, reason length
	maxReasonLen      = 1024

	// A side asks the other for keepalives at an interval suited to its
	// own IdleTimeout; requests outside these bounds are clamped.
	minKeepalive = 10 * time.Millisecond
	maxKeepalive = 10 * time.Second

	// frameHeaderLen is type (1), payload length (4), CRC32C (4).
	frameHeaderLen = 9

	// allocStep bounds how much a reader allocates ahead of the bytes that
	// actually arrived: a peer claiming a 64 MiB frame and sending nothing
	// costs 1 MiB, not 64.
	allocStep = 1 << 20
)

// streamKind says what a connection carries after its handshake.
type streamKind uint8

const (
	kindMessages    streamKind = 1 // raft messages, one way, with keepalives back
	kindSnapshot    streamKind = 2 // one MsgSnap, its data, and an ack back
	kindClusterInfo streamKind = 3 // a FetchCluster request and its answer
)

func (k streamKind) String() string {
	switch k {
	case kindMessages:
		return "messages"
	case kindSnapshot:
		return "snapshot"
	case kindClusterInfo:
		return "cluster-info"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// rejectCode is the acceptor's verdict in a handshake response.
type rejectCode uint8

const (
	codeAccept          rejectCode = 0
	codeBadVersion      rejectCode = 1
	codeBadKind         rejectCode = 2
	codeClusterMismatch rejectCode = 3
	codeWrongMember     rejectCode = 4
	codeRemoved         rejectCode = 5
	codeBadSender       rejectCode = 6
	codeStopping        rejectCode = 7
)

// frameType says what a frame's payload is.
type frameType uint8

const (
	frameMessage     frameType = iota + 1 // an encoded raftpb.Message
	frameKeepalive                        // empty: "I am alive"
	frameSnapChunk                        // a piece of snapshot data
	frameSnapEnd                          // uint64 total number of snapshot data bytes
	frameSnapAck                          // one status byte, then a UTF-8 reason
	frameClusterInfo                      // the remote Handler.ClusterInfo bytes
	frameTypeLimit                        // first unknown type
)

func (f frameType) String() string {
	switch f {
	case frameMessage:
		return "message"
	case frameKeepalive:
		return "keepalive"
	case frameSnapChunk:
		return "snapshot-chunk"
	case frameSnapEnd:
		return "snapshot-end"
	case frameSnapAck:
		return "snapshot-ack"
	case frameClusterInfo:
		return "cluster-info"
	}
	return fmt.Sprintf("frame(%d)", uint8(f))
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// typeSeed[t] is the CRC32C of the single byte t: a frame's checksum covers
// its type byte and its payload, computed without building a buffer.
var typeSeed = func() (s [256]uint32) {
	for i := range s {
		s[i] = crc32.Checksum([]byte{byte(i)}, crcTable)
	}
	return s
}()

func frameCRC(t frameType, payload []byte) uint32 {
	return crc32.Update(typeSeed[t], crcTable, payload)
}

// handshake is the request that opens every connection.
type handshake struct {
	version   uint8
	kind      streamKind
	clusterID uint64
	from, to  uint64
	keepalive time.Duration // how often the dialer wants keepalives
}

func appendHandshake(dst []byte, h handshake) []byte {
	start := len(dst)
	dst = append(dst, magic...)
	dst = append(dst, h.version, byte(h.kind))
	dst = binary.BigEndian.AppendUint64(dst, h.clusterID)
	dst = binary.BigEndian.AppendUint64(dst, h.from)
	dst = binary.BigEndian.AppendUint64(dst, h.to)
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.keepalive.Milliseconds()))
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

// readHandshake reads and checks a handshake request. The version is
// returned as sent, for the caller to refuse with a useful reason.
func readHandshake(r io.Reader) (handshake, error) {
	var b [requestLen]byte
	// The magic first, so that a stranger is told apart at once even if it
	// sent fewer bytes than a handshake.
	if _, err := io.ReadFull(r, b[:len(magic)]); err != nil {
		return handshake{}, fmt.Errorf("read handshake: %w", err)
	}
	if string(b[:len(magic)]) != magic {
		return handshake{}, fmt.Errorf("%w: connection does not start with the synod peer magic %q (got %q): "+
			"something other than a synod member (an etcd member, an HTTP client) is talking to the peer port",
			ErrProtocol, magic, printable(b[:len(magic)]))
	}
	if _, err := io.ReadFull(r, b[len(magic):]); err != nil {
		return handshake{}, fmt.Errorf("read handshake: %w", noEOF(err))
	}
	if got, want := binary.BigEndian.Uint32(b[requestLen-4:]), crc32.Checksum(b[:requestLen-4], crcTable); got != want {
		return handshake{}, fmt.Errorf("%w: handshake checksum mismatch (got %08x, computed %08x)", ErrProtocol, got, want)
	}
	return handshake{
		version:   b[8],
		kind:      streamKind(b[9]),
		clusterID: binary.BigEndian.Uint64(b[10:]),
		from:      binary.BigEndian.Uint64(b[18:]),
		to:        binary.BigEndian.Uint64(b[26:]),
		keepalive: clampKeepalive(binary.BigEndian.Uint32(b[34:])),
	}, nil
}

// clampKeepalive turns a keepalive interval in milliseconds from the
// network into one that neither spins nor lets a connection look dead.
func clampKeepalive(ms uint32) time.Duration {
	return min(max(time.Duration(ms)*time.Millisecond, minKeepalive), maxKeepalive)
}

// response is the acceptor's answer to a handshake.
type response struct {
	version   uint8
	code      rejectCode
	clusterID uint64        // the acceptor's cluster
	memberID  uint64        // the acceptor's own ID
	keepalive time.Duration // how often the acceptor wants keepalives
	reason    string        // why it refused; empty when accepted
}

func appendResponse(dst []byte, r response) []byte {
	reason := r.reason
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	start := len(dst)
	dst = append(dst, magic...)
	dst = append(dst, r.version, byte(r.code))
	dst = binary.BigEndian.AppendUint64(dst, r.clusterID)
	dst = binary.BigEndian.AppendUint64(dst, r.memberID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(r.keepalive.Milliseconds()))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(reason)))
	dst = append(dst, reason...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

func readResponse(r io.Reader) (response, error) {
	var b [responseHeaderLen + maxReasonLen + 4]byte
	if _, err := io.ReadFull(r, b[:len(magic)]); err != nil {
		return response{}, fmt.Errorf("read handshake response: %w", noEOF(err))
	}
	if string(b[:len(magic)]) != magic {
		return response{}, fmt.Errorf("%w: handshake response does not start with the synod peer magic (got %q): "+
			"the peer URL does not point at a synod member's peer port", ErrProtocol, printable(b[:len(magic)]))
	}
	if _, err := io.ReadFull(r, b[len(magic):responseHeaderLen]); err != nil {
		return response{}, fmt.Errorf("read handshake response: %w", noEOF(err))
	}
	n := int(binary.BigEndian.Uint16(b[responseHeaderLen-2:]))
	if n > maxReasonLen {
		return response{}, fmt.Errorf("%w: handshake response reason of %d bytes exceeds the limit of %d", ErrProtocol, n, maxReasonLen)
	}
	all := b[:responseHeaderLen+n+4]
	if _, err := io.ReadFull(r, all[responseHeaderLen:]); err != nil {
		return response{}, fmt.Errorf("read handshake response: %w", noEOF(err))
	}
	if got, want := binary.BigEndian.Uint32(all[len(all)-4:]), crc32.Checksum(all[:len(all)-4], crcTable); got != want {
		return response{}, fmt.Errorf("%w: handshake response checksum mismatch (got %08x, computed %08x)", ErrProtocol, got, want)
	}
	return response{
		version:   b[8],
		code:      rejectCode(b[9]),
		clusterID: binary.BigEndian.Uint64(b[10:]),
		memberID:  binary.BigEndian.Uint64(b[18:]),
		keepalive: clampKeepalive(binary.BigEndian.Uint32(b[26:])),
		reason:    printable(all[responseHeaderLen : len(all)-4]),
	}, nil
}

// rejection turns a refusing response into the error the dialer reports.
func (r response) rejection(kind streamKind, url string) error {
	var sentinel error
	switch r.code {
	case codeRemoved:
		sentinel = ErrMemberRemoved
	case codeClusterMismatch:
		sentinel = ErrClusterMismatch
	}
	if sentinel != nil {
		return fmt.Errorf("%w: %w: %s refused the %s connection: %s", ErrRejected, sentinel, url, kind, r.reason)
	}
	return fmt.Errorf("%w: %s refused the %s connection: %s", ErrRejected, url, kind, r.reason)
}

// appendFrameHeader reserves a frame header at the end of dst; finishFrame
// fills it in once the payload has been appended after it.
func appendFrameHeader(dst []byte) []byte {
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

// finishFrame completes the frame whose header starts at dst[start].
func finishFrame(dst []byte, start int, t frameType) {
	payload := dst[start+frameHeaderLen:]
	dst[start] = byte(t)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(payload)))
	binary.BigEndian.PutUint32(dst[start+5:], frameCRC(t, payload))
}

// appendFrame appends a whole frame carrying payload.
func appendFrame(dst []byte, t frameType, payload []byte) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst)
	dst = append(dst, payload...)
	finishFrame(dst, start, t)
	return dst
}

// appendMessageFrame appends m as one frame. size is raftpb.MessageSize(m),
// which the caller has already computed to check it against the limit.
// With a dst of sufficient capacity it does not allocate.
func appendMessageFrame(dst []byte, m *raftpb.Message, size int) []byte {
	dst = slices.Grow(dst, frameHeaderLen+size)
	start := len(dst)
	dst = appendFrameHeader(dst)
	dst = raftpb.AppendMessage(dst, m)
	finishFrame(dst, start, frameMessage)
	return dst
}

// keepaliveFrame is the whole of a keepalive frame, written as is.
var keepaliveFrame = appendFrame(nil, frameKeepalive, nil)

// frameReader reads frames from a connection. It owns no goroutine; one
// goroutine at a time calls next.
type frameReader struct {
	r   io.Reader
	max int // largest payload accepted
	hdr [frameHeaderLen]byte
}

// next reads one frame. The payload is read into buf's storage when it is
// large enough and into fresh memory otherwise (pass nil to get memory the
// caller may keep). A clean end of stream before a frame returns io.EOF;
// anything else wrong returns an error wrapping ErrProtocol or
// io.ErrUnexpectedEOF.
func (fr *frameReader) next(buf []byte) (frameType, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, nil, err // io.EOF only when no byte of the header arrived
	}
	t := frameType(fr.hdr[0])
	n := binary.BigEndian.Uint32(fr.hdr[1:])
	sum := binary.BigEndian.Uint32(fr.hdr[5:])
	if t == 0 || t >= frameTypeLimit {
		return 0, nil, fmt.Errorf("%w: unknown frame type %d", ErrProtocol, fr.hdr[0])
	}
	if uint64(n) > uint64(fr.max) {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes exceeds the limit of %d bytes (MaxFrameBytes)", ErrProtocol, t, n, fr.max)
	}
	payload, err := readPayload(fr.r, buf[:0], int(n))
	if err != nil {
		return 0, nil, fmt.Errorf("read %s frame of %d bytes: %w", t, n, noEOF(err))
	}
	if got := frameCRC(t, payload); got != sum {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes: checksum mismatch (header says %08x, payload has %08x)", ErrProtocol, t, n, sum, got)
	}
	return t, payload, nil
}

// readPayload reads n bytes into dst (reusing its capacity), growing the
// buffer only as data arrives.
func readPayload(r io.Reader, dst []byte, n int) ([]byte, error) {
	if cap(dst) >= n {
		dst = dst[:n]
		_, err := io.ReadFull(r, dst)
		return dst, err
	}
	for len(dst) < n {
		if len(dst) == cap(dst) {
			grow := max(len(dst), allocStep)
			grown := make([]byte, len(dst), min(n, len(dst)+grow))
			copy(grown, dst)
			dst = grown
		}
		m, err := io.ReadFull(r, dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+m]
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// decodeMessage decodes a frameMessage payload and checks it against the
// handshake: it must come from the member that opened the connection, be
// addressed to this member, and not be a type that never crosses the
// network. snap says whether a MsgSnap is expected (snapshot connections)
// or forbidden (message streams, where one would arrive without its data
// and install an empty state).
func decodeMessage(payload []byte, from, to uint64, snap bool, m *raftpb.Message) error {
	if err := raftpb.UnmarshalMessage(payload, m); err != nil {
		return fmt.Errorf("%w: undecodable message: %w", ErrProtocol, err)
	}
	switch {
	case m.From != from:
		return fmt.Errorf("%w: %s from %x on a connection opened by %x", ErrProtocol, m.Type, m.From, from)
	case m.To != to:
		return fmt.Errorf("%w: %s addressed to %x arrived at %x", ErrProtocol, m.Type, m.To, to)
	case m.Type.IsLocal():
		return fmt.Errorf("%w: local message type %s arrived from the network", ErrProtocol, m.Type)
	case snap && m.Type != raftpb.MsgSnap:
		return fmt.Errorf("%w: %s on a snapshot connection, want MsgSnap", ErrProtocol, m.Type)
	case !snap && m.Type == raftpb.MsgSnap:
		return fmt.Errorf("%w: MsgSnap on a message stream; snapshots must come on their own connection with their data", ErrProtocol)
	case snap && (m.Snapshot == nil || m.Snapshot.IsEmpty()):
		return fmt.Errorf("%w: MsgSnap without snapshot metadata", ErrProtocol)
	case snap && len(m.Snapshot.Data) != 0:
		return fmt.Errorf("%w: MsgSnap carries %d bytes of inline data; data must follow as chunks", ErrProtocol, len(m.Snapshot.Data))
	}
	return nil
}

// snapshotReader is the io.Reader handed to Handler.ReceiveSnapshot. It
// yields the data of the chunk frames after checking each chunk's CRC, and
// io.EOF only after an end frame whose byte count matches what was read.
// Every other ending is an error: a bad checksum or a malformed frame wraps
// ErrProtocol, a connection that ends early wraps io.ErrUnexpectedEOF.
type snapshotReader struct {
	fr    *frameReader
	buf   []byte // chunk storage, reused
	cur   []byte // unread part of the current chunk
	total uint64 // data bytes received so far
	err   error  // sticky; io.EOF after a good end frame
}

func (s *snapshotReader) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		s.err = s.nextChunk()
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

func (s *snapshotReader) nextChunk() error {
	t, payload, err := s.fr.next(s.buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("snapshot data cut off after %d bytes: %w", s.total, err)
	}
	switch t {
	case frameSnapChunk:
		if cap(payload) > cap(s.buf) {
			s.buf = payload
		}
		s.cur = payload
		s.total += uint64(len(payload))
		return nil
	case frameSnapEnd:
		if len(payload) != 8 {
			return fmt.Errorf("%w: snapshot end frame of %d bytes, want 8", ErrProtocol, len(payload))
		}
		if want := binary.BigEndian.Uint64(payload); want != s.total {
			return fmt.Errorf("%w: snapshot sender says it sent %d bytes, %d arrived", ErrProtocol, want, s.total)
		}
		return io.EOF
	}
	return fmt.Errorf("%w: %s frame inside snapshot data", ErrProtocol, t)
}

// drain reads whatever the consumer left unread, so that a snapshot is
// only acknowledged once all of it arrived intact.
func (s *snapshotReader) drain() error {
	for {
		s.cur = nil
		if s.err != nil {
			if s.err == io.EOF {
				return nil
			}
			return s.err
		}
		s.err = s.nextChunk()
	}
}

// appendAck appends a snapshot acknowledgement frame.
func appendAck(dst []byte, err error) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst)
	if err == nil {
		dst = append(dst, 0)
	} else {
		reason := err.Error()
		if len(reason) > maxReasonLen {
			reason = reason[:maxReasonLen]
		}
		dst = append(dst, 1)
		dst = append(dst, reason...)
	}
	finishFrame(dst, start, frameSnapAck)
	return dst
}

// errRefused is wrapped by the error for a negative snapshot ack.
var errRefused = errors.New("the receiver refused the snapshot")

// parseAck returns nil for a positive acknowledgement and the receiver's
// reason otherwise.
func parseAck(payload []byte) error {
	switch {
	case len(payload) == 0:
		return fmt.Errorf("%w: empty snapshot ack", ErrProtocol)
	case payload[0] == 0 && len(payload) == 1:
		return nil
	case payload[0] == 1:
		return fmt.Errorf("%w: %s", errRefused, printable(payload[1:]))
	}
	return fmt.Errorf("%w: malformed snapshot ack (status %d, %d bytes)", ErrProtocol, payload[0], len(payload))
}

// idleConn refreshes the read deadline before every read that reaches the
// network, so that a connection silent for longer than idle fails with a
// timeout instead of hanging. It is wrapped in a bufio.Reader, which reads
// the network only when its buffer is empty.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func newFrameReader(c net.Conn, idle time.Duration, maxPayload int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(idleConn{c, idle}, 64<<10), max: maxPayload}
}

// noEOF turns a clean EOF in the middle of something into the unexpected
// EOF it is.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// printable makes bytes from the network safe to put in a log line or an
// error: valid UTF-8 without control characters.
func printable(b []byte) string {
	out := make([]rune, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

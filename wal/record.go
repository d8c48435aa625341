package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A segment is a sequence of records. Each record is framed as
//
//	length uint32 (little endian): the size of type+payload, at least 1
//	check  uint32: the bitwise complement of length
//	crc    uint32 (little endian): CRC-32C of type+payload, seeded with the
//	       crc of the previous record
//	type   byte
//	payload
//
// The complemented length tells a torn write from corruption: a write cut
// short by a crash leaves a prefix of what was written followed by zeros
// (or the end of the file), and never a complete header with a wrong
// length; a length that fails its check with data after it is corruption.
//
// The CRC chains from record to record and, through the crc record that
// opens each segment, from segment to segment: a record moved, lost or
// replayed out of place breaks the chain even if its own bytes are intact.
// A length of zero marks the end of the written part of a segment (the rest
// is preallocated zeros).

const headerSize = 12

// recordType says what a record's payload holds.
type recordType byte

const (
	// crcRecord opens every segment; its payload is the running crc at the
	// end of the previous segment (0 for the first).
	crcRecord recordType = 1 + iota
	// metadataRecord holds the caller's metadata (cluster and member IDs);
	// it follows the crc record in every segment.
	metadataRecord
	// entryRecord holds one raft log entry.
	entryRecord
	// stateRecord holds a raft hard state.
	stateRecord
	// snapshotRecord marks that a snapshot at (index, term) was saved.
	snapshotRecord
	maxRecordType = snapshotRecord
)

func (t recordType) String() string {
	switch t {
	case crcRecord:
		return "crc"
	case metadataRecord:
		return "metadata"
	case entryRecord:
		return "entry"
	case stateRecord:
		return "state"
	case snapshotRecord:
		return "snapshot"
	}
	return fmt.Sprintf("recordType(%d)", byte(t))
}

// maxRecordSize bounds a record's body so that a corrupt length cannot make
// a reader allocate without limit.
const maxRecordSize = 256 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends a framed record to dst and returns the new running crc.
func appendRecord(dst []byte, prevCRC uint32, t recordType, payload []byte) ([]byte, uint32) {
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	dst = append(dst, byte(t))
	dst = append(dst, payload...)
	return dst, sealRecord(dst[start:], prevCRC)
}

// sealRecord fills in the header of the record laid out in rec (header
// space, then type and payload) and returns its crc.
func sealRecord(rec []byte, prevCRC uint32) uint32 {
	body := rec[headerSize:]
	crc := crc32.Update(prevCRC, crcTable, body)
	binary.LittleEndian.PutUint32(rec, uint32(len(body)))
	binary.LittleEndian.PutUint32(rec[4:], ^uint32(len(body)))
	binary.LittleEndian.PutUint32(rec[8:], crc)
	return crc
}

// errEndOfRecords means a zero header: the written part of the segment ended.
var errEndOfRecords = errors.New("wal: end of records")

// errTorn is wrapped for a record that is incomplete or fails its check;
// at the tail of the last segment it is a torn write, elsewhere corruption.
var errTorn = errors.New("torn or corrupt record")

// decodeRecord decodes the record at the start of buf, checking its crc
// against the chain. It returns the type, the payload (aliasing buf), the
// record's total size and the new running crc. On error, extent is how far
// the record claims to reach (its header, or header and body when the
// length passed its check), which tells a torn tail from corruption.
func decodeRecord(buf []byte, prevCRC uint32) (t recordType, payload []byte, size int, crc uint32, extent int, err error) {
	if len(buf) < headerSize {
		if allZero(buf) {
			return 0, nil, 0, prevCRC, 0, errEndOfRecords
		}
		return 0, nil, 0, prevCRC, len(buf), fmt.Errorf("%w: header cut short (%d of %d bytes)", errTorn, len(buf), headerSize)
	}
	length := binary.LittleEndian.Uint32(buf)
	check := binary.LittleEndian.Uint32(buf[4:])
	want := binary.LittleEndian.Uint32(buf[8:])
	if length == 0 && check == 0 && want == 0 {
		return 0, nil, 0, prevCRC, 0, errEndOfRecords
	}
	if check != ^length {
		return 0, nil, 0, prevCRC, headerSize, fmt.Errorf("%w: length %d fails its check %#x", errTorn, length, check)
	}
	extent = headerSize + int(min(length, maxRecordSize+1))
	if length == 0 || length > maxRecordSize {
		return 0, nil, 0, prevCRC, extent, fmt.Errorf("%w: length %d outside [1, %d]", errTorn, length, maxRecordSize)
	}
	if uint64(len(buf)-headerSize) < uint64(length) {
		return 0, nil, 0, prevCRC, extent, fmt.Errorf("%w: body cut short (%d of %d bytes)", errTorn, len(buf)-headerSize, length)
	}
	body := buf[headerSize:extent]
	crc = crc32.Update(prevCRC, crcTable, body)
	if crc != want {
		return 0, nil, 0, prevCRC, extent, fmt.Errorf("%w: crc %#x, want %#x", errTorn, crc, want)
	}
	t = recordType(body[0])
	if t == 0 || t > maxRecordType {
		return 0, nil, 0, prevCRC, extent, fmt.Errorf("%w: unknown record type %d", errTorn, body[0])
	}
	return t, body[1:], extent, crc, extent, nil
}

// isTornTail reports whether a bad record at off, reaching extent bytes,
// is the tail of an interrupted write: nothing but zeros may follow what
// the record claims (a crash leaves a prefix of the write, then the zeros
// of preallocation or the end of the file).
func isTornTail(data []byte, off, extent int) bool {
	end := min(off+extent, len(data))
	return allZero(data[end:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

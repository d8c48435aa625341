package snap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/synod-db/synod/diskfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// The layout of a snapshot file; doc.go describes it field by field.
const (
	fileMagic     = "SYNODSNP"
	endMagic      = "SYNODEND"
	formatVersion = 1

	// prefixLen covers magic, version and metadata length.
	prefixLen = 8 + 1 + 4
	crcLen    = 4
	// trailerLen covers data length, data CRC, trailer CRC and end magic.
	trailerLen = 8 + 4 + 4 + 8
	// minFileLen is the size of a file with empty metadata and no data;
	// nothing shorter can be a snapshot.
	minFileLen = prefixLen + crcLen + trailerLen

	// maxMetaLen bounds the metadata so that a damaged length field cannot
	// make a load allocate without limit. 4 MiB holds a ConfState of
	// hundreds of thousands of members.
	maxMetaLen = 4 << 20

	// writeBufSize is the buffer between the caller's reader and the file:
	// large enough that a reader returning small chunks still makes few
	// system calls, small enough not to matter next to the snapshot.
	writeBufSize = 256 << 10
	// copyBufSize is the chunk in which a save reads the caller's data
	// (unless the reader writes itself out, like a bytes.Reader).
	copyBufSize = 64 << 10
	// readBufSize is the buffer of a load, used to validate and to stream.
	readBufSize = 128 << 10

	snapSuffix   = ".snap"
	tmpSuffix    = ".snap.tmp"
	brokenSuffix = ".broken"
	// nameLen is the length of "<16 hex>-<16 hex>.snap".
	nameLen = 16 + 1 + 16 + 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// tmpSeq numbers the temporary files of saves in this process.
var tmpSeq atomic.Uint64

// saveBufs are the buffers of one save. They are pooled because they are
// large next to a small snapshot and a member saves snapshots repeatedly.
type saveBufs struct {
	w    *bufio.Writer
	copy []byte
}

var saveBufPool = sync.Pool{New: func() any {
	return &saveBufs{w: bufio.NewWriterSize(nil, writeBufSize), copy: make([]byte, copyBufSize)}
}}

// readBufPool holds the buffers of loads, returned when a reader closes.
var readBufPool = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// FileName returns the name of the file that holds the snapshot at term and
// index. The fixed-width hex makes the lexical order of names the order of
// (term, index), which is how loads and purges rank snapshots.
func FileName(term, index uint64) string {
	return fmt.Sprintf("%016x-%016x%s", term, index, snapSuffix)
}

// parseName is the inverse of FileName. It accepts exactly the names
// FileName produces (lowercase hex, fixed width), so that no two names
// denote the same snapshot.
func parseName(name string) (term, index uint64, ok bool) {
	if len(name) != nameLen || name[16] != '-' || !strings.HasSuffix(name, snapSuffix) {
		return 0, 0, false
	}
	term, ok1 := parseHex(name[:16])
	index, ok2 := parseHex(name[17:33])
	return term, index, ok1 && ok2
}

func parseHex(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// encodeHeader returns magic, version, metadata length, metadata and the
// header CRC.
func encodeHeader(meta pb.SnapshotMetadata) ([]byte, error) {
	hdr := make([]byte, prefixLen, 64)
	copy(hdr, fileMagic)
	hdr[len(fileMagic)] = formatVersion
	hdr = pb.AppendSnapshot(hdr, &pb.Snapshot{Metadata: meta})
	m := len(hdr) - prefixLen
	if m > maxMetaLen {
		return nil, fmt.Errorf("snap: metadata of snapshot term %d index %d encodes to %d bytes, more than the %d this format allows; the ConfState is implausibly large", meta.Term, meta.Index, m, maxMetaLen)
	}
	binary.BigEndian.PutUint32(hdr[len(fileMagic)+1:prefixLen], uint32(m))
	return binary.BigEndian.AppendUint32(hdr, crc32.Checksum(hdr, castagnoli)), nil
}

// encodeTrailer returns the trailer for n data bytes with CRC crc.
func encodeTrailer(n uint64, crc uint32) []byte {
	tr := make([]byte, 0, trailerLen)
	tr = binary.BigEndian.AppendUint64(tr, n)
	tr = binary.BigEndian.AppendUint32(tr, crc)
	tr = binary.BigEndian.AppendUint32(tr, crc32.Checksum(tr, castagnoli))
	return append(tr, endMagic...)
}

// crcWriter passes data on while computing its CRC and length. It keeps
// the first write error so that a failed copy can be blamed on the right
// side (the caller's reader or the file).
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
	err error
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// writeFile writes the snapshot file for meta with the data read from data,
// following the durability protocol of the package documentation. On error
// it removes its temporary file and leaves the directory as it was.
func writeFile(fs diskfs.FS, dir string, meta pb.SnapshotMetadata, data io.Reader) (err error) {
	hdr, err := encodeHeader(meta)
	if err != nil {
		return err
	}
	name := FileName(meta.Term, meta.Index)
	final := filepath.Join(dir, name)
	// Saves of one Snapshotter may run at once (even of one snapshot):
	// each writes its own temporary file.
	tmp := filepath.Join(dir, fmt.Sprintf("%s.%d%s", strings.TrimSuffix(name, snapSuffix), tmpSeq.Add(1), tmpSuffix))
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("snap: create a temporary file for %s: %w; check that the directory exists, is writable and has free space", final, err)
	}
	defer func() {
		if err != nil {
			f.Close() // a second Close after success is harmless
			fs.Remove(tmp)
		}
	}()
	writeErr := func(off int64, err error) error {
		return fmt.Errorf("snap: write %s near byte offset %d: %w; the snapshot was not saved; check free space and the disk", tmp, off, err)
	}

	bufs := saveBufPool.Get().(*saveBufs)
	bw := bufs.w
	bw.Reset(f)
	defer func() {
		bw.Reset(nil) // drop the file and any unflushed bytes
		saveBufPool.Put(bufs)
	}()
	if _, err := bw.Write(hdr); err != nil {
		return writeErr(0, err)
	}
	cw := &crcWriter{w: bw}
	if _, err := io.CopyBuffer(cw, data, bufs.copy); err != nil {
		if cw.err != nil {
			return writeErr(int64(len(hdr))+cw.n, err)
		}
		return fmt.Errorf("snap: read the data of snapshot %s from the caller after %d bytes (file offset %d): %w; the snapshot was not saved", final, cw.n, int64(len(hdr))+cw.n, err)
	}
	trOff := int64(len(hdr)) + cw.n
	if _, err := bw.Write(encodeTrailer(uint64(cw.n), cw.crc)); err != nil {
		return writeErr(trOff, err)
	}
	if err := bw.Flush(); err != nil {
		return writeErr(trOff, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("snap: fsync %s (%d bytes): %w; the snapshot was not saved; check the disk", tmp, trOff+trailerLen, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snap: close %s (%d bytes): %w; the snapshot was not saved; check the disk", tmp, trOff+trailerLen, err)
	}
	if err := fs.Rename(tmp, final); err != nil {
		return fmt.Errorf("snap: rename %s to %s: %w; the snapshot was not saved; check the permissions of %s", tmp, final, err, dir)
	}
	if err := syncDir(fs, dir); err != nil {
		// The file is complete under its final name but the rename may not
		// survive a power loss; report failure so the caller does not
		// purge the WAL on the strength of it. Removing the file again
		// would only add another unsynced change, so it stays.
		return fmt.Errorf("snap: %s is written but %w; the snapshot may not survive a power loss, treat it as not saved", final, err)
	}
	return nil
}

// syncDir fsyncs a directory so that the creation, renaming or removal of
// its entries is durable.
func syncDir(fs diskfs.FS, dir string) error {
	if err := diskfs.SyncDir(fs, dir); err != nil {
		return fmt.Errorf("fsync of directory %s failed: %w", dir, err)
	}
	return nil
}

// ReadFile validates the snapshot file at path completely and returns its
// metadata and a reader that streams its data. It renames nothing, so tools
// can inspect a file (a .broken one, or one copied from elsewhere) without
// changing the directory. If the name has the form FileName produces, the
// metadata must match it. The caller must close the reader. A damaged file
// yields a *CorruptError wrapping ErrCorrupt.
func ReadFile(path string) (pb.SnapshotMetadata, io.ReadCloser, error) {
	meta, r, err := openFile(diskfs.Default, path)
	if err != nil {
		return pb.SnapshotMetadata{}, nil, err
	}
	return meta, r, nil
}

// openFile opens and validates path, returning a reader positioned at the
// start of the data.
func openFile(fs diskfs.FS, path string) (pb.SnapshotMetadata, *dataReader, error) {
	f, err := fs.Open(path)
	if err != nil {
		return pb.SnapshotMetadata{}, nil, fmt.Errorf("snap: open snapshot file %s: %w; check that it exists and is readable", path, err)
	}
	meta, r, err := validate(f, path)
	if err != nil {
		f.Close()
		return pb.SnapshotMetadata{}, nil, err
	}
	return meta, r, nil
}

// readFull reads exactly len(b) bytes at off. A short read means the file
// shrank since it was measured, which is reported as corruption.
func readFull(f vfs.File, path string, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return corruptf(path, off+int64(n), "file ends at byte offset %d while %d bytes were expected at offset %d; it was truncated while being read", off+int64(n), len(b), off)
	}
	return fmt.Errorf("snap: read snapshot file %s at byte offset %d: %w; check the disk (an I/O error is not treated as corruption)", path, off+int64(n), err)
}

// validate checks every field and checksum of the file f named path, in
// the order the package documentation gives, and returns the metadata and
// a fresh reader over the data.
func validate(f vfs.File, path string) (pb.SnapshotMetadata, *dataReader, error) {
	var none pb.SnapshotMetadata
	st, err := f.Stat()
	if err != nil {
		return none, nil, fmt.Errorf("snap: stat snapshot file %s: %w; check the disk", path, err)
	}
	size := st.Size()
	if size < minFileLen {
		return none, nil, corruptf(path, size, "file is %d bytes long, shorter than the %d bytes of the smallest snapshot file", size, minFileLen)
	}

	var pre [prefixLen]byte
	if err := readFull(f, path, pre[:], 0); err != nil {
		return none, nil, err
	}
	if string(pre[:len(fileMagic)]) != fileMagic {
		return none, nil, corruptf(path, 0, "magic is %q, want %q: this is not a synod snapshot file or its first bytes are damaged", pre[:len(fileMagic)], fileMagic)
	}
	if v := pre[len(fileMagic)]; v != formatVersion {
		return none, nil, corruptf(path, int64(len(fileMagic)), "format version is %d, this build reads version %d (if a newer synod wrote the file, upgrade; otherwise the byte is damaged)", v, formatVersion)
	}
	m := binary.BigEndian.Uint32(pre[len(fileMagic)+1:])
	if m > maxMetaLen || int64(m) > size-minFileLen {
		return none, nil, corruptf(path, int64(len(fileMagic)+1), "metadata length %d does not fit in the %d-byte file (limit %d)", m, size, maxMetaLen)
	}

	crcOff := int64(prefixLen) + int64(m)
	hdr := make([]byte, crcOff+crcLen)
	copy(hdr, pre[:])
	if err := readFull(f, path, hdr[prefixLen:], prefixLen); err != nil {
		return none, nil, err
	}
	if got, want := crc32.Checksum(hdr[:crcOff], castagnoli), binary.BigEndian.Uint32(hdr[crcOff:]); got != want {
		return none, nil, corruptf(path, crcOff, "header checksum mismatch: stored 0x%08x, computed 0x%08x over bytes [0, %d)", want, got, crcOff)
	}
	dataOff := crcOff + crcLen

	trOff := size - trailerLen
	var tr [trailerLen]byte
	if err := readFull(f, path, tr[:], trOff); err != nil {
		return none, nil, err
	}
	if string(tr[16:]) != endMagic {
		return none, nil, corruptf(path, trOff+16, "end marker is %q, want %q: the file is truncated or was not written completely", tr[16:], endMagic)
	}
	if got, want := crc32.Checksum(tr[:12], castagnoli), binary.BigEndian.Uint32(tr[12:16]); got != want {
		return none, nil, corruptf(path, trOff+12, "trailer checksum mismatch: stored 0x%08x, computed 0x%08x over bytes [%d, %d)", want, got, trOff, trOff+12)
	}
	dataLen := binary.BigEndian.Uint64(tr[:8])
	if held := trOff - dataOff; held < 0 || dataLen != uint64(held) {
		return none, nil, corruptf(path, trOff, "trailer records %d bytes of data but the file holds %d between header and trailer: bytes were cut out or added", dataLen, held)
	}

	s, err := pb.UnmarshalSnapshot(hdr[prefixLen:crcOff])
	if err != nil {
		return none, nil, &CorruptError{Path: path, Offset: prefixLen, Reason: "metadata does not decode despite a valid checksum (written by an incompatible build?)", Err: err}
	}
	if len(s.Data) != 0 {
		return none, nil, corruptf(path, prefixLen, "metadata carries %d bytes of inline data, which this format never writes", len(s.Data))
	}
	meta := s.Metadata
	if meta.Index == 0 {
		return none, nil, corruptf(path, prefixLen, "metadata has index 0, which no saved snapshot has")
	}
	if term, index, ok := parseName(filepath.Base(path)); ok && (term != meta.Term || index != meta.Index) {
		return none, nil, corruptf(path, prefixLen, "file name says term %d index %d but the metadata says term %d index %d: the file was renamed or overwritten", term, index, meta.Term, meta.Index)
	}

	r := &dataReader{
		f: f, path: path,
		start: dataOff, end: trOff, off: dataOff,
		want: binary.BigEndian.Uint32(tr[8:12]),
	}
	if _, err := r.WriteTo(io.Discard); err != nil {
		r.releaseBuf()
		return none, nil, err
	}
	r.rewind()
	return meta, r, nil
}

// dataReader streams the data of a validated snapshot file and checks its
// CRC once more at the end: it returns the verdict (io.EOF or a
// *CorruptError) in place of the end of file, so a caller that reads to
// the end never consumes damaged data unknowingly.
type dataReader struct {
	f          vfs.File
	path       string
	start, end int64 // the data lies in [start, end)
	off        int64 // next offset to read
	crc, want  uint32
	verdict    error // set once off reaches end
	buf        *[readBufSize]byte
	closed     bool
}

func (r *dataReader) releaseBuf() {
	if r.buf != nil {
		readBufPool.Put(r.buf)
		r.buf = nil
	}
}

func (r *dataReader) rewind() {
	r.off, r.crc, r.verdict = r.start, 0, nil
}

func (r *dataReader) finish() error {
	if r.verdict == nil {
		r.verdict = io.EOF
		if r.crc != r.want {
			r.verdict = corruptf(r.path, r.start, "data checksum mismatch: stored 0x%08x, computed 0x%08x over the %d data bytes [%d, %d)", r.want, r.crc, r.end-r.start, r.start, r.end)
		}
	}
	return r.verdict
}

// Read reads data, returning io.EOF at the end only if the data checksum
// matches.
func (r *dataReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("snap: read snapshot file %s at byte offset %d after Close: %w", r.path, r.off, os.ErrClosed)
	}
	if r.off >= r.end {
		return 0, r.finish()
	}
	if rem := r.end - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := r.f.ReadAt(p, r.off)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	r.off += int64(n)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		err = nil
		if n < len(p) {
			err = corruptf(r.path, r.off, "file ends at byte offset %d, before the end of its data at %d; it was truncated after validation", r.off, r.end)
		}
	default:
		err = fmt.Errorf("snap: read snapshot file %s at byte offset %d: %w; check the disk", r.path, r.off, err)
	}
	return n, err
}

// WriteTo streams the rest of the data to w through the reader's own
// buffer, so that io.Copy neither allocates nor makes small reads.
func (r *dataReader) WriteTo(w io.Writer) (int64, error) {
	if r.closed {
		return 0, fmt.Errorf("snap: read snapshot file %s at byte offset %d after Close: %w", r.path, r.off, os.ErrClosed)
	}
	if r.buf == nil {
		r.buf = readBufPool.Get().(*[readBufSize]byte)
	}
	var total int64
	for {
		n, err := r.Read(r.buf[:])
		if n > 0 {
			m, werr := w.Write(r.buf[:n])
			total += int64(m)
			if werr == nil && m != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close closes the file and returns the buffer to its pool. Closing twice
// is harmless.
func (r *dataReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.releaseBuf()
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("snap: close snapshot file %s: %w", r.path, err)
	}
	return nil
}

// size returns the length of the data.
func (r *dataReader) size() int64 { return r.end - r.start }

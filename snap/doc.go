// Package snap stores Raft snapshots as files and finds the newest intact
// one again after a restart.
//
// A snapshot is the application's state at a log index; once it is on disk
// the WAL before that index can be purged. Losing or misreading it therefore
// loses data, so every file carries checksums over all of its bytes, is
// written so that a crash never leaves a half-written file under a final
// name, and is checked completely before a caller sees any of it.
//
// # Files
//
// A Snapshotter owns one directory. Each snapshot is one file named
//
//	<term %016x>-<index %016x>.snap
//
// so that the lexical order of names is the order (term, index) and an
// operator's ls lists them oldest first. Other names share the directory:
//
//	*.snap.tmp     a save in progress, or one cut short by a crash; never
//	               read, and removed by New
//	*.snap.broken  a file that failed validation, moved aside by a load
//	               (.broken.1, .broken.2... if the name is taken); never
//	               deleted by this package, kept for diagnosis
//
// # File format
//
// All integers are big-endian. CRC32C is CRC-32 with the Castagnoli
// polynomial (hash/crc32.Castagnoli), which modern CPUs compute in hardware.
//
//	offset      size  field
//	0           8     magic "SYNODSNP"
//	8           1     format version, 1
//	9           4     metadata length m (at most 4 MiB)
//	13          m     metadata: raftpb.AppendSnapshot of a Snapshot whose Data
//	                  is empty, i.e. the raftpb version byte, index and term
//	                  as uvarints, the ConfState, and a zero data length
//	13+m        4     CRC32C of bytes [0, 13+m): magic, version, length and
//	                  metadata
//	17+m        d     application data, d bytes, opaque to this package
//	17+m+d      8     d, the data length
//	25+m+d      4     CRC32C of the data
//	29+m+d      4     CRC32C of the 12 trailer bytes before it
//	33+m+d      8     end magic "SYNODEND"
//
// The header can be written before the data is known, and the data length
// and checksum after it, so a snapshot of any size streams from an
// io.Reader to the file in one pass through a fixed-size buffer; nothing
// holds the whole snapshot in memory. The trailer also makes truncation
// evident: a cut file lacks the end magic, and a file that was cut and then
// padded (or had bytes inserted) disagrees with the recorded length,
// because the data length must equal the file size minus header and trailer.
//
// Validation checks, in this order and before returning anything: the file
// is long enough, the magic and version, that the metadata length fits the
// file, the header CRC, the end magic, the trailer CRC, the data length
// against the file size, that the metadata decodes, that it matches the
// file name, and finally the data CRC over the whole data. Every failure is
// a *CorruptError, which wraps ErrCorrupt and names the file and the byte
// offset of the field that failed. The reader returned by a load streams
// the data a second time and checks its CRC again when it reaches the end,
// so a file damaged after validation is still reported instead of being
// handed on silently.
//
// # Durability protocol
//
// Save writes <name>.<n>.snap.tmp (n unique in the process) in the
// snapshot directory, flushes it and fsyncs it, closes it, renames it to
// <name>.snap and fsyncs the directory so that the rename itself survives
// a power loss. Only then does
// Save return. A crash at any point leaves either no file with the final
// name or a complete, synced one; temporary files are never read and are
// removed the next time a Snapshotter is opened on the directory. Every
// file operation goes through Options.FS, so that tests run the protocol
// on diskfs.MemFS and lose power before each of its steps.
//
// Loading walks the snapshots newest first. A file that fails validation is
// renamed to <name>.snap.broken (never deleted, for it may be the only copy
// of some state), the directory is fsynced, the problem is logged, and the
// next older file is tried. Other errors, such as permission denied or an
// I/O error, stop the load: they are problems of the machine, not of the
// file, and skipping over them would hide them.
//
// # Retention
//
// After each successful Save, a background goroutine removes the oldest
// snapshot files beyond Options.MaxSnapshots, never the newest. Purging
// runs only after a save, not when a directory is opened, so that a
// directory whose newest files are damaged keeps the older files a load
// may have to fall back to. Close stops the goroutine after finishing a
// purge that was already requested, and waits for it.
//
// A directory belongs to one Snapshotter at a time: New removes temporary
// files, which would break a save in progress in another process.
package snap

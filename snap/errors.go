package snap

import (
	"errors"
	"fmt"
)

// ErrNoSnapshot is wrapped by the error a load returns when the directory
// holds no valid snapshot (or, for LoadAt, not the one asked for). A new
// member expects it and starts from an empty state; callers test for it
// with errors.Is. When files were found but all were corrupt, the error
// wraps ErrCorrupt as well, so that a caller can refuse to start from
// scratch when state was clearly lost.
var ErrNoSnapshot = errors.New("snap: no valid snapshot")

// ErrCorrupt is wrapped by every error that reports a damaged snapshot
// file: truncated, bit-flipped, misnamed or not a snapshot at all. It lets
// callers tell damaged data, which an older snapshot or a peer can replace,
// from failures of the machine (permissions, I/O errors, a full disk),
// which need an operator.
var ErrCorrupt = errors.New("snap: corrupt snapshot file")

// ErrClosed is returned by the methods of a Snapshotter after Close, so
// that a late caller learns it lost a race with shutdown instead of
// touching a directory someone else may own by now.
var ErrClosed = errors.New("snap: snapshotter is closed")

// corruptHint tells the operator what to do about a corrupt file. Loads do
// the first part of it themselves.
const corruptHint = "the file was damaged (torn or interrupted write, disk error or manual edit); " +
	"loads move such files aside to *.broken and fall back to an older snapshot, " +
	"or the member fetches one from a healthy peer; keep the .broken file for diagnosis and delete it when no longer needed"

// CorruptError describes a snapshot file that failed validation. It wraps
// ErrCorrupt (and Err, when set), so callers use errors.Is(err, ErrCorrupt)
// and errors.As(err, &ce) to get at the location of the damage.
type CorruptError struct {
	// Path is the file that failed validation, as it was named when it
	// was checked (before any move aside).
	Path string
	// Offset is the byte offset in the file of the field that failed: the
	// start of a checksummed range, a length, or a magic number. A
	// checksum cannot say which byte of its range is wrong, so this is
	// where to start looking, not necessarily the damaged byte.
	Offset int64
	// Reason says which check failed and what was found.
	Reason string
	// Err is the underlying error, such as a raftpb decoding error; nil
	// when a check of this package failed by itself.
	Err error
}

// Error formats the file, the offset, the reason and what to do.
func (e *CorruptError) Error() string {
	reason := e.Reason
	if e.Err != nil {
		reason += ": " + e.Err.Error()
	}
	return fmt.Sprintf("snap: snapshot file %s is corrupt at byte offset %d: %s; %s", e.Path, e.Offset, reason, corruptHint)
}

// Unwrap returns ErrCorrupt and, when set, the underlying error.
func (e *CorruptError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

func corruptf(path string, off int64, format string, args ...any) *CorruptError {
	return &CorruptError{Path: path, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

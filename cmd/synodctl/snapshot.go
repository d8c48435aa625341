package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) snapshotCommand() *cobra.Command {
	return groupCommand("snapshot", "Save a snapshot of a member's key space, or restore a member from one", a.snapshotSaveCommand(), a.snapshotRestoreCommand())
}

// snapshotInfo describes a saved snapshot (and is its JSON output).
type snapshotInfo struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Revision int64  `json:"revision,omitempty"`
	Version  string `json:"version,omitempty"`
}

func (a *app) snapshotSaveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save <file>",
		Short: "Stream a snapshot of one member's key space into a file",
		Long: `Save streams a point-in-time snapshot from the single member given in
--endpoints into <file>. The stream ends with a SHA-256 digest of everything
before it; save checks it and fails if it does not match. The file (digest
included) is written under a temporary name, synced, and only then renamed to
<file>, so <file> is either absent, left as it was, or a complete snapshot.

The transfer has no overall time limit, but fails if the server sends nothing
for --command-timeout.`,
		Args: argsBetween(1, 1, "<file>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if len(a.g.endpoints) != 1 {
				return usageErrorf(cmd, "snapshot save needs exactly one endpoint to take the snapshot from, got %d (%v); pass --endpoints=<one member>", len(a.g.endpoints), a.g.endpoints)
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := a.downloadSnapshot(cmd.Context(), c, path)
			if err != nil {
				return err
			}
			return a.printer().snapshotSaved(info)
		},
	}
	return cmd
}

// downloadSnapshot streams a snapshot from c into path, failing if no data
// arrives for --command-timeout.
func (a *app) downloadSnapshot(parent context.Context, c etcdClient, path string) (snapshotInfo, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(a.g.commandTimeout, func() {
		stalled.Store(true)
		cancel()
	})
	defer watchdog.Stop()
	started := false
	fail := func(err error) (snapshotInfo, error) {
		switch {
		case stalled.Load() && !started:
			return snapshotInfo{}, fmt.Errorf("requesting a snapshot: no answer from %s within --command-timeout=%v: is the server up and reachable?", a.g.endpoints[0], a.g.commandTimeout)
		case stalled.Load():
			return snapshotInfo{}, fmt.Errorf("snapshot stream from %s stalled: nothing received for --command-timeout=%v; nothing was saved", a.g.endpoints[0], a.g.commandTimeout)
		}
		return snapshotInfo{}, err
	}
	resp, err := c.SnapshotWithVersion(ctx)
	if err != nil {
		return fail(fmt.Errorf("requesting a snapshot: %w", a.explain(err, nil)))
	}
	started = true
	watchdog.Reset(a.g.commandTimeout)
	defer resp.Snapshot.Close()
	info, err := saveSnapshot(path, &progressReader{r: resp.Snapshot, progress: func() { watchdog.Reset(a.g.commandTimeout) }})
	if err != nil {
		return fail(err)
	}
	info.Version = resp.Version
	info.Revision = resp.Header.GetRevision()
	return info, nil
}

// progressReader calls progress after every read that returned data.
type progressReader struct {
	r        io.Reader
	progress func()
}

// Read reads from the underlying reader and reports progress.
func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// saveSnapshot writes the snapshot stream r to path: into a temporary file
// in the same directory, verifying the trailing SHA-256 digest on the way,
// then fsync, rename over path, and fsync of the directory. On any error the
// temporary file is removed and path is left alone.
func saveSnapshot(path string, r io.Reader) (info snapshotInfo, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return info, fmt.Errorf("snapshot file %q names a directory", path)
	}
	f, err := os.CreateTemp(dir, "."+base+".part-*")
	if err != nil {
		return info, fmt.Errorf("creating the snapshot file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	v := newDigestVerifier()
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(io.MultiWriter(f, v), r, buf)
	if err != nil {
		return info, fmt.Errorf("receiving the snapshot after %d bytes: %w", n, err)
	}
	sum, err := v.verify()
	if err != nil {
		return info, err
	}
	if err = f.Sync(); err != nil {
		return info, fmt.Errorf("syncing the snapshot file: %w", err)
	}
	if err = f.Close(); err != nil {
		return info, fmt.Errorf("closing the snapshot file: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return info, fmt.Errorf("moving the snapshot into place: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		derr = d.Sync()
		d.Close()
		if derr != nil {
			return info, fmt.Errorf("syncing directory %s: %w", dir, derr)
		}
	}
	return snapshotInfo{Path: path, Size: n, SHA256: hex.EncodeToString(sum)}, nil
}

// digestVerifier checks a snapshot stream: the last sha256.Size bytes of
// everything written to it must be the SHA-256 of all the bytes before them.
// It hashes as data arrives and holds back only the latest 32 bytes, so it
// works on streams of any size and with writes of any size.
type digestVerifier struct {
	h     hash.Hash
	tail  [sha256.Size]byte
	ntail int
	total int64
}

func newDigestVerifier() *digestVerifier {
	return &digestVerifier{h: sha256.New()}
}

// Write takes the next bytes of the stream.
func (v *digestVerifier) Write(p []byte) (int, error) {
	n := len(p)
	v.total += int64(n)
	if v.ntail+n <= len(v.tail) {
		copy(v.tail[v.ntail:], p)
		v.ntail += n
		return n, nil
	}
	// Of tail[:ntail] followed by p, all but the last 32 bytes leave the
	// window and are hashed.
	out := v.ntail + n - len(v.tail)
	if out <= v.ntail {
		v.h.Write(v.tail[:out])
		copy(v.tail[:], v.tail[out:v.ntail])
		copy(v.tail[v.ntail-out:], p)
	} else {
		v.h.Write(v.tail[:v.ntail])
		v.h.Write(p[:out-v.ntail])
		copy(v.tail[:], p[out-v.ntail:])
	}
	v.ntail = len(v.tail)
	return n, nil
}

// errSnapshotDigest reports a snapshot whose trailing digest is wrong.
var errSnapshotDigest = errors.New("snapshot integrity check failed")

// verify checks the stream written so far, now complete, and returns the
// digest of its body.
func (v *digestVerifier) verify() ([]byte, error) {
	if v.ntail < len(v.tail) {
		return nil, fmt.Errorf("%w: the stream is %d bytes long, too short to end with a %d-byte SHA-256 digest", errSnapshotDigest, v.total, sha256.Size)
	}
	if v.total == int64(len(v.tail)) {
		return nil, fmt.Errorf("%w: the stream holds a digest but no data", errSnapshotDigest)
	}
	sum := v.h.Sum(nil)
	if !bytes.Equal(sum, v.tail[:]) {
		return nil, fmt.Errorf("%w: the stream's trailing SHA-256 digest %x does not match the digest %x of the %d bytes before it (the snapshot was corrupted in transit or by the server); nothing was saved",
			errSnapshotDigest, v.tail[:], sum, v.total-int64(len(v.tail)))
	}
	return sum, nil
}

// snapshotSaved prints "Snapshot saved at <file>" with its size.
func (p *printer) snapshotSaved(info snapshotInfo) error {
	if p.format == formatJSON {
		return p.json(info)
	}
	if info.Revision > 0 {
		p.linef("Snapshot saved at %s (%s at revision %d, SHA-256 verified)", info.Path, humanBytes(info.Size), info.Revision)
		return nil
	}
	p.linef("Snapshot saved at %s (%s, SHA-256 verified)", info.Path, humanBytes(info.Size))
	return nil
}

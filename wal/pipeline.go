package wal

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/synod-db/synod/diskfs"
)

// preparedFile is a segment file created and preallocated ahead of need.
type preparedFile struct {
	f    vfs.File
	name string
	err  error
}

// pipeline creates the next segment file in the background, so that moving
// to a new segment costs a rename instead of a creation and allocation on
// the write path. It keeps one file ready at a time.
type pipeline struct {
	fs     diskfs.FS
	dir    string
	size   int64
	logger *slog.Logger
	filec  chan preparedFile
	stop   chan struct{}
	done   chan struct{}
}

func newPipeline(fs diskfs.FS, dir string, size int64, logger *slog.Logger) *pipeline {
	p := &pipeline{fs: fs, dir: dir, size: size, logger: logger,
		filec: make(chan preparedFile), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *pipeline) run() {
	defer close(p.done)
	for n := 0; ; n++ {
		// Two names alternate: one may be handed out and not yet renamed
		// while the next is created.
		name := filepath.Join(p.dir, fmt.Sprintf("%d.wal.tmp", n%2))
		pf := preparedFile{name: name}
		pf.f, pf.err = p.fs.Create(name, vfs.WriteCategoryUnspecified)
		if pf.err == nil {
			if pf.err = pf.f.Preallocate(0, p.size); pf.err != nil {
				pf.f.Close()
				pf.f = nil
			}
		}
		select {
		case p.filec <- pf:
			if pf.err != nil {
				// Report once, then wait to be stopped: retrying in a loop
				// would spin on a persistent failure (a full disk).
				<-p.stop
				return
			}
		case <-p.stop:
			if pf.f != nil {
				pf.f.Close()
				if err := p.fs.Remove(name); err != nil {
					p.logger.Warn("wal: removing unused prepared segment", "file", name, "err", err)
				}
			}
			return
		}
	}
}

// take returns the prepared file, waiting for it if needed.
func (p *pipeline) take() (preparedFile, error) {
	pf := <-p.filec
	return pf, pf.err
}

// close stops the goroutine and removes the file it prepared.
func (p *pipeline) close() {
	close(p.stop)
	<-p.done
}

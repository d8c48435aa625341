package mvcc

import (
	"bytes"
	"hash/maphash"
	"sync/atomic"
)

// hotReads keeps the c space values of keys read recently at the current
// revision, so that a key many clients read (a configuration entry, a
// leader's key) costs a hash and a compare instead of a Pebble lookup: the
// lookup was 9% of a leader's CPU serving one key to 1000 clients.
//
// It is a direct-mapped table: a key has one slot, a read fills it, and a
// read of another key with the same slot replaces it. Values larger than
// hotMaxValue are not kept, so the table holds at most hotSlots of them.
//
// Invariant: a filled slot holds the key's c space value as of the
// store's current revision. Slots are filled only under mu.RLock, and a
// write group empties the slots of every key it wrote (dirty, which it
// gathers under wmu) under mu.Lock in the same critical section that
// makes its writes visible; Restore empties them all. So no read can
// find, or put back, a value older than the last commit.
type hotReads struct {
	seed  maphash.Seed
	slots [hotSlots]atomic.Pointer[hotEntry]
	dirty []uint32 // slots of keys written by the open group; guarded by wmu
}

// hotEntry is one slot's content.
type hotEntry struct {
	key   []byte
	value []byte // as stored in the c space: revision, then record
}

const (
	hotSlots    = 1024
	hotMaxValue = 1024
)

func newHotReads() *hotReads { return &hotReads{seed: maphash.MakeSeed()} }

func (h *hotReads) slot(key []byte) uint32 {
	return uint32(maphash.Bytes(h.seed, key)) & (hotSlots - 1)
}

// get returns key's cached c space value, or nil.
func (h *hotReads) get(key []byte) []byte {
	if e := h.slots[h.slot(key)].Load(); e != nil && bytes.Equal(e.key, key) {
		return e.value
	}
	return nil
}

// fill caches key's c space value (copied). The caller holds mu.RLock.
func (h *hotReads) fill(key, value []byte) {
	if len(value) > hotMaxValue {
		return
	}
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	h.slots[h.slot(key)].Store(&hotEntry{key: buf[:len(key):len(key)], value: buf[len(key):]})
}

// written notes that the open write group changed key. The caller holds wmu.
func (h *hotReads) written(key []byte) { h.dirty = append(h.dirty, h.slot(key)) }

// commit empties the slots of the keys the group wrote; forget drops the
// list without emptying them (the group changed nothing). The caller of
// commit holds mu.Lock, and wmu for both.
func (h *hotReads) commit() {
	for _, i := range h.dirty {
		h.slots[i].Store(nil)
	}
	h.dirty = h.dirty[:0]
}

func (h *hotReads) forget() { h.dirty = h.dirty[:0] }

// clear empties every slot. The caller holds mu.Lock.
func (h *hotReads) clear() {
	for i := range h.slots {
		h.slots[i].Store(nil)
	}
	h.dirty = h.dirty[:0]
}

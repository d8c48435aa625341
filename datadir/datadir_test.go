package datadir

import (
	"path/filepath"
	"testing"
)

// TestLayout checks etcd's layout, and that --wal-dir moves only the WAL.
func TestLayout(t *testing.T) {
	l := New("/d", "")
	for got, want := range map[string]string{
		l.Member(): "/d/member", l.WAL(): "/d/member/wal", l.Snap(): "/d/member/snap",
		l.Incoming(): "/d/member/snap.incoming", l.KV(): "/d/member/kv",
	} {
		if got != filepath.FromSlash(want) {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if l := New("/d", "/fast/wal"); l.WAL() != "/fast/wal" || l.KV() != "/d/member/kv" {
		t.Errorf("with a WAL directory: WAL %s, KV %s", l.WAL(), l.KV())
	}
}

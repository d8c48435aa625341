package snap

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/synod-db/synod/diskfs"
	pb "github.com/synod-db/synod/raft/raftpb"
)

// TestPowerLoss loses power before each file-system operation of a save
// (and of the purge that follows it), keeping none or all of the
// directory operations not yet synced, and checks what the durability
// protocol promises: the directory then loads the new snapshot or the one
// before it, whole; never a torn file, never nothing; and reopening it
// leaves no temporary file behind. It also checks that a save that
// returned survives.
func TestPowerLoss(t *testing.T) {
	data := func(index uint64) []byte { return bytes.Repeat([]byte{byte(index)}, 100_000+int(index)) }
	save := func(s *Snapshotter, index uint64) error {
		return s.SaveFrom(pb.SnapshotMetadata{Index: index, Term: 1}, bytes.NewReader(data(index)))
	}
	crashes := 0
	for n := 1; ; n++ {
		done := false
		for _, keep := range []int{0, 1 << 30} {
			seed := uint64(n)<<1 | uint64(keep&1)
			fs := diskfs.NewMemFS(rand.New(rand.NewPCG(seed, 1)))
			fs.KeepDirOps(keep)
			s, err := New("/m/snap", Options{FS: fs, MaxSnapshots: 1, Logger: discardLogger()})
			mustT(t, err)
			mustT(t, save(s, 10))
			fs.Arm(n)
			err = save(s, 20)
			s.Close() // waits for the purge the save asked for
			dead, img := fs.PowerLost()
			if !dead {
				fs.Disarm()
				if err != nil {
					t.Fatalf("save without a crash: %v", err)
				}
				done = true
				img = fs.Crash(rand.New(rand.NewPCG(seed, 2)))
			}
			want := []uint64{10, 20}
			if err == nil {
				want = []uint64{20} // a save that returned is durable
			}
			s, err = New("/m/snap", Options{FS: img, MaxSnapshots: 1, Logger: discardLogger()})
			if err != nil {
				t.Fatalf("power lost before operation %d (%s), keeping %d directory operations: reopening: %v", n, fs.CrashOp(), keep, err)
			}
			meta, r, err := s.LoadNewest()
			if err != nil {
				t.Fatalf("power lost before operation %d (%s), keeping %d directory operations: no snapshot loads: %v", n, fs.CrashOp(), keep, err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data(meta.Index)) || !slices.Contains(want, meta.Index) {
				t.Fatalf("power lost before operation %d (%s), keeping %d directory operations: loaded snapshot %d (%d bytes, %v), want one of %v whole",
					n, fs.CrashOp(), keep, meta.Index, len(got), err, want)
			}
			names, err := img.List("/m/snap")
			mustT(t, err)
			for _, name := range names {
				if strings.HasSuffix(name, tmpSuffix) || strings.HasSuffix(name, brokenSuffix) {
					t.Fatalf("power lost before operation %d (%s): %s left in %v", n, fs.CrashOp(), name, names)
				}
			}
			s.Close()
			if dead {
				crashes++
			}
		}
		if done {
			break
		}
	}
	t.Logf("%d crashes", crashes)
	if crashes < 8 {
		t.Fatalf("only %d crashes: the save has fewer steps than expected", crashes)
	}
}

func mustT(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

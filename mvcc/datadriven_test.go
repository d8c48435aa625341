package mvcc

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestHistoryScripts runs the scripts in testdata/history against a
// fresh store per file: writes, compactions, and reads of the key space
// at any revision, each followed by what it returns. Rewrite the
// expected output after an intended change with
//
//	go test ./mvcc -run TestHistoryScripts -rewrite
//
// Commands:
//
//	put <key>=<value>...        one revision per put
//	del <key> [end=<end>]       delete a key or the range [key, end)
//	compact rev=<n>
//	get [<key>] [end=<end>] [rev=<n>]   the live keys (all if no key)
//	history <key>               the key at every revision since the last
//	                            compaction: its value, or absent
func TestHistoryScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/history", func(t *testing.T, path string) {
		s, err := Open(filepath.Join(t.TempDir(), "db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var index uint64 // raft index of each write: one per command
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			index++
			var out strings.Builder
			switch d.Cmd {
			case "put":
				for _, a := range d.CmdArgs {
					rev, _, err := s.Put(index, []byte(a.Key), []byte(a.SingleVal(t)), 0, PutOptions{})
					if err != nil {
						return fmt.Sprintf("error: %v\n", err)
					}
					index++
					fmt.Fprintf(&out, "rev=%d\n", rev)
				}
			case "del":
				var end string
				if d.HasArg("end") {
					d.ScanArgs(t, "end", &end)
				}
				rev, n, _, err := s.DeleteRange(index, []byte(d.CmdArgs[0].Key), bytesOrNil(end), false)
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				fmt.Fprintf(&out, "deleted=%d rev=%d\n", n, rev)
			case "compact":
				var rev int64
				d.ScanArgs(t, "rev", &rev)
				if err := s.Compact(index, rev); err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				fmt.Fprintf(&out, "compacted=%d rev=%d\n", s.CompactedRev(), s.Rev())
			case "get":
				key, end := "\x00", "\x00"
				if len(d.CmdArgs) > 0 && d.CmdArgs[0].Key != "end" && d.CmdArgs[0].Key != "rev" {
					key, end = d.CmdArgs[0].Key, ""
				}
				if d.HasArg("end") {
					d.ScanArgs(t, "end", &end)
				}
				var rev int64
				if d.HasArg("rev") {
					d.ScanArgs(t, "rev", &rev)
				}
				res, err := s.Range([]byte(key), bytesOrNil(end), RangeOptions{Rev: rev})
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				for _, kv := range res.KVs {
					fmt.Fprintf(&out, "%s=%s (create=%d mod=%d ver=%d)\n", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
				}
				if len(res.KVs) == 0 {
					out.WriteString("(none)\n")
				}
			case "history":
				key := []byte(d.CmdArgs[0].Key)
				for rev := max(s.CompactedRev(), 1); rev <= s.Rev(); rev++ {
					res, err := s.Range(key, nil, RangeOptions{Rev: rev})
					if err != nil {
						fmt.Fprintf(&out, "%d: error: %v\n", rev, err)
						continue
					}
					if len(res.KVs) == 0 {
						fmt.Fprintf(&out, "%d: absent\n", rev)
						continue
					}
					fmt.Fprintf(&out, "%d: %s (ver=%d)\n", rev, res.KVs[0].Value, res.KVs[0].Version)
				}
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			return out.String()
		})
	})
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

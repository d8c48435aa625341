// Package invariants switches on runtime checks of invariants that are
// worth their cost in tests but not in production: revisions of a write
// group, the revision order of watch notifications, the shape of the raft
// log. They are on in race builds (go test -race, which CI runs) and with
// the build tag "invariants" (go test -tags invariants), and compiled out
// otherwise, since Enabled is a constant.
//
// A violated invariant panics: it means a bug that would otherwise
// corrupt state quietly.
package invariants

import "fmt"

// Enabled reports whether invariant checks run.
const Enabled = raceEnabled || tagEnabled

// Check panics with the formatted message if ok is false. Call it only
// under Enabled, so that building its arguments costs nothing otherwise.
func Check(ok bool, format string, args ...any) {
	if !ok {
		panic("invariant violated: " + fmt.Sprintf(format, args...))
	}
}

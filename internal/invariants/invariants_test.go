package invariants

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	Check(true, "never printed %d", 1)
	defer func() {
		r := recover()
		if s, ok := r.(string); !ok || !strings.Contains(s, "invariant violated: revision 3 after 5") {
			t.Fatalf("panic %v, want the formatted violation", r)
		}
	}()
	Check(false, "revision %d after %d", 3, 5)
	t.Fatal("a violated check did not panic")
}

// TestEnabledUnderRace documents that go test -race turns the checks on.
func TestEnabledUnderRace(t *testing.T) {
	if raceEnabled && !Enabled {
		t.Fatal("race build without invariant checks")
	}
}

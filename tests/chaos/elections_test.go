package chaos

import (
	"strings"
	"testing"
)

// TestElectionSafetyCheck feeds the log scanner the lines of the split
// brain CI once caught (a restarted member electing itself alone in the
// real leader's term) and a healthy history, and checks that only the
// first is reported, with raft IDs too large for a float64 kept exact.
func TestElectionSafetyCheck(t *testing.T) {
	const (
		m0        = `{"time":"t","level":"INFO","msg":"raft: became leader","member":"m0","raft":6278291911631794174,"term":3}`
		m2        = `{"time":"t","level":"INFO","msg":"raft: became leader","member":"m2","raft":14045905302388107833,"term":3}`
		m2earlier = `{"time":"t","level":"INFO","msg":"raft: became leader","member":"m2","raft":14045905302388107833,"term":2}`
		other     = `{"time":"t","level":"INFO","msg":"raft: became follower","raft":6278291911631794174,"term":3}`
	)
	cases := []struct {
		name string
		logs []string
		want []string
	}{
		{"one leader per term", []string{m2earlier + "\n" + m2, other + "\npanic: not json\n"}, nil},
		{"same member twice in a term", []string{m2, m2}, nil},
		{"two leaders of term 3", []string{m2earlier + "\n" + m2, other + "\n" + m0},
			[]string{"election safety: members 14045905302388107833, 6278291911631794174 all became leader of term 3"}},
	}
	for _, c := range cases {
		leaders := map[string][]string{}
		for _, l := range c.logs {
			if err := scanLeaders(strings.NewReader(l), leaders); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		got := electionViolations(leaders)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: violations %q, want %q", c.name, got, c.want)
		}
	}
}

// TestElectionSafetyCheckRejectsIncompleteLines checks that a leader line
// without its term is an error rather than silently ignored: a change of
// the log format must not switch the check off.
func TestElectionSafetyCheckRejectsIncompleteLines(t *testing.T) {
	err := scanLeaders(strings.NewReader(`{"msg":"raft: became leader","raft":1}`), map[string][]string{})
	if err == nil {
		t.Fatal("a leader line without a term was accepted")
	}
}

package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// leaderLine is the message raft logs when a member becomes leader; the
// record carries the member's raft ID ("raft") and the term ("term").
const leaderLine = "raft: became leader"

// checkElections checks Raft's election safety from the members' logs:
// at most one member becomes leader in any term. The other checks see
// only what clients see, and a second leader that commits nothing a
// client asked for (a restarted member electing itself alone, say) leaves
// no trace there. The logs of every incarnation of every member are read
// (Cluster.SaveLogs keeps them); a log that cannot be read is reported.
func checkElections(cl Cluster) []string {
	dir, err := os.MkdirTemp("", "synod-chaos-logs-")
	if err != nil {
		return []string{"election safety: " + err.Error()}
	}
	defer os.RemoveAll(dir)
	if err := cl.SaveLogs(dir); err != nil {
		return []string{"election safety: saving the members' logs: " + err.Error()}
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return []string{"election safety: " + err.Error()}
	}
	leaders := map[string][]string{} // term -> raft IDs that became its leader
	var bad []string
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			bad = append(bad, "election safety: "+err.Error())
			continue
		}
		err = scanLeaders(f, leaders)
		f.Close()
		if err != nil {
			bad = append(bad, fmt.Sprintf("election safety: reading %s: %v", filepath.Base(name), err))
		}
	}
	if len(leaders) == 0 {
		// Every run elects a leader: finding none means the log format
		// changed under this check, which must not pass silently.
		bad = append(bad, fmt.Sprintf("election safety: no %q line in the %d member logs", leaderLine, len(names)))
	}
	return append(bad, electionViolations(leaders)...)
}

// scanLeaders adds the (term, member) pairs of the leader lines of a JSON
// log to leaders. Lines that are not JSON (a panic's stack) are skipped.
// Numbers are kept as text: raft IDs do not fit a float64.
func scanLeaders(r io.Reader, leaders map[string][]string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), leaderLine) {
			continue
		}
		var rec struct {
			Msg  string      `json:"msg"`
			Raft json.Number `json:"raft"`
			Term json.Number `json:"term"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Msg != leaderLine {
			continue
		}
		if rec.Raft == "" || rec.Term == "" {
			return fmt.Errorf("a %q line without its member or term: %s", leaderLine, line)
		}
		id, term := rec.Raft.String(), rec.Term.String()
		if !slices.Contains(leaders[term], id) {
			leaders[term] = append(leaders[term], id)
		}
	}
	return sc.Err()
}

// electionViolations names every term with more than one leader.
func electionViolations(leaders map[string][]string) []string {
	var bad []string
	for term, ids := range leaders {
		if len(ids) > 1 {
			slices.Sort(ids)
			bad = append(bad, fmt.Sprintf("election safety: members %s all became leader of term %s", strings.Join(ids, ", "), term))
		}
	}
	slices.Sort(bad)
	return bad
}

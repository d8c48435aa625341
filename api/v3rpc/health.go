package v3rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Health is what the health endpoints ask of a member.
type Health interface {
	Member
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error)
}

// The health endpoints answer as etcd's do, because load balancers,
// Kubernetes probes and etcd's own tests read them:
//   - /health: JSON {"health","reason"}; an active alarm (unless named in
//     ?exclude=), no leader (unless ?serializable=true) or a failed
//     one-key read makes it 503.
//   - /livez and /readyz: named checks, "ok" or 503 with a line per
//     failed check; ?exclude= skips checks, ?verbose lists them all, and
//     /livez/<check> or /readyz/<check> runs one.
func installHealth(mux *http.ServeMux, s Health) {
	mux.HandleFunc("/health", getOnly(func(w http.ResponseWriter, r *http.Request) { health(w, r, s) }))
	installChecks(mux, "/livez", []namedCheck{
		{"serializable_read", readCheck(s, true)},
	})
	installChecks(mux, "/readyz", []namedCheck{
		{"data_corruption", alarmCheck(s, pb.AlarmType_CORRUPT)},
		{"serializable_read", readCheck(s, true)},
		{"linearizable_read", readCheck(s, false)},
		{"non_learner", func(context.Context) error {
			if s.IsLearner() {
				return fmt.Errorf("not supported for learner")
			}
			return nil
		}},
	})
}

// getOnly refuses every method but GET, as etcd's health endpoints do.
func getOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}
}

// queryList collects a query parameter given repeatedly or as a
// comma-separated list.
func queryList(r *http.Request, name string) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.URL.Query()[name] {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out[part] = true
			}
		}
	}
	return out
}

// health answers /health.
func health(w http.ResponseWriter, r *http.Request, s Health) {
	type result struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	serializable := r.URL.Query().Get("serializable") == "true"
	reason := ""
	if alarm := activeAlarm(r.Context(), s, queryList(r, "exclude")); alarm != "" {
		reason = "ALARM " + alarm
	} else if !serializable && s.Leader() == 0 {
		reason = "RAFT NO LEADER"
	} else if err := readCheck(s, serializable)(r.Context()); err != nil {
		reason = "RANGE ERROR:" + err.Error()
	}
	if reason != "" {
		b, _ := json.Marshal(result{Health: "false", Reason: reason})
		http.Error(w, string(b), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, result{Health: "true"})
}

// activeAlarm names the first active alarm not excluded ("NOSPACE",
// "CORRUPT", or "UNKNOWN" for any other), or "".
func activeAlarm(ctx context.Context, s Health, exclude map[string]bool) string {
	resp, err := s.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	if err != nil {
		return ""
	}
	for _, a := range resp.Alarms {
		if exclude[a.Alarm.String()] {
			continue
		}
		switch a.Alarm {
		case pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT:
			return a.Alarm.String()
		}
		return "UNKNOWN"
	}
	return ""
}

// namedCheck is one check of /livez or /readyz.
type namedCheck struct {
	name  string
	check func(context.Context) error
}

// readCheck reads one key, within the request timeout.
func readCheck(s Health, serializable bool) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, s.Config().RequestTimeout)
		defer cancel()
		_, err := s.Range(ctx, &pb.RangeRequest{Key: []byte{0}, KeysOnly: true, Limit: 1, Serializable: serializable})
		return err
	}
}

// alarmCheck fails while an alarm of type t is active.
func alarmCheck(s Health, t pb.AlarmType) func(context.Context) error {
	return func(ctx context.Context) error {
		resp, err := s.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET, Alarm: t})
		if err != nil {
			return err
		}
		if len(resp.Alarms) > 0 {
			return fmt.Errorf("alarm activated: %s", t)
		}
		return nil
	}
}

// installChecks serves root (all checks but the excluded ones) and
// root/<name> (that check alone).
func installChecks(mux *http.ServeMux, root string, checks []namedCheck) {
	mux.HandleFunc(root, getOnly(func(w http.ResponseWriter, r *http.Request) {
		exclude := queryList(r, "exclude")
		var run []namedCheck
		for _, c := range checks {
			if !exclude[c.name] {
				run = append(run, c)
			}
		}
		runChecks(w, r, run)
	}))
	for _, c := range checks {
		mux.HandleFunc(root+"/"+c.name, getOnly(func(w http.ResponseWriter, r *http.Request) {
			runChecks(w, r, []namedCheck{c})
		}))
	}
}

// runChecks runs checks and answers "ok", or 503 with every check's
// outcome; ?verbose lists the outcomes of a success too.
func runChecks(w http.ResponseWriter, r *http.Request, checks []namedCheck) {
	var report strings.Builder
	failed := false
	for _, c := range checks {
		if err := c.check(r.Context()); err != nil {
			failed = true
			fmt.Fprintf(&report, "[-]%s failed: %v\n", c.name, err)
		} else {
			fmt.Fprintf(&report, "[+]%s ok\n", c.name)
		}
	}
	if failed {
		http.Error(w, report.String(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, ok := r.URL.Query()["verbose"]; ok {
		fmt.Fprint(w, report.String())
	}
	fmt.Fprint(w, "ok\n")
}

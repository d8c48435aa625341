package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (a *app) endpointCommand() *cobra.Command {
	var cluster bool
	cmd := groupCommand("endpoint", "Check the endpoints given in --endpoints (or the whole cluster)",
		a.endpointStatusCommand(&cluster),
		a.endpointHealthCommand(&cluster),
	)
	cmd.PersistentFlags().BoolVar(&cluster, "cluster", false, "check every member's client URLs (from member list) instead of --endpoints")
	return cmd
}

// targetEndpoints returns the endpoints a per-endpoint command works on:
// --endpoints, or with cluster the client URLs of every member.
func (a *app) targetEndpoints(ctx context.Context, cluster bool) ([]string, error) {
	if !cluster {
		return a.g.endpoints, nil
	}
	c, err := a.connect(nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rctx, cancel := a.requestContext(ctx)
	defer cancel()
	resp, err := c.MemberList(rctx)
	if err != nil {
		return nil, fmt.Errorf("listing the members for --cluster: %w", a.explain(err, nil))
	}
	var eps []string
	for _, m := range resp.Members {
		for _, u := range m.GetClientURLs() {
			if !slices.Contains(eps, u) {
				eps = append(eps, u)
			}
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("--cluster: no member has client URLs")
	}
	return eps, nil
}

// forEach runs f for each endpoint concurrently and waits for all of them.
func forEach(endpoints []string, f func(i int, ep string)) {
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i, ep)
		}()
	}
	wg.Wait()
}

// endpointStatus is the status of one endpoint, as endpoint status prints it.
type endpointStatus struct {
	Endpoint string                   `json:"Endpoint"`
	Status   *clientv3.StatusResponse `json:"Status"`
}

func (a *app) endpointStatusCommand(cluster *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the status of each endpoint",
		Long: `Status prints, for each endpoint: its member ID, server version, database size
(allocated and in use), whether it is the leader and whether a learner, its
raft term, raft index and applied index, and any errors (alarms) it reports.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := a.targetEndpoints(cmd.Context(), *cluster)
			if err != nil {
				return err
			}
			c, err := a.connect(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			results := make([]*clientv3.StatusResponse, len(eps))
			errs := make([]error, len(eps))
			forEach(eps, func(i int, ep string) {
				ctx, cancel := a.requestContext(cmd.Context())
				defer cancel()
				results[i], errs[i] = c.Status(ctx, ep)
			})
			var ok []endpointStatus
			failed := 0
			for i, ep := range eps {
				if errs[i] != nil {
					failed++
					fmt.Fprintf(a.stderr, "Failed to get the status of endpoint %s: %v\n", ep, a.explain(errs[i], []string{ep}))
					continue
				}
				ok = append(ok, endpointStatus{Endpoint: ep, Status: results[i]})
			}
			if err := a.printer().endpointStatus(ok); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("failed to get the status of %d of %d endpoints", failed, len(eps))
			}
			return nil
		},
	}
	return setFormats(cmd, formatSimple, formatJSON, formatTable)
}

// statusRow is an endpoint status's fields as endpoint status prints them.
func statusRow(s endpointStatus) []string {
	r := s.Status
	id := r.Header.GetMemberId()
	return []string{
		s.Endpoint,
		memberIDString(id),
		r.Version,
		humanBytes(r.DbSize),
		humanBytes(r.DbSizeInUse),
		strconv.FormatBool(id != 0 && id == r.Leader),
		strconv.FormatBool(r.IsLearner),
		strconv.FormatUint(r.RaftTerm, 10),
		strconv.FormatUint(r.RaftIndex, 10),
		strconv.FormatUint(r.RaftAppliedIndex, 10),
		strings.Join(r.Errors, ", "),
	}
}

// endpointStatus prints endpoint statuses, one per line or row.
func (p *printer) endpointStatus(statuses []endpointStatus) error {
	switch p.format {
	case formatJSON:
		if statuses == nil {
			statuses = []endpointStatus{}
		}
		return p.json(statuses)
	case formatTable:
		rows := make([][]string, 0, len(statuses))
		for _, s := range statuses {
			rows = append(rows, statusRow(s))
		}
		return p.table([]string{"ENDPOINT", "ID", "VERSION", "DB SIZE", "DB SIZE IN USE", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"}, rows)
	}
	for _, s := range statuses {
		p.linef("%s", strings.Join(statusRow(s), ", "))
	}
	return nil
}

// endpointHealth is the health of one endpoint, as endpoint health prints it.
type endpointHealth struct {
	Endpoint string `json:"endpoint"`
	Health   bool   `json:"health"`
	Took     string `json:"took"`
	Error    string `json:"error,omitempty"`
}

func (a *app) endpointHealthCommand(cluster *bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that each endpoint serves a linearizable read and has no alarm",
		Long: `Health reads the key "health" through each endpoint alone (a linearizable read,
so the endpoint must reach the leader and a quorum), then checks that the
cluster has no active alarm. It fails if any endpoint is unhealthy.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := a.targetEndpoints(cmd.Context(), *cluster)
			if err != nil {
				return err
			}
			results := make([]endpointHealth, len(eps))
			forEach(eps, func(i int, ep string) {
				results[i] = a.checkHealth(cmd.Context(), ep)
			})
			if err := a.printer().endpointHealth(results); err != nil {
				return err
			}
			unhealthy := 0
			for _, h := range results {
				if !h.Health {
					unhealthy++
				}
			}
			if unhealthy > 0 {
				return fmt.Errorf("unhealthy cluster: %d of %d endpoints are unhealthy", unhealthy, len(eps))
			}
			return nil
		},
	}
	return setFormats(cmd, formatSimple, formatJSON, formatTable)
}

// checkHealth checks one endpoint through a client connected to it alone.
func (a *app) checkHealth(ctx context.Context, ep string) endpointHealth {
	h := endpointHealth{Endpoint: ep}
	c, err := a.connect([]string{ep})
	if err != nil {
		h.Error = err.Error()
		h.Took = "0s"
		return h
	}
	defer c.Close()
	rctx, cancel := a.requestContext(ctx)
	defer cancel()
	start := time.Now()
	_, err = c.Get(rctx, "health")
	h.Took = time.Since(start).Round(time.Microsecond).String()
	// A permission error still proves that the request went through raft.
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		h.Error = "failed to commit proposal: " + a.explain(err, []string{ep}).Error()
		return h
	}
	alarms, err := c.AlarmList(rctx)
	if err != nil {
		h.Error = "failed to list alarms: " + a.explain(err, []string{ep}).Error()
		return h
	}
	if len(alarms.Alarms) > 0 {
		var names []string
		for _, al := range alarms.Alarms {
			names = append(names, al.GetAlarm().String())
		}
		h.Error = "active alarm(s): " + strings.Join(names, ", ")
		return h
	}
	h.Health = true
	return h
}

// endpointHealth prints endpoint health results, one per line or row.
func (p *printer) endpointHealth(results []endpointHealth) error {
	switch p.format {
	case formatJSON:
		return p.json(results)
	case formatTable:
		rows := make([][]string, 0, len(results))
		for _, h := range results {
			rows = append(rows, []string{h.Endpoint, strconv.FormatBool(h.Health), h.Took, h.Error})
		}
		return p.table([]string{"ENDPOINT", "HEALTH", "TOOK", "ERROR"}, rows)
	}
	for _, h := range results {
		writeHealthLine(p.w, h)
	}
	return nil
}

func writeHealthLine(w io.Writer, h endpointHealth) {
	if h.Health {
		fmt.Fprintf(w, "%s is healthy: successfully committed proposal: took = %s\n", h.Endpoint, h.Took)
		return
	}
	fmt.Fprintf(w, "%s is unhealthy: %s\n", h.Endpoint, h.Error)
}

package v3rpc

import (
	"encoding/json"
	"expvar"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/synod-db/synod/server"
)

// NewHTTPHandler serves /health, /livez, /readyz, /version, /metrics and
// /debug/vars (and /debug/pprof with enablePprof) for member s, and the
// JSON gateway's paths if gateway is not nil.
func NewHTTPHandler(s Health, m *Metrics, enablePprof bool, gateway http.Handler) http.Handler {
	mux := http.NewServeMux()
	if gateway != nil {
		for _, p := range gatewayPrefixes {
			mux.Handle(p, gateway)
		}
	}
	installHealth(mux, s)
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"etcdserver": server.Version, "etcdcluster": server.ClusterVersion})
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	// The process's exported variables (command line, memory statistics)
	// as JSON, served by etcd too.
	mux.Handle("/debug/vars", expvar.Handler())
	if enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

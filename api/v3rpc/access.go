package v3rpc

import (
	"fmt"
	"net"
	"net/http"
	"slices"
)

// accessControl guards the client port's HTTP side as etcd's
// --host-whitelist and --cors do. Empty lists, or lists holding "*",
// allow everything (etcd's defaults).
//
// The host whitelist defends against DNS rebinding: a web page whose
// domain an attacker re-points at 127.0.0.1 could otherwise make a
// browser on the member's machine read and write keys. A request whose
// Host header names no listed host is refused with 421 Misdirected
// Request. CORS answers browsers' preflights (OPTIONS) and names the
// allowed origins.
type accessControl struct {
	hosts, origins []string
	next           http.Handler
}

func allowsAll(list []string) bool { return len(list) == 0 || slices.Contains(list, "*") }

// withAccessControl wraps h, or returns h itself when o allows all.
func withAccessControl(h http.Handler, o Options) http.Handler {
	if allowsAll(o.HostWhitelist) && len(o.CORS) == 0 {
		return h
	}
	return &accessControl{hosts: o.HostWhitelist, origins: o.CORS, next: h}
}

func (a *accessControl) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil && !allowsAll(a.hosts) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !slices.Contains(a.hosts, host) {
			http.Error(w, fmt.Sprintf("the Host header %q is not in this member's --host-whitelist; "+
				"connect through a listed host name, or add it (--host-whitelist %q); "+
				"the whitelist guards against DNS rebinding (CVE-2018-5702)", host, host), http.StatusMisdirectedRequest)
			return
		}
	}
	if allowsAll(a.origins) {
		corsHeaders(w, "*")
	} else if origin := r.Header.Get("Origin"); slices.Contains(a.origins, origin) {
		corsHeaders(w, origin)
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	a.next.ServeHTTP(w, r)
}

func corsHeaders(w http.ResponseWriter, origin string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
	h.Set("Access-Control-Allow-Headers", "accept, content-type, authorization")
}

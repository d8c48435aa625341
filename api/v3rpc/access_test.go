package v3rpc

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAccessControl: --host-whitelist refuses plain-HTTP requests for an
// unlisted Host (with or without a port) with 421 and serves listed ones;
// --cors names the allowed origin and answers preflights; the defaults
// ("*") let everything through.
func TestAccessControl(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	do := func(h http.Handler, method, host, origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "http://"+host+"/v3/kv/range", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	guarded := withAccessControl(ok, Options{HostWhitelist: []string{"localhost", "10.0.0.1"}, CORS: []string{"https://ui.example"}})
	for _, tc := range []struct {
		method, host, origin string
		code                 int
		allowOrigin          string
	}{
		{"POST", "localhost:2379", "", http.StatusTeapot, ""},
		{"POST", "10.0.0.1", "", http.StatusTeapot, ""},
		{"POST", "attacker.example:2379", "", http.StatusMisdirectedRequest, ""},
		{"POST", "localhost", "https://ui.example", http.StatusTeapot, "https://ui.example"},
		{"POST", "localhost", "https://other.example", http.StatusTeapot, ""},
		{"OPTIONS", "localhost", "https://ui.example", http.StatusOK, "https://ui.example"},
	} {
		rec := do(guarded, tc.method, tc.host, tc.origin)
		if rec.Code != tc.code || rec.Header().Get("Access-Control-Allow-Origin") != tc.allowOrigin {
			t.Errorf("%s Host %s Origin %q: %d, allowed origin %q; want %d, %q", tc.method, tc.host, tc.origin,
				rec.Code, rec.Header().Get("Access-Control-Allow-Origin"), tc.code, tc.allowOrigin)
		}
	}
	open := withAccessControl(ok, Options{HostWhitelist: []string{"*"}, CORS: []string{"*"}})
	if rec := do(open, "POST", "anything.example", "https://x.example"); rec.Code != http.StatusTeapot || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("defaults: %d, allowed origin %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
	}
}

package livesync

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDisableDemoAndMetricsRoute: the two options leave their routes out
// of Handler and nothing else.
func TestDisableDemoAndMetricsRoute(t *testing.T) {
	for _, tc := range []struct {
		opts          Options
		demo, metrics int
	}{
		{Options{}, 200, 200},
		{Options{DisableDemo: true}, 404, 200},
		{Options{DisableMetricsRoute: true}, 200, 404},
		{Options{DisableDemo: true, DisableMetricsRoute: true}, 404, 404},
	} {
		o := tc.opts
		o.Logger = slog.New(slog.DiscardHandler)
		s, err := New(&o)
		if err != nil {
			t.Fatal(err)
		}
		h := s.Handler()
		for path, want := range map[string]int{"/demo": tc.demo, "/metrics": tc.metrics, "/healthz": 200} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != want {
				t.Errorf("DisableDemo %v, DisableMetricsRoute %v: GET %s = %d, want %d",
					o.DisableDemo, o.DisableMetricsRoute, path, rec.Code, want)
			}
		}
		s.Shutdown(t.Context())
	}
}

// TestAllowedOriginsAcceptTheServersOwnSite: with an allowlist of other
// sites, a page of the server's own host (the demo) may still connect;
// other origins may not.
func TestAllowedOriginsAcceptTheServersOwnSite(t *testing.T) {
	check := originChecker([]string{"https://app.example.com"})
	for _, tc := range []struct {
		host, origin string
		ok           bool
	}{
		{"live.example.com", "", true},
		{"live.example.com", "https://app.example.com", true},
		{"live.example.com", "https://live.example.com", true},
		{"LIVE.example.com", "http://live.example.com", true},
		{"127.0.0.1:3000", "http://127.0.0.1:3000", true},
		{"127.0.0.1:3000", "http://127.0.0.1:3001", false},
		{"live.example.com", "https://evil.example.com", false},
		{"live.example.com", "https://live.example.com.evil.example", false},
		{"live.example.com", "null", false},
		{"", "null", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/live", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := check(r); got != tc.ok {
			t.Errorf("Host %q, Origin %q: accepted %v, want %v", tc.host, tc.origin, got, tc.ok)
		}
	}
}

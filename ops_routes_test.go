package livesync

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDemoIsMounted(t *testing.T) {
	o := startOpsServer(t, &Options{Path: "/ws"}, "")
	r := o.do(t, http.MethodGet, "/demo?room=lobby", "")
	if r.status != 200 || !strings.Contains(string(r.body), `<meta name="livesync-path" content="/ws">`) {
		t.Fatalf("GET /demo = %d, page without the WebSocket path", r.status)
	}
	if r := o.do(t, http.MethodPost, "/demo", "x"); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST /demo = %d, want 405", r.status)
	}
}

// TestRoutesNeverShadowTheWebSocketPath: a WebSocket path equal to an
// operational route keeps working; the route is left out.
func TestRoutesNeverShadowTheWebSocketPath(t *testing.T) {
	for _, path := range []string{"/metrics", "/healthz", "/api/live"} {
		s, err := New(&Options{Path: path, Logger: discardLogger(), APIKey: testAPIKey})
		if err != nil {
			t.Fatal(err)
		}
		h := s.Handler() // must not panic on a duplicate pattern
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusUpgradeRequired {
			t.Errorf("GET %s = %d, want the WebSocket endpoint's 426", path, rec.Code)
		}
		s.Shutdown(t.Context())
	}
}

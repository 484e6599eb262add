package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
)

func TestHealthz(t *testing.T) {
	o := startOpsServer(t, nil, "")
	r := o.do(t, http.MethodGet, "/healthz", "")
	if r.status != 200 || string(r.body) != "ok" {
		t.Fatalf("GET /healthz = %d %q", r.status, r.body)
	}
	if r := o.do(t, http.MethodPost, "/healthz", ""); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d, want 405", r.status)
	}
}

// readyz fetches /readyz and decodes its body.
func readyz(t *testing.T, o *opsServer) (int, readyStatus) {
	t.Helper()
	r := o.do(t, http.MethodGet, "/readyz", "")
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("/readyz Content-Type %q", ct)
	}
	var st readyStatus
	r.decode(t, &st)
	return r.status, st
}

func TestReadyzFollowsTheStore(t *testing.T) {
	store := newOpsStore()
	o := startOpsServer(t, &Options{Store: store}, "")
	if code, st := readyz(t, o); code != 200 || st.Status != "ready" || st.Checks["store"] != "ok" {
		t.Fatalf("healthy store: %d %+v", code, st)
	}

	store.set(func(s *opsStore) { s.pingErr = errors.New("connection refused to db.internal:5432") })
	code, st := readyz(t, o)
	if code != http.StatusServiceUnavailable || st.Status != "unavailable" || st.Reason != "store unreachable" {
		t.Fatalf("failing store: %d %+v", code, st)
	}
	body := o.do(t, http.MethodGet, "/readyz", "").body
	if strings.Contains(string(body), "db.internal") {
		t.Fatalf("/readyz leaks the store's error details: %s", body)
	}
	if err := o.s.Ready(context.Background()); err == nil {
		t.Fatal("Ready = nil with a failing store")
	}

	// A store that hangs and ignores its context: the probe still answers,
	// within the readiness timeout.
	hang := make(chan struct{})
	defer close(hang)
	store.set(func(s *opsStore) { s.pingErr, s.pingHang = nil, hang })
	start := time.Now()
	code, st = readyz(t, o)
	if code != http.StatusServiceUnavailable || st.Checks["store"] == "ok" {
		t.Fatalf("hanging store: %d %+v", code, st)
	}
	if took := time.Since(start); took > readyTimeout+2*time.Second {
		t.Fatalf("/readyz took %v with a hanging store", took)
	}
}

func TestReadyzWithoutPingerAndWithABroker(t *testing.T) {
	o := startOpsServer(t, &Options{Store: noPingStore{chat.NewMemoryStore(nil)}}, "")
	code, st := readyz(t, o)
	if code != 200 || len(st.Checks) != 0 {
		t.Fatalf("store without Pinger: %d %+v", code, st)
	}
	// A cluster broker that cannot reach the cluster makes the node
	// unready, named in the reason.
	fb := &fakeBroker{}
	o = startOpsServer(t, &Options{Store: noPingStore{chat.NewMemoryStore(nil)}, Broker: fb}, "")
	if code, st = readyz(t, o); code != 200 || st.Checks["broker"] != "ok" {
		t.Fatalf("healthy broker: %d %+v", code, st)
	}
	fb.set(func(f *fakeBroker) { f.unhealthy = errors.New("down") })
	code, st = readyz(t, o)
	if code != http.StatusServiceUnavailable || st.Reason != "broker unreachable" || st.Checks["broker"] != "unreachable" {
		t.Fatalf("failing broker check: %d %+v", code, st)
	}
}

// degradedBroker is a fakeBroker that is a broker.Degrader.
type degradedBroker struct {
	*fakeBroker
	parts []string // Degraded's answer; under fakeBroker.mu
}

func (d *degradedBroker) Degraded() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.parts
}

// TestReadyzDegradedBroker: a broker only partly down (a Redis Cluster
// with a shard down) leaves the node ready: /readyz answers 200 with
// status "degraded" and the part named, and Ready is nil; a broker down
// altogether still makes it 503.
func TestReadyzDegradedBroker(t *testing.T) {
	db := &degradedBroker{fakeBroker: &fakeBroker{}}
	o := startOpsServer(t, &Options{Store: noPingStore{chat.NewMemoryStore(nil)}, Broker: db}, "")
	if code, st := readyz(t, o); code != 200 || st.Status != "ready" || st.Checks["broker"] != "ok" {
		t.Fatalf("whole broker: %d %+v", code, st)
	}
	db.set(func(*fakeBroker) { db.parts = []string{"shard 10.0.0.2:7001 (slots 5461-10922) unreachable"} })
	code, st := readyz(t, o)
	want := "degraded: shard 10.0.0.2:7001 (slots 5461-10922) unreachable"
	if code != 200 || st.Status != "degraded" || st.Checks["broker"] != want || st.Reason != "broker "+want {
		t.Fatalf("degraded broker: %d %+v", code, st)
	}
	if err := o.s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready with a degraded broker: %v", err)
	}
	db.set(func(f *fakeBroker) { f.unhealthy = errors.New("every shard down") })
	if code, st := readyz(t, o); code != http.StatusServiceUnavailable || st.Reason != "broker unreachable" {
		t.Fatalf("broker down: %d %+v", code, st)
	}
}

func TestReadyzWhileShuttingDown(t *testing.T) {
	s, err := New(&Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var st readyStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || st.Reason != "shutting down" {
		t.Fatalf("after Shutdown: %d %+v", rec.Code, st)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 {
		t.Fatalf("/healthz after Shutdown = %d; liveness must not depend on readiness", rec.Code)
	}
}

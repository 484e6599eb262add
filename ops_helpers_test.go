package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// opsServer is a server under test with its HTTP base URL and WebSocket
// URL.
type opsServer struct {
	s    *Server
	base string // http://127.0.0.1:port
	ws   string // ws://127.0.0.1:port/live
}

// startOpsServer is startServer with the API enabled when apiKey is not
// empty.
func startOpsServer(t testing.TB, opts *Options, apiKey string) *opsServer {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	opts.APIKey = apiKey
	s, wsURL := startServer(t, opts)
	base := "http" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws"), s.opts.Path)
	return &opsServer{s: s, base: base, ws: wsURL}
}

// httpResult is a response read whole.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with an optional JSON body and headers given as
// name, value pairs.
func (o *opsServer) do(t testing.TB, method, path, body string, headers ...string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, o.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp.StatusCode, resp.Header, b}
}

// decode unmarshals the body into v, failing the test on bad JSON.
func (r httpResult) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// wantError checks an API error response: its status and protocol code.
func (r httpResult) wantError(t testing.TB, status int, code string) protocol.ErrorPayload {
	t.Helper()
	var e protocol.ErrorPayload
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	r.decode(t, &e)
	if e.Code != code || e.Message == "" {
		t.Fatalf("error %+v, want code %s with a message", e, code)
	}
	return e
}

// metricValue reads one sample of the server's registry: a counter or
// gauge value, or a histogram's sample count. labels are name, value
// pairs; found is false when there is no such sample.
func metricValue(t testing.TB, s *Server, name string, labels ...string) (v float64, found bool) {
	t.Helper()
	mfs, err := s.metrics.registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// mustMetric is metricValue for a sample that must exist.
func mustMetric(t testing.TB, s *Server, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metricValue(t, s, name, labels...)
	if !ok {
		t.Fatalf("metric %s%v not exported", name, labels)
	}
	return v
}

// waitMetric waits until the metric has the value want.
func waitMetric(t testing.TB, s *Server, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	livesynctest.WaitFor(t, name+" to reach its value", func() bool {
		got, _ = metricValue(t, s, name, labels...)
		return got == want
	})
}

// opsStore is robust_test.go's failingStore (appends fail while broken),
// whose batch appends fail too and whose pings fail or hang on demand.
type opsStore struct {
	failingStore
	pingErr  error
	pingHang chan struct{} // when not nil, Ping blocks until it is closed, ignoring ctx
}

func newOpsStore() *opsStore {
	return &opsStore{failingStore: failingStore{MemoryStore: chat.NewMemoryStore(nil)}}
}

func (f *opsStore) AppendBatch(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	f.mu.Lock()
	broken := f.broken
	f.mu.Unlock()
	if broken {
		return nil, errors.New("disk on fire")
	}
	return f.MemoryStore.AppendBatch(ctx, msgs)
}

func (f *opsStore) Ping(ctx context.Context) error {
	f.mu.Lock()
	err, hang := f.pingErr, f.pingHang
	f.mu.Unlock()
	if hang != nil {
		<-hang
	}
	if err != nil {
		return err
	}
	return f.MemoryStore.Ping(ctx)
}

func (f *opsStore) set(fn func(*opsStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// noPingStore is a chat store without chat.Pinger (nor chat.Pager).
type noPingStore struct{ inner chat.Store }

func (n noPingStore) Append(ctx context.Context, m chat.Message) (protocol.StoredChatMessage, error) {
	return n.inner.Append(ctx, m)
}
func (n noPingStore) History(ctx context.Context, room string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	return n.inner.History(ctx, room, limit, offset)
}
func (n noPingStore) Close() error { return n.inner.Close() }

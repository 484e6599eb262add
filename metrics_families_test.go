package livesync_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/webhook"
)

// fullServer is a server with every optional set of metrics: documents
// (on by default), application hooks and webhooks.
func fullServer(t *testing.T) *livesync.Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	secret, err := webhook.ParseSecret("whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))
	if err != nil {
		t.Fatal(err)
	}
	wh, err := webhook.New(webhook.Config{URL: "http://127.0.0.1:1/hook", Secret: secret, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := livesync.New(&livesync.Options{
		Logger:   log,
		Webhooks: wh,
		Hooks: livesync.Hooks{
			OnJoin: func(context.Context, livesync.MemberEvent) {},
			OnChat: func(context.Context, livesync.ChatRequest) (livesync.ChatDecision, error) {
				return livesync.ChatDecision{}, nil
			},
		},
	})
	if err != nil {
		wh.Close(context.Background())
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

// servedFamilies lists the metric families a scrape of srv's
// MetricsHandler shows (their # TYPE lines).
func servedFamilies(t *testing.T, srv *livesync.Server) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var names []string
	sc := bufio.NewScanner(io.Reader(rec.Body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names = append(names, f[2])
		}
	}
	slices.Sort(names)
	return names
}

// describedFamilies lists the families c describes, those without a
// series yet (a vector no label has been used with) included.
func describedFamilies(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil && !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names
}

// Collector is everything MetricsHandler serves: a registry of the
// application's own holding it (beside its Go and process collectors)
// exports the same families, the documents', hooks' and webhooks'
// included.
func TestCollectorServesWhatMetricsHandlerServes(t *testing.T) {
	srv := fullServer(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	slices.Sort(got)
	want := servedFamilies(t, srv)
	for _, name := range []string{"livesync_connections", "livesync_documents_open", "livesync_hook_queue_depth", "livesync_webhook_outbox_depth"} {
		if !slices.Contains(want, name) {
			t.Fatalf("MetricsHandler serves no %s: the server lacks a part of its metrics", name)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("a registry with Collector gathers\n%v\nMetricsHandler serves\n%v", got, want)
	}
}

// docs/operations.md's metrics table names every livesync_ family the
// server exports (described, so those without a series yet too).
func TestOperationsDocNamesEveryMetric(t *testing.T) {
	srv := fullServer(t)
	doc, err := os.ReadFile("docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	names := describedFamilies(srv.Collector())
	for _, name := range servedFamilies(t, srv) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	n := 0
	for _, name := range names {
		if !strings.HasPrefix(name, "livesync_") {
			continue
		}
		n++
		if !strings.Contains(string(doc), "| `"+name) {
			t.Errorf("docs/operations.md's metrics table has no row for %s", name)
		}
	}
	if n < 40 {
		t.Fatalf("only %d livesync_ families found", n)
	}
}

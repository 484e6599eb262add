package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/demo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes adds the operational endpoints to a standalone server's mux:
//
//	GET /healthz  200 "ok" while the process serves (liveness)
//	GET /readyz   200 when ready (or degraded), 503 with a JSON reason (see Ready)
//	GET /metrics  Prometheus metrics from the server's own registry
//	              (unless Options.DisableMetricsRoute)
//	GET /demo     a collaborative demo page (cursors, members, chat,
//	              shared text)
//	              (unless Options.DisableDemo)
//	/api/         the HTTP API, only with Options.APIKey
//
// A route that would shadow the WebSocket path is left out.
func (s *Server) routes(mux *http.ServeMux) {
	add := func(path string, h http.Handler) {
		if path == s.opts.Path || (strings.HasSuffix(path, "/") && strings.HasPrefix(s.opts.Path, path)) {
			s.log.Warn("route not mounted: it would shadow the WebSocket path", "route", path, "path", s.opts.Path)
			return
		}
		mux.Handle(path, h)
	}
	add("/healthz", getOnly(http.HandlerFunc(s.serveHealthz)))
	add("/readyz", getOnly(http.HandlerFunc(s.serveReadyz)))
	if !s.opts.DisableMetricsRoute {
		add("/metrics", getOnly(s.MetricsHandler()))
	}
	if !s.opts.DisableDemo {
		add("/demo", getOnly(demo.Handler(s.opts.Path)))
	}
	if key := s.opts.APIKey; key != "" {
		if len(key) < 16 {
			s.log.Warn("the API key is short; use at least 16 random bytes")
		}
		add("/api/", s.APIHandler(key))
	}
}

// getOnly answers 405 to methods other than GET and HEAD. The patterns
// carry no method so that another method gets 405 here rather than the
// 404 of the catch-all "/".
func getOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readyTimeout bounds each readiness check: a probe must answer well
// within the few seconds orchestrators wait for it.
const readyTimeout = 2 * time.Second

// readinessCheck is one dependency /readyz checks.
type readinessCheck struct {
	name  string
	check func(context.Context) error
}

// shuttingDown reports whether Shutdown has closed the server (after
// Options.ShutdownDelay).
func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// notReady reports whether Shutdown has begun, its delay included: the
// server still serves, but a load balancer should send it no one new.
func (s *Server) notReady() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaving || s.closed
}

// errShuttingDown is the readiness failure of a server in Shutdown.
var errShuttingDown = errors.New("shutting down")

// checkResult is the outcome of one readiness check.
type checkResult struct {
	name string
	err  error
}

// readiness runs every check at once, each bounded by readyTimeout.
func (s *Server) readiness(ctx context.Context) []checkResult {
	checks := []readinessCheck{}
	if p, ok := s.store.(chat.Pinger); ok {
		checks = append(checks, readinessCheck{"store", p.Ping})
	}
	if b := s.broker; b != nil {
		checks = append(checks, readinessCheck{"broker", func(context.Context) error { return b.Healthy() }})
	}

	results := make([]checkResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, readyTimeout)
			defer cancel()
			err := runCheck(cctx, c.check)
			if err != nil && cctx.Err() != nil {
				err = fmt.Errorf("no answer within %v: %w", readyTimeout, err)
			}
			results[i] = checkResult{c.name, err}
		})
	}
	wg.Wait()
	return results
}

// runCheck runs check, returning when it does or when ctx ends, whichever
// comes first: a check that ignores its context must not hang the probe.
// Such a check's goroutine then lives until the check returns; the
// bundled stores and brokers honour their context.
func runCheck(ctx context.Context, check func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- check(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready reports whether the server should receive traffic: it is not
// shutting down and its dependencies (the chat store when it implements
// chat.Pinger, the cluster broker when there is one) answer within a
// couple of seconds. It backs /readyz; call it from your own readiness
// endpoint when you mount the server on your own mux. A broker only partly
// down (broker.Degrader) leaves the server ready: /readyz says degraded.
func (s *Server) Ready(ctx context.Context) error {
	if s.notReady() {
		return errShuttingDown
	}
	var errs []error
	for _, r := range s.readiness(ctx) {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		}
	}
	return errors.Join(errs...)
}

// brokerDegraded is what the broker reports partly down (see
// broker.Degrader), nil when it is whole or not a Degrader.
func (s *Server) brokerDegraded() []string {
	if d, ok := s.broker.(broker.Degrader); ok {
		return d.Degraded()
	}
	return nil
}

// serveHealthz answers 200 "ok" while the process serves HTTP: a liveness
// probe that restarts the process only when it is truly stuck, never
// because a database is down.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte("ok"))
}

// readyStatus is the JSON body of /readyz.
type readyStatus struct {
	Status string            `json:"status"`           // "ready", "degraded" or "unavailable"
	Reason string            `json:"reason,omitempty"` // why not ready, or what is degraded
	Checks map[string]string `json:"checks"`           // check name → "ok" or why not
	// Webhooks shows the webhook outbox (Options.Webhooks). It never
	// makes the server unready: a receiver that is down is the backend's
	// outage, not this server's, but the outbox's growing age says so.
	Webhooks *webhookStatus `json:"webhooks,omitempty"`
}

// webhookStatus is the webhooks entry of /readyz.
type webhookStatus struct {
	OutboxDepth      int     `json:"outboxDepth"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"` // 0 when the outbox is empty
	// Stale says why the figures above are not current: they are the
	// last ones read (0 when none was), and the age grows from the last
	// oldest event known.
	Stale string `json:"stale,omitempty"`
}

// errBacklogStale is /readyz's word for a backlog not read now.
const errBacklogStale = "the outbox could not be read now; these are the last figures read"

// webhookBacklog reads the webhook outbox for /readyz, bounded like a
// check (a durable outbox asks its database).
func (s *Server) webhookBacklog(ctx context.Context) *webhookStatus {
	type backlog struct {
		n      int
		oldest time.Time
		stale  error
	}
	done := make(chan backlog, 1)
	go func() {
		var b backlog
		if r, ok := s.opts.Webhooks.(WebhookBacklogReporter); ok {
			b.n, b.oldest, b.stale = r.BacklogStatus()
		} else {
			b.n, b.oldest = s.opts.Webhooks.Backlog()
		}
		done <- b
	}()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case b := <-done:
		st := &webhookStatus{OutboxDepth: b.n}
		if !b.oldest.IsZero() {
			st.OldestAgeSeconds = time.Since(b.oldest).Round(time.Millisecond).Seconds()
		}
		if b.stale != nil {
			// The details (a database's error) go to the log, as the
			// checks' do.
			s.log.Warn("readiness: webhook outbox figures are stale", "err", b.stale)
			st.Stale = errBacklogStale
		}
		return st
	case <-t.C:
		return &webhookStatus{Stale: fmt.Sprintf("no answer within %v", readyTimeout)}
	case <-ctx.Done():
		return &webhookStatus{Stale: ctx.Err().Error()}
	}
}

// serveReadyz answers 200 when the server is ready (see Ready), and 503
// with a JSON reason when it is not, so a load balancer stops sending new
// clients to a node that could not store their chat. The reasons name the
// failing dependency without its error details, which go to the log.
//
// A broker that is only partly down (broker.Degrader: a Redis Cluster with
// a shard down) leaves the server ready, with status "degraded" and the
// parts named: every node sees the same shard down, so failing them all
// would take the whole service away for the rooms of one shard, while the
// rooms of the other shards are served normally and those of the lost one
// as in an outage (each node serving its own members).
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	st := readyStatus{Status: "ready", Checks: map[string]string{}}
	var backlog chan *webhookStatus // read beside the checks
	if s.notReady() {
		st.Status, st.Reason = "unavailable", errShuttingDown.Error()
	} else {
		if s.opts.Webhooks != nil {
			backlog = make(chan *webhookStatus, 1)
			go func() { backlog <- s.webhookBacklog(r.Context()) }()
		}
		for _, res := range s.readiness(r.Context()) {
			if res.err == nil {
				st.Checks[res.name] = "ok"
				continue
			}
			s.log.Warn("readiness check failed", "check", res.name, "err", res.err)
			why := "unreachable"
			if errors.Is(res.err, context.DeadlineExceeded) {
				why = fmt.Sprintf("no answer within %v", readyTimeout)
			}
			st.Checks[res.name] = why
			if st.Reason == "" {
				st.Status, st.Reason = "unavailable", res.name+" "+why
			}
		}
		if d := s.brokerDegraded(); len(d) > 0 && st.Checks["broker"] == "ok" {
			why := "degraded: " + strings.Join(d, "; ")
			st.Checks["broker"] = why
			if st.Status == "ready" {
				st.Status, st.Reason = "degraded", "broker "+why
			}
		}
	}
	if backlog != nil {
		st.Webhooks = <-backlog
	}
	code := http.StatusOK
	if st.Status == "unavailable" {
		code = http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(body)
}

// MetricsHandler serves the server's metrics in the Prometheus text
// format, from the server's own registry: mount it wherever your scraper
// looks when you serve the WebSocket endpoint on your own mux (Handler
// mounts it at /metrics). Nothing is registered globally, so several
// servers in one process each export their own numbers.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry(), promhttp.HandlerOpts{
		ErrorLog:      promErrorLog{s},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Collector returns the server's metrics as one prometheus.Collector, for
// an application that keeps its own registry and wants the server's
// numbers in it: everything MetricsHandler serves (the core, document,
// hook and webhook metrics, and what RegisterMetrics added) but the Go
// runtime and process metrics, which the application's registry has its
// own of. Register it after the last RegisterMetrics call: a collector
// added later is collected but was not described, which a registry
// refuses. The metric names are fixed, so the collectors of two servers in
// one registry clash: register each through prometheus.WrapRegistererWith
// with a label that tells them apart.
func (s *Server) Collector() prometheus.Collector {
	return serverCollector{core: newCollector(&s.metrics), m: &s.metrics}
}

// promErrorLog sends promhttp's gathering errors to the server's logger.
type promErrorLog struct{ s *Server }

// Println implements promhttp.Logger.
func (l promErrorLog) Println(v ...any) {
	l.s.log.Warn("metrics: gathering failed", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

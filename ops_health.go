package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// readyTimeout bounds each readiness check: a probe must answer well
// within the few seconds orchestrators wait for it.
const readyTimeout = 2 * time.Second

// readinessCheck is one dependency /readyz checks.
type readinessCheck struct {
	name  string
	check func(context.Context) error
}

// addReadinessCheck adds a dependency that /readyz checks beside the chat
// store. This is the hook for the cluster broker: when one is configured,
// the cluster code calls s.addReadinessCheck("broker", client.Ping) once
// at start-up (and s.metrics.enableBroker for its latency histogram).
func (s *Server) addReadinessCheck(name string, check func(context.Context) error) {
	s.metrics.ops.mu.Lock()
	defer s.metrics.ops.mu.Unlock()
	s.metrics.ops.checks = append(s.metrics.ops.checks, readinessCheck{name, check})
}

// shuttingDown reports whether Shutdown has begun.
func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
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
	s.metrics.ops.mu.Lock()
	checks = append(checks, s.metrics.ops.checks...)
	s.metrics.ops.mu.Unlock()

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
// endpoint when you mount the server on your own mux.
func (s *Server) Ready(ctx context.Context) error {
	if s.shuttingDown() {
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
	Status string            `json:"status"`           // "ready" or "unavailable"
	Reason string            `json:"reason,omitempty"` // why not ready
	Checks map[string]string `json:"checks"`           // check name → "ok" or why not
}

// serveReadyz answers 200 when the server is ready (see Ready), and 503
// with a JSON reason when it is not, so a load balancer stops sending new
// clients to a node that could not store their chat. The reasons name the
// failing dependency without its error details, which go to the log.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	st := readyStatus{Status: "ready", Checks: map[string]string{}}
	if s.shuttingDown() {
		st.Status, st.Reason = "unavailable", errShuttingDown.Error()
	} else {
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
	}
	code := http.StatusOK
	if st.Status != "ready" {
		code = http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(body)
}

package livesync

import (
	"net/http"
	"strings"

	"github.com/openlivesync/livesync/internal/demo"
)

// routes adds the operational endpoints to a standalone server's mux:
//
//	GET /healthz  200 "ok" while the process serves (liveness)
//	GET /readyz   200 when ready, 503 with a JSON reason (see Ready)
//	GET /metrics  Prometheus metrics from the server's own registry
//	              (unless Options.DisableMetricsRoute)
//	GET /demo     a collaborative demo page (cursors, members, chat)
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

package livesync

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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

// Collector returns the server's metrics as a prometheus.Collector, for an
// application that keeps its own registry and wants the server's numbers
// in it. The metric names are fixed, so the collectors of two servers in
// one registry clash: register each through prometheus.WrapRegistererWith
// with a label that tells them apart.
func (s *Server) Collector() prometheus.Collector { return newCollector(&s.metrics) }

// promErrorLog sends promhttp's gathering errors to the server's logger.
type promErrorLog struct{ s *Server }

// Println implements promhttp.Logger.
func (l promErrorLog) Println(v ...any) {
	l.s.log.Warn("metrics: gathering failed", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

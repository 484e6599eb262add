// Command openlivesync runs an OpenLiveSync server: rooms, presence,
// events and chat over WebSocket, wire-compatible with @openlivesync/server.
//
// Every flag can also be set in the environment as OPENLIVESYNC_<FLAG>
// (upper case, dashes as underscores); a flag on the command line wins.
// A bad flag or an unusable store exits with code 2 and one line on
// stderr. SIGINT or SIGTERM closes every client with 1001, flushes the
// store and exits 0. A second SIGINT or SIGTERM, during -shutdown-delay
// or the drain, cuts the shutdown short: the clients left are cut, the
// store calls in flight cancelled, and the binary exits 1; a third kills
// it. SIGHUP reloads the TLS certificate (-tls-cert).
//
// Two flags are commands rather than settings, and are read from the
// command line only: -version prints the version and exits, and
// -healthcheck URL checks a running server (for images without curl).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr, nil))
}

// run is main with its environment as parameters, for tests. When ready
// is not nil, it receives the listening address once the server serves.
func run(args []string, getenv func(string) string, stderr io.Writer, ready chan<- net.Addr) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	// The commands answer whatever else the environment configures.
	if cfg != nil && cfg.ops.version {
		fmt.Fprintln(stdout, "openlivesync", version())
		return 0
	}
	if cfg != nil && cfg.ops.healthcheck != "" {
		url := cfg.ops.healthcheck
		if url == "self" {
			url = cfg.selfHealthURL()
		}
		return healthcheck(url, stderr)
	}
	if err == nil {
		err = cfg.checkOps()
	}
	if err != nil {
		fail(stderr, err)
		return 2
	}
	// Before the store is opened: a bad pair is a bad flag.
	var certs *certHolder
	if cfg.ops.tlsCert != "" {
		if certs, err = loadCertHolder(cfg.ops.tlsCert, cfg.ops.tlsKey); err != nil {
			fail(stderr, err)
			return 2
		}
	}
	ctx, hurry, stopWatching := watchStopSignals()
	defer stopWatching()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv, log, err := cfg.build(ctx, stderr)
	if err != nil {
		fail(stderr, err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		fail(stderr, fmt.Errorf("-addr: %w", err))
		srv.Shutdown(context.Background())
		return 2
	}
	if certs != nil {
		ln = tls.NewListener(ln, certs.tlsConfig())
	}
	stopMetrics := func(context.Context) error { return nil }
	var metricsAddr net.Addr
	if cfg.ops.metricsAddr != "" {
		if metricsAddr, stopMetrics, err = serveMetrics(cfg.ops.metricsAddr, srv, log); err != nil {
			fail(stderr, err)
			ln.Close()
			srv.Shutdown(context.Background())
			return 2
		}
	}
	// addr stays first: scripts and tests read it from this line.
	attrs := []any{"addr", ln.Addr().String(), "path", cfg.path, "store", cfg.storeName(), "tls", certs != nil}
	if metricsAddr != nil {
		attrs = append(attrs, "metrics_addr", metricsAddr.String())
	}
	log.Info("serving", append(attrs, "version", version())...)
	go watchReloads(ctx, certs, hup, certCheckInterval, log)
	if ready != nil {
		ready <- ln.Addr()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		log.Error("server stopped", "err", err)
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down")
	// The delay (-shutdown-delay) comes on top of the drain's 15 s. A
	// second signal ends both at once.
	sctx, cancel := context.WithTimeout(hurry, 15*time.Second+cfg.ops.shutdownDelay)
	defer cancel()
	defer context.AfterFunc(hurry, func() {
		log.Warn("second signal: shutting down now, without waiting for the delay or the drain")
	})()
	// Shutdown closes the webhooks after the rooms' last leaves and chat
	// and before the store; a receiver that is down holds it for
	// webhook.DefaultDrainTimeout at most. The metrics listener is
	// stopped after it, so that the drain can be watched to its end.
	err = srv.Shutdown(sctx)
	stopMetrics(sctx)
	if err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("server stopped", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// fail reports a start-up error in one line, however many lines the
// error's text has (drivers like to list every address they tried).
func fail(stderr io.Writer, err error) {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintln(stderr, "openlivesync:", msg)
}

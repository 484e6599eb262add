// Command openlivesync runs an OpenLiveSync server: rooms, presence,
// events and chat over WebSocket, wire-compatible with @openlivesync/server.
//
// Every flag can also be set in the environment as OPENLIVESYNC_<FLAG>
// (upper case, dashes as underscores); a flag on the command line wins.
// A bad flag or an unusable store exits with code 2 and one line on
// stderr. SIGINT or SIGTERM closes every client with 1001, flushes the
// store and exits 0.
package main

import (
	"context"
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
	if err != nil {
		fail(stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, log, err := cfg.build(ctx, stderr)
	if err != nil {
		fail(stderr, err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		fail(stderr, err)
		srv.Shutdown(context.Background())
		return 2
	}
	log.Info("serving", "addr", ln.Addr().String(), "path", cfg.path, "store", cfg.storeName())
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
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
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

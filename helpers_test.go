package livesync

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// startServer runs a server on an httptest listener and shuts it down when
// the test ends.
func startServer(t testing.TB, opts *Options) (*Server, string) {
	t.Helper()
	s, ts := startOn(t, opts, httptest.NewServer)
	return s, "ws" + strings.TrimPrefix(ts.URL, "http") + s.opts.Path
}

// startOn is startServer on the test server newServer makes (plain or
// TLS); the server is shut down when the test ends.
func startOn(t testing.TB, opts *Options, newServer func(http.Handler) *httptest.Server) (*Server, *httptest.Server) {
	t.Helper()
	s := newTestServer(t, opts)
	ts := newServer(s.Handler())
	t.Cleanup(func() {
		ctxShutdown(t, s)
		ts.Close()
	})
	return s, ts
}

// newTestServer is New with opts (none when nil), logging nowhere unless
// opts has a logger, failing t on an error.
func newTestServer(t testing.TB, opts *Options) *Server {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// churn has client i of a convergence test leave when i is odd: by
// leave_room when i%4 == 1, by closing when i%4 == 3.
func churn(i int, c *livesynctest.Client) {
	switch i % 4 {
	case 1:
		c.Send(protocol.MsgLeaveRoom, nil)
	case 3:
		go c.WS.Close()
	}
}

// ctxShutdown shuts s down, failing t when that takes longer than the
// kit's Timeout or fails.
func ctxShutdown(t testing.TB, s *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

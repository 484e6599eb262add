package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

func TestParseHTTPFlags(t *testing.T) {
	c, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Left alone, the flags leave the library's defaults in force.
	if c.limits != (livesync.Limits{}) || c.trustedProxies != "" {
		t.Fatalf("defaults %+v %q", c.limits, c.trustedProxies)
	}
	srv := buildServer(t)
	defer srv.Shutdown(context.Background())
	if l := srv.Limits(); l.ReadHeaderTimeout != 10*time.Second || l.RequestReadTimeout != 30*time.Second || l.IdleTimeout != 2*time.Minute {
		t.Fatalf("effective defaults %v %v %v", l.ReadHeaderTimeout, l.RequestReadTimeout, l.IdleTimeout)
	}
	env := map[string]string{
		"OPENLIVESYNC_READ_HEADER_TIMEOUT":  "3s",
		"OPENLIVESYNC_REQUEST_READ_TIMEOUT": "4s",
		"OPENLIVESYNC_IDLE_TIMEOUT":         "5s",
		"OPENLIVESYNC_TRUSTED_PROXIES":      "10.0.0.0/8, fd00::/8,192.0.2.1",
	}
	c, err = parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.limits; l.ReadHeaderTimeout != 3*time.Second || l.RequestReadTimeout != 4*time.Second || l.IdleTimeout != 5*time.Second || c.trustedProxies != env["OPENLIVESYNC_TRUSTED_PROXIES"] {
		t.Fatalf("from the environment: %+v", c)
	}
	for _, args := range [][]string{
		{"-read-header-timeout", "-1s"},
		{"-request-read-timeout", "-1s"},
		{"-idle-timeout", "5"},
		{"-trusted-proxies", "10.0.0.0/8,office"},
		{"-trusted-proxies", "10.0.0.0/40"},
	} {
		if _, err := parseConfig(args, noEnv, io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err %v, want one naming %s", args, err, args[0])
		}
	}
}

// TestHTTPFlagsReachTheServer: the binary's server, built from its flags
// and served as run serves it, cuts off a slow request body after
// -request-read-timeout and logs the client behind a -trusted-proxies
// proxy under its forwarded address.
func TestHTTPFlagsReachTheServer(t *testing.T) {
	cfg, err := parseConfig([]string{"-api-key", "k", "-request-read-timeout", "200ms",
		"-trusted-proxies", "127.0.0.1/32", "-log-level", "info"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs livesynctest.Buffer
	srv, _, err := cfg.build(context.Background(), &logs)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !livesynctest.ReadsUntilClosed(livesynctest.SlowRequest(t, nc, "k"), binaryTimeout) {
		t.Fatal("a slow request body was not cut off")
	}

	livesynctest.DialHeader(t, "ws://"+addr+"/live", http.Header{"X-Forwarded-For": {"203.0.113.7"}})
	testsvc.WaitFor(t, "the connection to be logged", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), "connection opened")
	})
	if out := logs.String(); !strings.Contains(out, "ip=203.0.113.7") {
		t.Fatalf("logs do not name the forwarded client:\n%s", out)
	}
}

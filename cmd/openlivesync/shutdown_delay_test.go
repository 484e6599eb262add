package main

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// With -shutdown-delay, SIGTERM makes /readyz answer 503 "shutting
// down" while the node keeps serving, clients and -metrics-addr alike.
// (The metrics listener is stopped after the server's drain, never
// before it.)
func TestShutdownDelayKeepsServingNotReady(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	metrics := livesynctest.ClosedAddr(t)
	cmd, url := startBinary(t, buildBinary(t), "-shutdown-delay", "1h", "-metrics-addr", metrics)
	base := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/live")
	a := dialBinary(t, url)
	a.Join("r", nil)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatalf("GET %s during the delay: %v", u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	testsvc.WaitState(t, "/readyz to answer shutting down", binaryTimeout, func() (bool, any) {
		code, body := get(base + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"reason":"shutting down"`), body
	})
	if code, body := get("http://" + metrics + "/metrics"); code != http.StatusOK || !strings.Contains(body, "livesync_connections") {
		t.Fatalf("-metrics-addr during the delay: %d", code)
	}
	b := dialBinary(t, url)
	b.Join("r", nil)
	a.Expect("presence_updated", nil)
}

// -shutdown-delay comes from the flag or OPENLIVESYNC_SHUTDOWN_DELAY, and
// a negative one is refused at start-up.
func TestShutdownDelayFlag(t *testing.T) {
	cfg, err := parseConfig(nil, func(k string) string {
		if k == "OPENLIVESYNC_SHUTDOWN_DELAY" {
			return "7s"
		}
		return ""
	}, io.Discard)
	if err != nil || cfg.ops.shutdownDelay != 7*time.Second {
		t.Fatalf("from the environment: %v, %v", cfg.ops.shutdownDelay, err)
	}
	if err := cfg.checkOps(); err != nil {
		t.Fatal(err)
	}
	cfg, err = parseConfig([]string{"-shutdown-delay", "-1s"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.checkOps(); err == nil || !strings.Contains(err.Error(), "-shutdown-delay -1s is negative") {
		t.Fatalf("a negative delay: %v", err)
	}
}

// A second SIGTERM (or SIGINT) during the shutdown delay ends the wait:
// the clients are cut at once and the binary exits 1.
func TestSecondSignalEndsTheShutdownDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	cmd, url := startBinary(t, buildBinary(t), "-shutdown-delay", "1h")
	base := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/live")
	a := dialBinary(t, url)
	a.Join("r", nil)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitState(t, "/readyz to answer shutting down", binaryTimeout, func() (bool, any) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the delay: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable, resp.Status
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	a.WaitClosed()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("exit after a second signal: %v, want code 1", err)
		}
	case <-time.After(binaryTimeout):
		t.Fatal("the binary still runs after a second signal")
	}
}

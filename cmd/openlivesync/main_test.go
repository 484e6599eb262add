package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
)

func TestParseConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(*config) bool
	}{
		{name: "defaults", check: func(c *config) bool {
			// 0: the library's defaults, as for Options.
			return c.addr == ":3000" && c.path == "/live" && c.presenceThrottle == 0 &&
				c.historyLimit == 0 && c.store == "memory" && c.limits == (livesync.Limits{}) && c.logFormat == "text" && c.logLevel == "info"
		}},
		{name: "env fallback", env: map[string]string{"OPENLIVESYNC_ADDR": ":4000", "OPENLIVESYNC_PRESENCE_THROTTLE": "50ms", "OPENLIVESYNC_LOG_FORMAT": "json"},
			check: func(c *config) bool {
				return c.addr == ":4000" && c.presenceThrottle == 50*time.Millisecond && c.logFormat == "json"
			}},
		{name: "flag beats env", args: []string{"-addr", ":5000"}, env: map[string]string{"OPENLIVESYNC_ADDR": ":4000"},
			check: func(c *config) bool { return c.addr == ":5000" }},
		{name: "unknown flag", args: []string{"-bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "bad duration", args: []string{"-presence-throttle", "fast"}, wantErr: "presence-throttle"},
		{name: "bad env", env: map[string]string{"OPENLIVESYNC_HISTORY_LIMIT": "lots"}, wantErr: "OPENLIVESYNC_HISTORY_LIMIT"},
		{name: "bad path", args: []string{"-path", "live"}, wantErr: "must start with /"},
		{name: "negative history is none", args: []string{"-history-limit", "-1"}, check: func(c *config) bool { return c.historyLimit == -1 }},
		{name: "negative throttle is none", args: []string{"-presence-throttle", "-1ms"}, check: func(c *config) bool { return c.presenceThrottle < 0 }},
		{name: "tiny frames", args: []string{"-max-message-bytes", "10"}, wantErr: "max-message-bytes"},
		{name: "bad log format", args: []string{"-log-format", "xml"}, wantErr: "log-format"},
		{name: "bad log level", args: []string{"-log-level", "loud"}, wantErr: "log-level"},
		{name: "stray argument", args: []string{"serve"}, wantErr: "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, env(tc.env), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestBadFlagExits2WithOneLine(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-history-limit", "many"}, noEnv, &stderr, nil); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "openlivesync: ") {
		t.Fatalf("stderr %q, want one line", stderr.String())
	}
}

// buildBinary compiles the command once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "openlivesync")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs the binary on a free port and returns the process and
// its WebSocket URL, read from its "serving" log line.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addrRe := regexp.MustCompile(`msg=serving addr=(\S+)`)
	sc := bufio.NewScanner(stderr)
	found := make(chan string, 1)
	go func() {
		for sc.Scan() {
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case addr := <-found:
		return cmd, "ws://" + addr + "/live"
	case <-time.After(30 * time.Second):
		t.Fatal("binary did not start serving")
	}
	return nil, ""
}

// binaryTimeout bounds each wait of a client of a binary the tests
// started, and of a server built from the binary's flags: a process of
// its own, reaching real stores, is given more room than the kit's
// default.
const binaryTimeout = 30 * time.Second

// dialBinary connects a kit client to the binary at url, its waits bounded
// by binaryTimeout.
func dialBinary(t *testing.T, url string) *livesynctest.Client {
	t.Helper()
	c := livesynctest.Dial(t, url)
	c.Timeout = binaryTimeout
	return c
}

func TestSIGTERMClosesClientsWith1001AndExits0(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	cmd, url := startBinary(t, buildBinary(t))
	c := dialBinary(t, url)
	c.Join("r", nil)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.WaitClosed(); code != websocket.CloseGoingAway {
		t.Fatalf("close %d after SIGTERM, want 1001", code)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v, want 0", err)
	}
}

// noEnv is an environment with nothing set.
func noEnv(string) string { return "" }

// buildServer builds the binary's server from args, as run would, without
// the environment.
func buildServer(t *testing.T, args ...string) *livesync.Server {
	t.Helper()
	cfg, err := parseConfig(args, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, _, err := cfg.build(context.Background(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// serveConfigured serves the binary's server, built from args, on an
// httptest server and returns its WebSocket URL; both stop with the test.
func serveConfigured(t *testing.T, args ...string) string {
	t.Helper()
	srv := buildServer(t, args...)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		ts.Close()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/live"
}

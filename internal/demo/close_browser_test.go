package demo_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	livesync "github.com/openlivesync/livesync"
)

// TestCloseCodesInBrowser runs e2e/close.e2e.mjs: Chromium must see the
// server's close codes 4401, 1008, 1009 and 1001 as clean closes with
// exactly those codes. It fails when the server sends anything after its
// close frame, such as a second close in reply to the browser's echo, or
// resets a connection whose data it left unread: Chromium then fails the
// connection and reports 1006. Its needs are those of
// TestDemoInBrowser.
func TestCloseCodesInBrowser(t *testing.T) {
	node := requireBrowser(t)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(opts livesync.Options) (*livesync.Server, string) {
		opts.Logger = logger
		s, err := livesync.New(&opts)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s.Handler())
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.Shutdown(ctx) // already done for the shutdown server: an error then
			ts.Close()
		})
		return s, "ws" + strings.TrimPrefix(ts.URL, "http") + "/live"
	}
	_, authWS := start(livesync.Options{OnAuth: func(*http.Request) (*livesync.UserInfo, error) { return nil, nil }})
	_, floodWS := start(livesync.Options{Limits: livesync.Limits{EventRate: 0.01, EventBurst: 1, MaxViolations: 3}})
	down, shutdownWS := start(livesync.Options{})

	// The page's own origin: a blank page, and the switch that shuts the
	// third server down once the page is in a room there.
	var shutdown sync.Once
	ctl := http.NewServeMux()
	ctl.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>close codes</title>")
	})
	ctl.HandleFunc("POST /shutdown", func(w http.ResponseWriter, r *http.Request) {
		shutdown.Do(func() {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				down.Shutdown(ctx)
			}()
		})
		w.WriteHeader(http.StatusAccepted)
	})
	page := httptest.NewServer(ctl)
	t.Cleanup(page.Close)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("e2e", "close.e2e.mjs"), page.URL+"/", authWS, floodWS, shutdownWS)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromiumPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser test failed: %v\n%s", err, out.String())
	}
	t.Logf("%s", strings.TrimSpace(out.String()))
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	livesync "github.com/openlivesync/livesync"
)

// TestFanoutAgainstRealServer runs a tiny fanout against the real server
// in-process: every event must reach every other member of its room.
func TestFanoutAgainstRealServer(t *testing.T) {
	srv, err := livesync.New(&livesync.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/live"

	for _, mode := range readerModes {
		t.Run(mode.name, func(t *testing.T) {
			res := runMode(t, mode.goroutines, url, "-scenario", "fanout", "-rooms", "2", "-clients", "3",
				"-interval", "100ms", "-warmup", "200ms", "-duration", "1s", "-grace", "5s").(*FanoutResult)
			if res.Sent == 0 {
				t.Fatal("nothing sent in the window")
			}
			if res.Loss != 0 || res.Delivered != res.Expected || res.Expected != 2*res.Sent {
				t.Fatalf("sent %d, delivered %d, expected %d, loss %v", res.Sent, res.Delivered, res.Expected, res.Loss)
			}
			if res.Duplicates+res.Misrouted+res.SelfDeliveries != 0 || res.Disconnects != 0 || len(res.Errors) != 0 {
				t.Fatalf("anomalies: dup %d misrouted %d self %d disconnects %d errors %v",
					res.Duplicates, res.Misrouted, res.SelfDeliveries, res.Disconnects, res.Errors)
			}
		})
	}
}

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

// startRealServer runs the real server in-process and returns its
// WebSocket URL.
func startRealServer(t *testing.T) string {
	t.Helper()
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
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/live"
}

// TestFanoutAgainstRealServer runs a tiny fanout against the real server:
// every event must reach every other member of its room.
func TestFanoutAgainstRealServer(t *testing.T) {
	url := startRealServer(t)
	inEachReaderMode(t, func(t *testing.T, goroutines bool) {
		res := runMode(t, goroutines, url, "-scenario", "fanout", "-rooms", "2", "-clients", "3",
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

// TestChatAgainstRealServer runs a tiny chat load against the real
// server, within its default rate limit: every message is stored and
// echoed with an id, and reaches the other members of its room.
func TestChatAgainstRealServer(t *testing.T) {
	url := startRealServer(t)
	res := runWith(t, url, "-scenario", "chat", "-clients", "6", "-rooms", "2",
		"-rate", "30", "-warmup", "200ms", "-duration", "1s", "-grace", "5s").(*ChatResult)
	if res.Sent == 0 || res.Echoed != res.Sent || res.Lost != 0 {
		t.Fatalf("sent %d, echoed %d, lost %d", res.Sent, res.Echoed, res.Lost)
	}
	if res.OthersDelivered != 2*res.Sent || res.MissingIDs != 0 || len(res.Errors) != 0 {
		t.Fatalf("others delivered %d (want %d), missing ids %d, errors %v", res.OthersDelivered, 2*res.Sent, res.MissingIDs, res.Errors)
	}
}

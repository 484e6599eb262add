package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// runWith parses args (plus -url) and runs the scenario, failing the test
// on a usage error or a run error.
func runWith(t *testing.T, url string, args ...string) result {
	t.Helper()
	return runMode(t, false, url, args...)
}

// readerModes are the two ways the generator reads: epoll (the default on
// Linux) and one goroutine per connection.
var readerModes = []struct {
	name       string
	goroutines bool
}{{"epoll", false}, {"goroutines", true}}

// runMode is runWith with the reader chosen.
func runMode(t *testing.T, goroutines bool, url string, args ...string) result {
	t.Helper()
	cfg, err := parseConfig(append([]string{"-url", url}, args...), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig(%q): %v", args, err)
	}
	if goroutines {
		cfg.Readers = "goroutine"
	}
	var logs livesynctest.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := runScenario(ctx, cfg, log.New(&logs, "", 0))
	if e := res.common().Error; e != "" {
		t.Fatalf("run failed: %s\nlog:\n%s", e, logs.String())
	}
	if testing.Verbose() {
		b, _ := json.Marshal(res)
		t.Logf("result: %s", b)
	}
	return res
}

// inEachReaderMode runs test once per reader mode, as a subtest.
func inEachReaderMode(t *testing.T, test func(t *testing.T, goroutines bool)) {
	for _, mode := range readerModes {
		t.Run(mode.name, func(t *testing.T) { test(t, mode.goroutines) })
	}
}

func TestFanoutAgainstFakeServer(t *testing.T) { inEachReaderMode(t, testFanout) }

func testFanout(t *testing.T, goroutines bool) {
	f := newFakeServer(t)
	pid := strconv.Itoa(os.Getpid()) // the test process stands in for a server process
	res := runMode(t, goroutines, f.url(), "-scenario", "fanout", "-rooms", "2", "-clients", "3",
		"-interval", "50ms", "-warmup", "200ms", "-duration", "1s", "-grace", "5s",
		"-server-pid", pid, "-per-ip", "2", "-expect", "loss<=0,sent_fraction_of_nominal>=0.5").(*FanoutResult)
	if res.Sent == 0 {
		t.Fatal("nothing sent in the window")
	}
	if res.Expected != res.Sent*2 || res.Delivered != res.Expected || res.Loss != 0 {
		t.Fatalf("sent %d, delivered %d, expected %d, loss %v", res.Sent, res.Delivered, res.Expected, res.Loss)
	}
	if res.Duplicates+res.Misrouted+res.SelfDeliveries+res.Reordered != 0 {
		t.Fatalf("anomalies: %+v", res)
	}
	if res.P50MS <= 0 || res.MaxMS < res.P99MS || res.P99MS < res.P50MS {
		t.Fatalf("latency summary %+v", res.LatencySummary)
	}
	if res.ServerCPUS == nil || res.ServerRSSBytes == nil || *res.ServerRSSBytes <= 0 {
		t.Fatalf("server sample missing: cpu %v rss %v", res.ServerCPUS, res.ServerRSSBytes)
	}
	if res.Pass == nil || !*res.Pass {
		t.Fatalf("expectations: pass=%v missed=%v", res.Pass, res.Missed)
	}
	// 6 clients with -per-ip 2 come from three loopback addresses.
	ips := f.remoteIPs()
	if len(ips) != 3 || ips["127.0.0.1"] != 2 || ips["127.0.0.2"] != 2 || ips["127.0.0.3"] != 2 {
		t.Fatalf("remote addresses = %v", ips)
	}
}

// TestSendsOutliveTheHandshakeTimeout: sends keep working once the
// handshake's time limit has passed; a deadline left on the socket once
// failed every send after it.
func TestSendsOutliveTheHandshakeTimeout(t *testing.T) {
	f := newFakeServer(t)
	res := runWith(t, f.url(), "-scenario", "fanout", "-rooms", "1", "-clients", "3",
		"-interval", "50ms", "-warmup", "100ms", "-duration", "1s", "-handshake-timeout", "300ms").(*FanoutResult)
	if res.SendErrors != 0 || res.SentFractionOfNominal < 0.9 {
		t.Fatalf("%d sends failed, %.0f%% of nominal sent", res.SendErrors, 100*res.SentFractionOfNominal)
	}
}

func TestFanoutCountsLoss(t *testing.T) {
	f := newFakeServer(t)
	f.dropEvery = 10
	res := runWith(t, f.url(), "-scenario", "fanout", "-rooms", "1", "-clients", "4",
		"-interval", "20ms", "-warmup", "100ms", "-duration", "800ms", "-grace", "2s",
		"-expect", "loss<=0").(*FanoutResult)
	// About a tenth is lost; the rest of the bound allows for frames still
	// in flight when a slow (race-detector, loaded) run's grace ends.
	if res.Loss < 0.05 || res.Loss > 0.2 {
		t.Fatalf("loss = %v with every 10th relay dropped (delivered %d of %d)", res.Loss, res.Delivered, res.Expected)
	}
	if res.Pass == nil || *res.Pass || len(res.Missed) != 1 {
		t.Fatalf("loss target should be missed: pass=%v missed=%v", res.Pass, res.Missed)
	}
}

func TestChatAgainstFakeServer(t *testing.T) { inEachReaderMode(t, testChat) }

func testChat(t *testing.T, goroutines bool) {
	f := newFakeServer(t)
	res := runMode(t, goroutines, f.url(), "-scenario", "chat", "-clients", "6", "-rooms", "2",
		"-rate", "60", "-warmup", "100ms", "-duration", "1s", "-grace", "5s").(*ChatResult)
	if res.Sent == 0 || res.Echoed != res.Sent || res.Lost != 0 {
		t.Fatalf("sent %d, echoed %d, lost %d", res.Sent, res.Echoed, res.Lost)
	}
	// Each room has 3 members, so every chat reaches 2 others.
	if res.OthersDelivered != 2*res.Sent {
		t.Fatalf("others delivered %d, want %d", res.OthersDelivered, 2*res.Sent)
	}
	if res.MissingIDs != 0 || res.P50MS <= 0 {
		t.Fatalf("missing ids %d, latency %+v", res.MissingIDs, res.LatencySummary)
	}
}

func TestJoinstormAgainstFakeServer(t *testing.T) { inEachReaderMode(t, testJoinstorm) }

func testJoinstorm(t *testing.T, goroutines bool) {
	f := newFakeServer(t)
	res := runMode(t, goroutines, f.url(), "-scenario", "joinstorm", "-conns", "40", "-inflight", "8", "-timeout", "30s").(*JoinstormResult)
	if res.ViewCompleteS == nil || res.CompleteViews != 40 {
		t.Fatalf("complete views %d, view_complete_s %v", res.CompleteViews, res.ViewCompleteS)
	}
	// The fake server announces each joiner to everyone already there:
	// 0 + 1 + ... + 39 entries.
	if res.PresenceEntries != 40*39/2 || res.PresenceMessages != 40*39/2 {
		t.Fatalf("presence messages %d, entries %d", res.PresenceMessages, res.PresenceEntries)
	}
	if res.DuplicateJoins+res.UnknownLeaves+res.ForeignIDs != 0 {
		t.Fatalf("inconsistent views: %+v", res)
	}
	if res.JoinP50MS <= 0 || res.JoinMaxMS < res.JoinP99MS {
		t.Fatalf("join latency p50 %v p99 %v max %v", res.JoinP50MS, res.JoinP99MS, res.JoinMaxMS)
	}
}

func TestIdleAgainstFakeServer(t *testing.T) {
	f := newFakeServer(t)
	res := runWith(t, f.url(), "-scenario", "idle", "-conns", "30", "-room-size", "7",
		"-settle", "100ms", "-server-pid", strconv.Itoa(os.Getpid())).(*IdleResult)
	if res.RSSBeforeBytes == nil || res.RSSAfterBytes == nil || res.RSSPerConnBytes == nil {
		t.Fatalf("RSS not measured: %+v", res)
	}
	if *res.RSSPerConnBytes != (*res.RSSAfterBytes-*res.RSSBeforeBytes)/30 {
		t.Fatalf("rss per conn %d from %d → %d", *res.RSSPerConnBytes, *res.RSSBeforeBytes, *res.RSSAfterBytes)
	}
	// 30 clients in rooms of 7: five rooms.
	f.mu.Lock()
	rooms := len(f.rooms)
	f.mu.Unlock()
	if rooms != 5 {
		t.Fatalf("rooms = %d, want 5", rooms)
	}
}

func TestConnectFailureIsReported(t *testing.T) {
	// Nothing listens on port 1: the run fails with a clear error and the
	// result line still comes out.
	cfg, err := parseConfig([]string{"-scenario", "idle", "-conns", "3", "-url", "ws://127.0.0.1:1/live", "-handshake-timeout", "2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res := runScenario(context.Background(), cfg, log.New(io.Discard, "", 0))
	if e := res.common().Error; !strings.Contains(e, "connection") {
		t.Fatalf("error = %q", e)
	}
	if _, err := encodeResult(res); err != nil {
		t.Fatal(err)
	}
}

func TestRunExitCodes(t *testing.T) {
	f := newFakeServer(t)
	var out, errOut bytes.Buffer
	code := run([]string{"-url", f.url(), "-scenario", "idle", "-conns", "2", "-settle", "0s",
		"-label", "T", "-expect", "conns>=2"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("stdout has %d lines, want exactly one JSON line: %q", n, out.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["label"] != "T" || m["scenario"] != "idle" || m["pass"] != true {
		t.Fatalf("result = %v", m)
	}

	out.Reset()
	code = run([]string{"-url", f.url(), "-scenario", "idle", "-conns", "2", "-settle", "0s",
		"-expect", "conns>=3"}, &out, &errOut)
	if code != exitMissed {
		t.Fatalf("missed target: exit %d, want %d", code, exitMissed)
	}
}

func TestBackpressureSkipsInsteadOfBlocking(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw non-blocking sends need the epoll reader")
	}
	f := newFakeServer(t)
	f.stallID = "conn-1" // the server stops reading the only client
	f.discardEvents = true
	cfg, err := parseConfig([]string{"-scenario", "idle", "-url", f.url()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGen(cfg, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	g.roomOf = func(int) int { return 0 }
	clients, err := g.connectAll(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.closeAll(clients)
	c := clients[0]
	if c.rc == nil {
		t.Fatal("the epoll reader is not in use")
	}

	big := appendEventFrame(nil, 1, 0, 1, 60_000)
	accepted := 0
	refused := false
	// Socket buffers are a few MB at most: well within 5,000 frames of 60 KB.
	for i := 0; i < 5000 && !refused; i++ {
		t0 := time.Now()
		ok, err := c.send(big, t0)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("send %d blocked for %v", i, d)
		}
		if ok {
			accepted++
		} else {
			refused = true
		}
	}
	if !refused {
		t.Fatalf("%d sends of 60 KB accepted by a server that reads nothing", accepted)
	}

	// Once the server reads again, the torn frame is finished before the
	// next one and the stream stays valid: the server reads every accepted
	// frame.
	close(f.resume)
	small := appendEventFrame(nil, 1, 0, 2, 100)
	testsvc.WaitFor(t, "the socket to drain after the server resumed reading", 10*time.Second, func() bool {
		ok, err := c.send(small, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	accepted++
	testsvc.WaitFor(t, fmt.Sprintf("the server to read %d frames", accepted), 10*time.Second, func() bool {
		return f.eventsFrom("conn-1") == accepted
	})
}

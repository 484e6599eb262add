package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
)

// TestLimitsFromEnvironmentReachTheServer: run, given
// OPENLIVESYNC_EVENT_RATE=300, serves with an effective EventRate of 300;
// a flag on the command line beats the environment, and the limits left
// alone keep the library's defaults.
func TestLimitsFromEnvironmentReachTheServer(t *testing.T) {
	built := captureServers(t)

	env := map[string]string{
		"OPENLIVESYNC_EVENT_RATE":      "300",
		"OPENLIVESYNC_CHAT_RATE":       "7",
		"OPENLIVESYNC_MAX_CONNECTIONS": "-1",
		"OPENLIVESYNC_STORE_TIMEOUT":   "2s",
	}
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var stderr livesynctest.Buffer
	go func() {
		done <- run([]string{"-addr", "127.0.0.1:0", "-chat-rate", "9"}, func(k string) string { return env[k] }, &stderr, ready)
	}()
	var srv *livesync.Server
	select {
	case <-ready:
		srv = <-built
	case code := <-done:
		t.Fatalf("run exited %d: %s", code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start serving")
	}
	l := srv.Limits()
	srv.Shutdown(context.Background()) // run returns once Serve does
	<-done
	if l.EventRate != 300 || l.ChatRate != 9 || l.MaxConnections >= 0 || l.StoreTimeout != 2*time.Second {
		t.Fatalf("effective limits %+v, want EventRate 300 (env), ChatRate 9 (flag), MaxConnections off, StoreTimeout 2s", l)
	}
	if l.EventBurst != 200 || l.SendQueueBytes != 1<<20 {
		t.Fatalf("effective limits %+v, want the defaults where nothing was set", l)
	}
}

// TestBadLimitExits2WithOneLine: a limit that is not a number, is
// negative where it cannot be off, or is given as 0, stops the binary with exit code 2 and
// one line naming the flag or the variable.
func TestBadLimitExits2WithOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"-send-queue-bytes", "-1"}, want: "-send-queue-bytes"},
		{args: []string{"-event-burst", "-5"}, want: "-event-burst"},
		{args: []string{"-event-rate", "fast"}, want: "-event-rate"},
		{args: []string{"-event-rate", "-1"}, want: "-event-rate"},
		{args: []string{"-send-queue-bytes", "0"}, want: "-send-queue-bytes"},
		{env: map[string]string{"OPENLIVESYNC_CHAT_RATE": "0"}, want: "OPENLIVESYNC_CHAT_RATE"},
		{args: []string{"-store-timeout", "5"}, want: "-store-timeout"},
		{env: map[string]string{"OPENLIVESYNC_MAX_CHAT_BYTES": "lots"}, want: "OPENLIVESYNC_MAX_CHAT_BYTES"},
		{env: map[string]string{"OPENLIVESYNC_PING_INTERVAL": "-1s"}, want: "OPENLIVESYNC_PING_INTERVAL"},
		// A number, but not the whole one a count wants.
		{args: []string{"-chat-burst", "1.5"}, want: "-chat-burst: not a whole number"},
		{args: []string{"-max-chat-bytes", "1.5"}, want: "-max-chat-bytes: not a whole number"},
		{env: map[string]string{"OPENLIVESYNC_MAX_CHAT_BYTES": "1.5"}, want: "OPENLIVESYNC_MAX_CHAT_BYTES: not a whole number"},
		{args: []string{"-event-rate", "fast"}, want: "-event-rate: not a number"}, // a rate may be 1.5
		// Caught by New, which names the fields and their flags.
		{args: []string{"-pong-timeout", "5s"}, want: "-pong-timeout"},
	} {
		var stderr bytes.Buffer
		code := run(append([]string{"-addr", "127.0.0.1:0"}, tc.args...), func(k string) string { return tc.env[k] }, &stderr, nil)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "openlivesync: ") || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and one line naming %s", tc.args, tc.env, code, stderr.String(), tc.want)
		}
		// A flag given as 0 is refused: the advice is to leave it out.
		if strings.Contains(stderr.String(), "0 means") {
			t.Errorf("%v %v: stderr %q advises 0", tc.args, tc.env, stderr.String())
		}
	}
}

// TestHelpListsEveryLimit: -h shows one flag per Limits field with its
// default, and the rule for 0 and negative values.
func TestHelpListsEveryLimit(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-h"}, noEnv, &stderr, nil); code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	help := stderr.String()
	for _, info := range livesync.LimitTable() {
		def := info.Default
		if info.Field == "ReadHeaderTimeout" {
			def = "-handshake-timeout"
		}
		if !strings.Contains(help, "\n  -"+info.Flag+" ") || !strings.Contains(help, "(default "+def+")") {
			t.Errorf("-h does not list -%s with its default %s", info.Flag, def)
		}
	}
	for _, want := range []string{"(default 100ms)", "(default 100)", "negative: no throttle", "given as 0 is refused"} {
		if !strings.Contains(help, want) {
			t.Errorf("-h does not say %q:\n%s", want, help)
		}
	}
}

// TestHistoryLimitAndThrottleFollowTheLibrary: -history-limit and
// -presence-throttle pass 0 (the default) and negative (none) through to
// the library as they are, the CLI's old "0 means none" gone.
func TestHistoryLimitAndThrottleFollowTheLibrary(t *testing.T) {
	var got []livesync.Options
	newServer = func(o *livesync.Options) (*livesync.Server, error) {
		got = append(got, *o)
		return livesync.New(o)
	}
	defer func() { newServer = livesync.New }()
	for _, args := range [][]string{nil, {"-history-limit", "0", "-presence-throttle", "0"}, {"-history-limit", "-1", "-presence-throttle", "-1ms"}} {
		buildServer(t, args...).Shutdown(context.Background())
	}
	for i, want := range [][2]int64{{0, 0}, {0, 0}, {-1, int64(-time.Millisecond)}} {
		if o := got[i]; int64(o.HistoryLimit) != want[0] || int64(o.PresenceThrottle) != want[1] {
			t.Errorf("build %d: HistoryLimit %d, PresenceThrottle %v; want %d, %v", i, o.HistoryLimit, o.PresenceThrottle, want[0], time.Duration(want[1]))
		}
	}
}

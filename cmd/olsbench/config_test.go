package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseConfigValid(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c *Config)
	}{
		{"fanout defaults", []string{"-scenario", "fanout"}, func(t *testing.T, c *Config) {
			if len(c.URLs) != 1 || c.URLs[0] != "ws://127.0.0.1:3000/live" || c.Rooms != 1 || c.Clients != 10 || c.Interval != 100*time.Millisecond {
				t.Errorf("defaults: %+v", c)
			}
			if c.totalConns() != 10 || c.Inflight != 50 || c.PerIP != 900 {
				t.Errorf("totalConns %d inflight %d per-ip %d", c.totalConns(), c.Inflight, c.PerIP)
			}
		}},
		{"fanout S1", []string{"-scenario", "fanout", "-rooms", "200", "-clients", "5", "-interval", "100ms",
			"-warmup", "5s", "-duration", "20s", "-server-pid", pid, "-label", "S1",
			"-expect", "loss<=0, deliveries_per_server_cpu_s>=120000"}, func(t *testing.T, c *Config) {
			if c.totalConns() != 1000 || c.Label != "S1" || len(c.ServerPIDs) != 1 || c.ServerPIDs[0] != os.Getpid() {
				t.Errorf("%+v", c)
			}
			want := []Expectation{{"loss", "<=", 0}, {"deliveries_per_server_cpu_s", ">=", 120000}}
			if len(c.Expect) != 2 || c.Expect[0] != want[0] || c.Expect[1] != want[1] {
				t.Errorf("expect = %+v", c.Expect)
			}
			if got := c.params(); got != "200 rooms × 5 clients, every 100ms" {
				t.Errorf("params = %q", got)
			}
		}},
		{"idle", []string{"-scenario", "idle", "-conns", "10000", "-room-size", "10"}, func(t *testing.T, c *Config) {
			if c.totalConns() != 10000 || c.Settle != 5*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{"joinstorm", []string{"-scenario", "joinstorm", "-conns", "5000", "-inflight", "50"}, func(t *testing.T, c *Config) {
			if c.Conns != 5000 || c.Inflight != 50 {
				t.Errorf("%+v", c)
			}
		}},
		{"chat", []string{"-scenario", "chat", "-clients", "500", "-rooms", "50", "-rate", "2000"}, func(t *testing.T, c *Config) {
			if c.totalConns() != 500 || c.Rate != 2000 {
				t.Errorf("%+v", c)
			}
		}},
		{"localhost becomes 127.0.0.1", []string{"-scenario", "idle", "-url", "ws://localhost:8080/x"}, func(t *testing.T, c *Config) {
			if len(c.URLs) != 1 || c.URLs[0] != "ws://127.0.0.1:8080/x" {
				t.Errorf("urls = %q", c.URLs)
			}
		}},
		{"ipv6 loopback", []string{"-scenario", "idle", "-url", "ws://[::1]:3000/live"}, func(t *testing.T, c *Config) {
			if len(c.URLs) != 1 || c.URLs[0] != "ws://[::1]:3000/live" {
				t.Errorf("urls = %q", c.URLs)
			}
		}},
		{"other loopback address", []string{"-scenario", "idle", "-url", "wss://127.1.2.3/live"}, func(t *testing.T, c *Config) {
			if len(c.URLs) != 1 || c.URLs[0] != "wss://127.1.2.3/live" {
				t.Errorf("urls = %q", c.URLs)
			}
		}},
		{"report", []string{"-report", "results.jsonl"}, func(t *testing.T, c *Config) {
			if c.Report != "results.jsonl" {
				t.Errorf("report = %q", c.Report)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q): %v", tc.args, err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the error
	}{
		{"no scenario", nil, "-scenario is required"},
		{"unknown scenario", []string{"-scenario", "flood"}, `-scenario "flood"`},
		{"unknown flag", []string{"-scenario", "idle", "-bogus", "1"}, "flag provided but not defined: -bogus"},
		{"bad int", []string{"-scenario", "idle", "-conns", "many"}, "invalid value \"many\" for flag -conns"},
		{"bad duration", []string{"-scenario", "fanout", "-interval", "fast"}, "-interval"},
		{"positional", []string{"-scenario", "idle", "extra"}, `unexpected argument "extra"`},
		{"flag of another scenario", []string{"-scenario", "fanout", "-conns", "5"}, "-conns: not used by scenario fanout"},
		{"two stray flags", []string{"-scenario", "idle", "-rate", "5", "-interval", "1s"}, "-interval, -rate: not used by scenario idle"},
		{"remote host", []string{"-scenario", "idle", "-url", "ws://10.0.0.1:3000/live"}, "must be a loopback address"},
		{"remote name", []string{"-scenario", "idle", "-url", "ws://example.com/live"}, "must be a loopback address"},
		{"http scheme", []string{"-scenario", "idle", "-url", "http://127.0.0.1:3000/live"}, "scheme must be ws or wss"},
		{"no host", []string{"-scenario", "idle", "-url", "ws:///live"}, "no host"},
		{"fanout one client", []string{"-scenario", "fanout", "-clients", "1"}, "-clients 1: want at least 2 per room"},
		{"fanout zero rooms", []string{"-scenario", "fanout", "-rooms", "0"}, "-rooms 0"},
		{"fanout tiny interval", []string{"-scenario", "fanout", "-interval", "10us"}, "-interval 10µs"},
		{"fanout too many", []string{"-scenario", "fanout", "-rooms", "1000", "-clients", "1000"}, "at most 200000 connections"},
		{"negative warmup", []string{"-scenario", "fanout", "-warmup", "-1s"}, "-warmup -1s"},
		{"huge duration", []string{"-scenario", "chat", "-duration", "2h"}, "-duration 2h0m0s"},
		{"chat zero rate", []string{"-scenario", "chat", "-rate", "0"}, "-rate 0"},
		{"chat NaN rate", []string{"-scenario", "chat", "-rate", "NaN"}, "-rate NaN"},
		{"chat more rooms than clients", []string{"-scenario", "chat", "-clients", "2", "-rooms", "3"}, "more rooms than -clients"},
		{"idle zero conns", []string{"-scenario", "idle", "-conns", "0"}, "-conns 0"},
		{"idle zero room size", []string{"-scenario", "idle", "-room-size", "0"}, "-room-size 0"},
		{"joinstorm one conn", []string{"-scenario", "joinstorm", "-conns", "1"}, "-conns 1: want 2.."},
		{"zero inflight", []string{"-scenario", "joinstorm", "-inflight", "0"}, "-inflight 0"},
		{"bad readers", []string{"-scenario", "idle", "-readers", "threads"}, `-readers "threads"`},
		{"negative per-ip", []string{"-scenario", "idle", "-per-ip", "-1"}, "-per-ip -1"},
		{"several errors at once", []string{"-scenario", "idle", "-conns", "0", "-room-size", "0"}, "-conns 0: want 1..200000; -room-size 0"},
		{"missing pid", []string{"-scenario", "idle", "-server-pid", "999999999"}, "-server-pid 999999999"},
		{"negative pid", []string{"-scenario", "idle", "-server-pid", "-3"}, "-server-pid -3"},
		{"expect unknown field", []string{"-scenario", "idle", "-expect", "loss<=0"}, `unknown result field "loss"`},
		{"expect bad operator", []string{"-scenario", "fanout", "-expect", "loss=<0"}, "unknown operator"},
		{"expect no operator", []string{"-scenario", "fanout", "-expect", "loss"}, "want KEY<=N"},
		{"expect bad number", []string{"-scenario", "fanout", "-expect", "loss<=low"}, `"low" is not a number`},
		{"expect empty part", []string{"-scenario", "fanout", "-expect", "loss<=0,,"}, "empty target"},
		{"expect string field", []string{"-scenario", "fanout", "-expect", "label==1"}, `unknown result field "label"`},
		{"report with scenario", []string{"-report", "x", "-scenario", "idle"}, "-report takes no other flag"},
		{"report empty", []string{"-report", ""}, "-report needs a file name"},
		{"cluster report with scenario", []string{"-cluster-report", "x", "-scenario", "idle"}, "-cluster-report takes no other flag"},
		{"empty url in list", []string{"-scenario", "idle", "-url", "ws://127.0.0.1:1/live,,ws://127.0.0.1:2/live"}, "empty item"},
		{"remote url in list", []string{"-scenario", "idle", "-url", "ws://127.0.0.1:1/live", "-url", "ws://10.0.0.1:2/live"}, "must be a loopback address"},
		{"url twice", []string{"-scenario", "idle", "-url", "ws://127.0.0.1:1/live,ws://localhost:1/live"}, "ws://127.0.0.1:1/live: named twice"},
		{"mixed schemes", []string{"-scenario", "idle", "-url", "ws://127.0.0.1:1/live,wss://127.0.0.1:2/live"}, "one scheme"},
		{"server pid twice", []string{"-scenario", "idle", "-server-pid", strconv.Itoa(os.Getpid()), "-server-pid", strconv.Itoa(os.Getpid())}, "named twice"},
		{"server pid not a number", []string{"-scenario", "idle", "-server-pid", "1,x"}, "-server-pid x: want a process id"},
		{"missing redis pid", []string{"-scenario", "idle", "-redis-pid", "999999999"}, "-redis-pid 999999999: no such process"},
		{"pid as server and redis", []string{"-scenario", "idle", "-server-pid", strconv.Itoa(os.Getpid()), "-redis-pid", strconv.Itoa(os.Getpid())}, "both a -server-pid and a -redis-pid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, io.Discard)
			if err == nil {
				t.Fatalf("parseConfig(%q) succeeded, want error containing %q", tc.args, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseConfig(%q) = %q, want it to contain %q", tc.args, err, tc.want)
			}
			// Every usage error exits 2 with one line naming the problem.
			var stderr bytes.Buffer
			if code := run(tc.args, io.Discard, &stderr); code != exitUsage {
				t.Fatalf("run(%q) exit code = %d, want %d", tc.args, code, exitUsage)
			}
			if msg := stderr.String(); !strings.HasPrefix(msg, "olsbench: ") || strings.Count(msg, "\n") != 1 {
				t.Fatalf("stderr = %q, want one olsbench: line", msg)
			}
		})
	}
}

// TestParseConfigLists: -url, -server-pid and -redis-pid take lists,
// comma-separated, repeated or both, and the first -url replaces the
// default.
func TestParseConfigLists(t *testing.T) {
	self, parent := strconv.Itoa(os.Getpid()), strconv.Itoa(os.Getppid())
	c, err := parseConfig([]string{"-scenario", "fanout",
		"-url", "ws://127.0.0.1:3001/live, ws://localhost:3002/live", "-url", "ws://127.0.0.1:3003/live",
		"-server-pid", self + "," + parent, "-redis-pid", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ws://127.0.0.1:3001/live", "ws://127.0.0.1:3002/live", "ws://127.0.0.1:3003/live"}
	if strings.Join(c.URLs, " ") != strings.Join(want, " ") {
		t.Errorf("urls = %q, want %q", c.URLs, want)
	}
	if len(c.ServerPIDs) != 2 || c.ServerPIDs[0] != os.Getpid() || c.ServerPIDs[1] != os.Getppid() {
		t.Errorf("server pids = %v", c.ServerPIDs)
	}
	if len(c.RedisPIDs) != 1 || c.RedisPIDs[0] != 1 {
		t.Errorf("redis pids = %v", c.RedisPIDs)
	}
	// Without the flags: the default URL, no pids.
	c, err = parseConfig([]string{"-scenario", "fanout"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.URLs) != 1 || c.ServerPIDs != nil || c.RedisPIDs != nil {
		t.Errorf("defaults: urls %q, server pids %v, redis pids %v", c.URLs, c.ServerPIDs, c.RedisPIDs)
	}
	// -expect knows the Redis figures.
	if _, err := parseConfig([]string{"-scenario", "fanout",
		"-expect", "redis_cpu_ms_per_1k_deliveries<=0.5,redis_cpu_max_min_ratio<=2,redis_cpu_s<1"}, io.Discard); err != nil {
		t.Errorf("-expect on Redis fields: %v", err)
	}
}

func TestParseConfigHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := parseConfig([]string{"-h"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(out.String(), "-scenario") || !strings.Contains(out.String(), "Exit codes") {
		t.Fatalf("usage text: %q", out.String())
	}
	if code := run([]string{"-help"}, io.Discard, io.Discard); code != exitOK {
		t.Fatalf("-help exit code %d", code)
	}
}

func TestNumericResultFields(t *testing.T) {
	f := numericResultFields(scenarioFanout)
	for _, k := range []string{"loss", "latency_p99_ms", "deliveries_per_server_cpu_s", "server_cpu_s", "client_cpu_fraction", "delivered_per_s"} {
		if !f[k] {
			t.Errorf("fanout lacks numeric field %q", k)
		}
	}
	for _, k := range []string{"label", "warnings", "errors", "pass"} {
		if f[k] {
			t.Errorf("fanout lists non-numeric field %q", k)
		}
	}
	if !numericResultFields(scenarioIdle)["rss_per_conn_bytes"] || !numericResultFields(scenarioJoinstorm)["view_complete_s"] ||
		!numericResultFields(scenarioChat)["persisted_per_s"] {
		t.Error("scenario-specific fields missing")
	}
	if len(numericResultFields("nope")) != 0 {
		t.Error("unknown scenario has fields")
	}
}

func TestCheckExpectations(t *testing.T) {
	cpu := 2.0
	r := &FanoutResult{Deliveries: Deliveries{Loss: 0.002}, LatencySummary: LatencySummary{P99MS: 40}}
	r.ServerCPUS = &cpu
	exps, err := parseExpect("loss<0.001,latency_p99_ms<=50,server_cpu_s>1,deliveries_per_server_cpu_s>=1", numericResultFields(scenarioFanout))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkExpectations(r, exps); err != nil {
		t.Fatal(err)
	}
	if r.Pass == nil || *r.Pass {
		t.Fatalf("pass = %v", r.Pass)
	}
	want := []string{"loss<0.001 (got 0.002)", "deliveries_per_server_cpu_s>=1 (not measured)"}
	if strings.Join(r.Missed, "|") != strings.Join(want, "|") {
		t.Fatalf("missed = %q, want %q", r.Missed, want)
	}
	for _, tc := range []struct {
		op   string
		v    float64
		want bool
	}{{"<=", 1, true}, {"<=", 0.5, false}, {">=", 1, true}, {"<", 1, false}, {">", 0.5, true}, {"==", 1, true}, {"==", 2, false}} {
		if got := (Expectation{"x", tc.op, tc.v}).holds(1); got != tc.want {
			t.Errorf("1 %s %v = %v", tc.op, tc.v, got)
		}
	}
	// No targets: no verdict.
	var plain IdleResult
	if err := checkExpectations(&plain, nil); err != nil || plain.Pass != nil {
		t.Fatalf("no targets: err %v pass %v", err, plain.Pass)
	}
}

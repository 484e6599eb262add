package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Scenario names accepted by -scenario.
const (
	scenarioFanout    = "fanout"
	scenarioIdle      = "idle"
	scenarioJoinstorm = "joinstorm"
	scenarioChat      = "chat"
	scenarioDoc       = "doc" // D1: see doc.go
)

// Upper bounds that keep every run finite and sane even with a typo in a
// flag: the generator is a benchmark, not a stress test of its own machine.
const (
	maxConns    = 200_000
	maxDuration = time.Hour
	maxRate     = 1_000_000
	maxPayload  = 60_000
)

// Config is a validated command line.
type Config struct {
	Scenario string
	// URLs are the nodes' normalised ws:// or wss:// URLs on loopback
	// hosts; member k of every room connects to URLs[k mod len(URLs)].
	URLs []string
	// ServerPIDs are the nodes' processes, RedisPIDs those of Redis (one
	// per shard of a Redis Cluster): their CPU time over the window is
	// summed, and reported per process too.
	ServerPIDs []int
	RedisPIDs  []int
	Label      string
	Expect     []Expectation
	ExpectRaw  string

	Rooms        int
	Clients      int // fanout: per room; chat: in total
	Interval     time.Duration
	Warmup       time.Duration
	Duration     time.Duration
	Grace        time.Duration
	PayloadBytes int

	Conns    int
	RoomSize int
	Settle   time.Duration

	Inflight         int
	Rate             float64
	Timeout          time.Duration
	HandshakeTimeout time.Duration
	PerIP            int

	Report        string // path of JSON lines to turn into a Markdown table
	ClusterReport string // the same, for the cluster comparison table
	CPUProfile    string // write the generator's own CPU profile here

	// Readers is "epoll" (default: a few goroutines read every socket
	// through epoll) or "goroutine" (one reader goroutine per connection,
	// the portable way, dearer per frame).
	Readers string
}

// Flags each scenario accepts besides the common ones. Setting a flag a
// scenario ignores is reported, because it is almost always a mistake
// (e.g. -conns for fanout, whose size is -rooms × -clients).
var (
	commonFlags   = []string{"scenario", "url", "server-pid", "redis-pid", "label", "expect", "inflight", "timeout", "handshake-timeout", "per-ip", "cpuprofile", "readers"}
	scenarioFlags = map[string][]string{
		scenarioFanout:    {"rooms", "clients", "interval", "warmup", "duration", "grace", "payload-bytes"},
		scenarioIdle:      {"conns", "room-size", "settle"},
		scenarioJoinstorm: {"conns"},
		scenarioChat:      {"clients", "rooms", "rate", "warmup", "duration", "grace", "payload-bytes"},
		scenarioDoc:       {"clients", "interval", "warmup", "duration", "grace"},
	}
)

// usageText heads the -h output.
const usageText = `olsbench: load generator for an OpenLiveSync server on this machine.

Usage:
  olsbench -scenario fanout    [-rooms R] [-clients N] [-interval D] [-warmup D] [-duration D] [flags]
  olsbench -scenario idle      [-conns N] [-room-size K] [-settle D] [flags]
  olsbench -scenario joinstorm [-conns N] [-inflight K] [flags]
  olsbench -scenario chat      [-clients N] [-rooms R] [-rate MSGS_PER_S] [-warmup D] [-duration D] [flags]
  olsbench -scenario doc       -url ws://HOST:PORT/BASE [-clients N] [-interval D] [-warmup D] [-duration D] [flags]
  olsbench -report RESULTS.jsonl
  olsbench -cluster-report RESULTS.jsonl

Several nodes of a cluster: -url ws://127.0.0.1:3001/live,ws://127.0.0.1:3002/live
(or -url repeated) spreads each room's members over them round-robin;
-server-pid and -redis-pid take lists the same way.

The doc scenario speaks y-websocket: -url is a y-websocket server's base
(ws://127.0.0.1:3000/yjs for this server), -clients the editors of its one
document, each typing a character every -interval.

Each run prints one JSON line of results on stdout and progress on stderr.
Exit codes: 0 done, 1 run failed, 2 bad flags, 3 a -expect target was missed.

Flags:
`

// defaultURL is -url when it is not given.
const defaultURL = "ws://127.0.0.1:3000/live"

// maxNodes bounds -url's list: more is a typo, not a cluster on one machine.
const maxNodes = 64

// listFlags holds the raw values of the flags that take lists, parsed into
// Config once the command line has been read.
type listFlags struct {
	urls, serverPIDs, redisPIDs listFlag
}

// newFlagSet declares every flag on cfg, and the list flags on lists.
func newFlagSet(cfg *Config, lists *listFlags, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("olsbench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Scenario, "scenario", "", "fanout, idle, joinstorm, chat or doc")
	lists.urls = listFlag{vals: []string{defaultURL}}
	fs.Var(&lists.urls, "url", "server WebSocket URL (loopback hosts only); for a cluster, each node's: comma-separated `URLs` or the flag repeated;\n"+
		"member k of every room connects to URL k mod their number, so that every room spans the nodes")
	fs.Var(&lists.serverPIDs, "server-pid", "server process id, to read its CPU time and RSS from /proc; for a cluster, each node's: comma-separated `pids`\n"+
		"or the flag repeated; CPU and RSS are summed over them, and reported per process too")
	fs.Var(&lists.redisPIDs, "redis-pid", "Redis process ids (one per shard of a Redis Cluster): comma-separated `pids` or the flag repeated;\n"+
		"their CPU time over the window is reported as redis_cpu_s, per process, and per 1,000 deliveries (fanout)")
	fs.StringVar(&cfg.Label, "label", "", "name echoed in the result (e.g. S1), used by -report")
	fs.StringVar(&cfg.ExpectRaw, "expect", "", "targets checked against the result, e.g. 'loss<=0,latency_p99_ms<=50'")

	fs.IntVar(&cfg.Rooms, "rooms", 1, "number of rooms (fanout, chat)")
	fs.IntVar(&cfg.Clients, "clients", 10, "fanout: clients per room; chat: clients in total")
	fs.DurationVar(&cfg.Interval, "interval", 100*time.Millisecond, "fanout: each client sends one broadcast_event per interval")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "sending time before the measurement window (fanout, chat)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement window (fanout, chat)")
	fs.DurationVar(&cfg.Grace, "grace", 2*time.Second, "wait after the window for in-flight deliveries before counting loss")
	fs.IntVar(&cfg.PayloadBytes, "payload-bytes", 100, "size of the event payload / chat metadata object in bytes")

	fs.IntVar(&cfg.Conns, "conns", 1000, "connections (idle, joinstorm)")
	fs.IntVar(&cfg.RoomSize, "room-size", 10, "idle: clients per room")
	fs.DurationVar(&cfg.Settle, "settle", 5*time.Second, "idle: wait after the last join before reading RSS")

	fs.IntVar(&cfg.Inflight, "inflight", 50, "most connection set-ups (dial, upgrade, join until room_joined) in flight at once")
	fs.Float64Var(&cfg.Rate, "rate", 100, "chat: messages per second from all clients together")
	fs.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "bound on connecting everyone, and on a join storm")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", 10*time.Second, "bound on one dial + WebSocket upgrade")
	fs.IntVar(&cfg.PerIP, "per-ip", 900, "most connections per source address: spreads clients over 127.0.0.1, .2, ... to stay under the server's per-address cap; 0 = let the kernel choose")

	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the generator's CPU profile to this file (to see whether the client is the bottleneck, and why)")
	fs.StringVar(&cfg.Readers, "readers", "epoll", "how frames are read: epoll (cheapest; Linux, ws:// only, else falls back) or goroutine (one per connection)")
	fs.StringVar(&cfg.Report, "report", "", "print a Markdown results table from a file of result JSON lines, then exit")
	fs.StringVar(&cfg.ClusterReport, "cluster-report", "", "print a Markdown table of the fanout runs of a cluster in a file of result JSON lines,\n"+
		"each beside the single-node run of the same size in that file, then exit")
	return fs
}

// parseConfig parses and validates the command line. Any error it returns is
// a usage error (exit code 2), except flag.ErrHelp for -h.
func parseConfig(args []string, out io.Writer) (*Config, error) {
	cfg := &Config{}
	var lists listFlags
	fs := newFlagSet(cfg, &lists, out)
	// Errors are reported by the caller in one line; the flag package's own
	// message plus full usage would bury it.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.Usage()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	for _, f := range []struct {
		name, path string
	}{{"report", cfg.Report}, {"cluster-report", cfg.ClusterReport}} {
		if !set[f.name] {
			continue
		}
		if len(set) > 1 {
			return nil, fmt.Errorf("-%s takes no other flag", f.name)
		}
		if f.path == "" {
			return nil, fmt.Errorf("-%s needs a file name", f.name)
		}
		return cfg, nil
	}
	if cfg.Scenario == "" {
		return nil, errors.New("-scenario is required (fanout, idle, joinstorm, chat or doc)")
	}
	allowed, known := scenarioFlags[cfg.Scenario]
	if !known {
		return nil, fmt.Errorf("-scenario %q: want fanout, idle, joinstorm, chat or doc", cfg.Scenario)
	}
	ok := map[string]bool{}
	for _, f := range append(append([]string{}, commonFlags...), allowed...) {
		ok[f] = true
	}
	var stray []string
	for f := range set {
		if !ok[f] {
			stray = append(stray, "-"+f)
		}
	}
	if len(stray) > 0 {
		sort.Strings(stray)
		return nil, fmt.Errorf("%s: not used by scenario %s", strings.Join(stray, ", "), cfg.Scenario)
	}

	if err := cfg.setLists(&lists); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.ExpectRaw != "" {
		exp, err := parseExpect(cfg.ExpectRaw, numericResultFields(cfg.Scenario))
		if err != nil {
			return nil, fmt.Errorf("-expect: %w", err)
		}
		cfg.Expect = exp
	}
	return cfg, nil
}

// setLists checks the list flags and stores them in c: every URL on a
// loopback host, named once, in one scheme; every pid a live process, and
// none both a server's and Redis's.
func (c *Config) setLists(l *listFlags) error {
	if len(l.urls.vals) > maxNodes {
		return fmt.Errorf("-url: %d URLs, at most %d", len(l.urls.vals), maxNodes)
	}
	seen := map[string]bool{}
	for _, raw := range l.urls.vals {
		u, err := checkURL(raw)
		if err != nil {
			return err
		}
		if seen[u] {
			return fmt.Errorf("-url %s: named twice", u)
		}
		seen[u] = true
		c.URLs = append(c.URLs, u)
	}
	// One scheme for all, because the epoll reader serves ws:// only and
	// is chosen for the whole run.
	for _, u := range c.URLs[1:] {
		if scheme(u) != scheme(c.URLs[0]) {
			return fmt.Errorf("-url: %s and %s: all URLs must use one scheme", c.URLs[0], u)
		}
	}
	var err error
	if c.ServerPIDs, err = parsePIDs("server-pid", l.serverPIDs.vals); err != nil {
		return err
	}
	if c.RedisPIDs, err = parsePIDs("redis-pid", l.redisPIDs.vals); err != nil {
		return err
	}
	for _, s := range c.ServerPIDs {
		if slices.Contains(c.RedisPIDs, s) {
			return fmt.Errorf("pid %d is both a -server-pid and a -redis-pid", s)
		}
	}
	for _, f := range []struct {
		name string
		pids []int
	}{{"server-pid", c.ServerPIDs}, {"redis-pid", c.RedisPIDs}} {
		for _, pid := range f.pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
				return fmt.Errorf("-%s %d: no such process readable in /proc", f.name, pid)
			}
		}
	}
	return nil
}

// scheme returns a checked URL's scheme, ws or wss.
func scheme(u string) string {
	s, _, _ := strings.Cut(u, ":")
	return s
}

// checkURL accepts only ws/wss URLs whose host is a loopback address: the
// generator is built to saturate a server, and pointing it at another
// machine by accident would be a denial of service. "localhost" becomes
// 127.0.0.1 so that name resolution cannot pick a non-loopback address.
func checkURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("-url: %v", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return "", fmt.Errorf("-url %q: scheme must be ws or wss", raw)
	}
	host := u.Hostname()
	if host == "" {
		return "", fmt.Errorf("-url %q: no host", raw)
	}
	port := u.Port()
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("-url %q: host must be a loopback address (127.0.0.0/8, ::1 or localhost)", raw)
	}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	} else if ip.To4() == nil {
		u.Host = "[" + host + "]"
	} else {
		u.Host = host
	}
	return u.String(), nil
}

// validate checks the numbers of the chosen scenario.
func (c *Config) validate() error {
	var errs []string
	check := func(bad bool, format string, args ...any) {
		if bad {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	dur := func(name string, d, lo time.Duration) {
		check(d < lo || d > maxDuration, "-%s %v: want %v..%v", name, d, lo, maxDuration)
	}
	check(c.Inflight < 1 || c.Inflight > 10_000, "-inflight %d: want 1..10000", c.Inflight)
	dur("timeout", c.Timeout, time.Second)
	dur("handshake-timeout", c.HandshakeTimeout, 100*time.Millisecond)
	check(c.PerIP < 0, "-per-ip %d: want 0 (no spreading) or more", c.PerIP)
	check(c.Readers != "epoll" && c.Readers != "goroutine", "-readers %q: want epoll or goroutine", c.Readers)

	switch c.Scenario {
	case scenarioFanout, scenarioChat:
		check(c.Rooms < 1, "-rooms %d: want at least 1", c.Rooms)
		dur("warmup", c.Warmup, 0)
		dur("duration", c.Duration, 100*time.Millisecond)
		dur("grace", c.Grace, 0)
		check(c.PayloadBytes < 0 || c.PayloadBytes > maxPayload, "-payload-bytes %d: want 0..%d", c.PayloadBytes, maxPayload)
		if c.Scenario == scenarioFanout {
			// One sender alone in a room has no receivers to measure.
			check(c.Clients < 2, "-clients %d: want at least 2 per room", c.Clients)
			check(c.totalConns() > maxConns, "-rooms × -clients = %d: at most %d connections", c.totalConns(), maxConns)
			dur("interval", c.Interval, time.Millisecond)
		} else {
			check(c.Clients < 1 || c.Clients > maxConns, "-clients %d: want 1..%d", c.Clients, maxConns)
			check(c.Rooms > c.Clients, "-rooms %d: more rooms than -clients %d", c.Rooms, c.Clients)
			check(!(c.Rate > 0) || c.Rate > maxRate, "-rate %v: want a rate in (0, %d] messages/s", c.Rate, maxRate)
		}
	case scenarioIdle:
		check(c.Conns < 1 || c.Conns > maxConns, "-conns %d: want 1..%d", c.Conns, maxConns)
		check(c.RoomSize < 1, "-room-size %d: want at least 1", c.RoomSize)
		dur("settle", c.Settle, 0)
	case scenarioJoinstorm:
		check(c.Conns < 2 || c.Conns > maxConns, "-conns %d: want 2..%d", c.Conns, maxConns)
	case scenarioDoc:
		errs = append(errs, c.docErrors()...)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// totalConns is how many connections the scenario opens.
func (c *Config) totalConns() int {
	switch c.Scenario {
	case scenarioFanout:
		return c.Rooms * c.Clients
	case scenarioChat:
		return c.Clients
	default:
		return c.Conns
	}
}

// params describes the scenario's size in one short line for the report.
func (c *Config) params() string {
	switch c.Scenario {
	case scenarioFanout:
		return fmt.Sprintf("%s × %d clients, every %v", plural(c.Rooms, "room"), c.Clients, c.Interval)
	case scenarioIdle:
		return fmt.Sprintf("%s, rooms of %d", plural(c.Conns, "conn"), c.RoomSize)
	case scenarioJoinstorm:
		return fmt.Sprintf("%s, %d in flight", plural(c.Conns, "conn"), c.Inflight)
	case scenarioChat:
		return fmt.Sprintf("%s in %s, %g msgs/s", plural(c.Clients, "client"), plural(c.Rooms, "room"), c.Rate)
	case scenarioDoc:
		return c.docParams()
	}
	return ""
}

// plural renders "1 room", "2 rooms".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

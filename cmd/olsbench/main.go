// Command olsbench is a load generator for an OpenLiveSync server running on
// the same machine. It opens many WebSocket connections, drives one of five
// scenarios (fanout, idle, joinstorm, chat, doc), and prints one JSON line of
// results on stdout; progress goes to stderr. Given several -url, it spreads
// each room's members over those nodes of a cluster. With -server-pid it
// reads the servers' CPU time and RSS from /proc, with -redis-pid Redis's
// CPU time, and it always measures its own CPU so that a result bounded by
// the generator is flagged as such.
//
// See BENCHMARKS.md at the repository root for the scenarios and targets,
// and bench/run.sh for the full suite.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the run could not complete
	exitUsage  = 2 // bad flags
	exitMissed = 3 // the run completed but missed an -expect target
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "olsbench: %v\n", err)
		return exitUsage
	}
	if cfg.Report != "" || cfg.ClusterReport != "" {
		var err error
		if cfg.Report != "" {
			err = writeReportFile(cfg.Report, stdout)
		} else {
			err = writeClusterReportFile(cfg.ClusterReport, stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "olsbench: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "olsbench: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "olsbench: %v\n", err)
			return exitFailed
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res := runScenario(ctx, cfg, log.New(stderr, "olsbench: ", log.Ltime|log.Lmicroseconds))
	line, err := encodeResult(res)
	if err != nil {
		fmt.Fprintf(stderr, "olsbench: %v\n", err)
		return exitFailed
	}
	if _, err := stdout.Write(line); err != nil {
		return exitFailed
	}
	c := res.common()
	switch {
	case c.Error != "":
		fmt.Fprintf(stderr, "olsbench: %s\n", c.Error)
		return exitFailed
	case c.Pass != nil && !*c.Pass:
		fmt.Fprintf(stderr, "olsbench: missed %v\n", c.Missed)
		return exitMissed
	}
	return exitOK
}

// runScenario runs cfg's scenario and always returns a result; a failure is
// recorded in its Error field so the results file keeps a line for it.
func runScenario(ctx context.Context, cfg *Config, logger *log.Logger) result {
	started := time.Now()
	g, err := newGen(cfg, logger)
	var res result
	if err == nil {
		switch cfg.Scenario {
		case scenarioFanout:
			res, err = runFanout(ctx, g)
		case scenarioIdle:
			res, err = runIdle(ctx, g)
		case scenarioJoinstorm:
			res, err = runJoinstorm(ctx, g)
		case scenarioChat:
			res, err = runChat(ctx, g)
		case scenarioDoc:
			res, err = runDoc(ctx, g)
		default:
			err = fmt.Errorf("unknown scenario %q", cfg.Scenario)
		}
	}
	if res == nil {
		res = &Common{}
	}
	c := res.common()
	c.Label, c.Scenario, c.Params = cfg.Label, cfg.Scenario, cfg.params()
	c.URL, c.Nodes = strings.Join(cfg.URLs, ","), len(cfg.URLs)
	c.Start = started.UTC().Format(time.RFC3339)
	c.ClientCPUs = max(c.ClientCPUs, 1)
	c.Expect = cfg.ExpectRaw
	if g != nil {
		g.finish(c)
	}
	if err != nil {
		c.Error = err.Error()
	}
	if err := checkExpectations(res, cfg.Expect); err != nil {
		c.Error = "checking -expect: " + err.Error()
	}
	return res
}

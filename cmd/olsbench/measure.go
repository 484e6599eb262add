package main

import (
	"context"
	"math"
	"runtime"
	"sort"
	"time"

	"github.com/openlivesync/livesync/internal/cputime"
)

// What a run measures of the generator and the server: counters and CPU
// times read at the window's two ends, and the figures made of them.

// mark is a measurement instant: wall clock, own CPU time and the samples
// of the servers' and Redis's processes (nil when not asked for, or when
// one could not be read).
type mark struct {
	wall    time.Time
	cpu     float64
	servers []ProcSample
	redis   []ProcSample
}

func (g *gen) mark() mark {
	m := mark{wall: time.Now(), cpu: selfCPUSeconds()}
	read := func(s *procSet) []ProcSample {
		if s == nil {
			return nil
		}
		v, err := s.sample()
		if err != nil {
			g.warn("reading process: %v", err)
		}
		return v
	}
	m.servers, m.redis = read(g.procs), read(g.redis)
	return m
}

// clientSaturation is the share of its CPUs above which the generator
// reports itself as the likely bottleneck.
const clientSaturation = 0.9

// fillCommon sets the shared fields of a result measured over [a, b].
func (g *gen) fillCommon(c *Common, a, b mark) {
	window := b.wall.Sub(a.wall).Seconds()
	c.WindowS = round3(window)
	if a.servers != nil && b.servers != nil {
		per, cpu, rss := g.procs.procCosts(a.servers, b.servers)
		c.ServerCPUS, c.ServerRSSBytes = &cpu, &rss
		// One server's figures are the totals already.
		if len(per) > 1 {
			c.ServerProcs = per
		}
	}
	if a.redis != nil && b.redis != nil {
		per, cpu, _ := g.redis.procCosts(a.redis, b.redis)
		c.RedisCPUS, c.RedisProcs = &cpu, per
		if r, ok := maxMinRatio(per); ok {
			c.RedisCPUMaxMinRatio = &r
		} else if len(per) > 1 {
			g.warn("a Redis process used no measurable CPU: no max/min ratio")
		}
	}
	cpus := min(runtime.NumCPU(), runtime.GOMAXPROCS(0))
	c.ClientCPUs = cpus
	if window > 0 {
		c.ClientCPUFraction = round3((b.cpu - a.cpu) / window)
		if c.ClientCPUFraction > clientSaturation*float64(cpus) {
			g.warn("generator saturated its CPU (%.0f%% of %d core(s)): the figures may measure the client, not the server",
				100*c.ClientCPUFraction/float64(cpus), cpus)
		}
	}
}

// finish copies the counters every scenario shares into its result.
func (g *gen) finish(c *Common) {
	c.Disconnects = g.disconnects.Load()
	if c.Disconnects > 0 {
		g.warn("the server closed %d connection(s) during the run", c.Disconnects)
	}
	g.errMu.Lock()
	if len(g.errCodes) > 0 {
		c.Errors = make(map[string]int64, len(g.errCodes))
		for k, v := range g.errCodes {
			c.Errors[k] = v
		}
		codes := make([]string, 0, len(c.Errors))
		for k := range c.Errors {
			codes = append(codes, k)
		}
		sort.Strings(codes)
		g.errMu.Unlock()
		g.warn("the server answered with errors: %v", codes)
	} else {
		g.errMu.Unlock()
	}
	g.warnMu.Lock()
	c.Warnings = append([]string(nil), g.warnings...)
	g.warnMu.Unlock()
}

func round3(x float64) float64 {
	return math.Round(x*1000) / 1000
}

// selfCPUSeconds returns the CPU time this process has used, so the
// generator can tell when it, not the server, was the bottleneck. Where it
// cannot be read it is 0, and the warning never fires.
func selfCPUSeconds() float64 {
	used, _ := cputime.Process()
	return used.Seconds()
}

// measureWindow waits out the warm-up, marks the window's two ends and
// waits for the scheduler (schedDone gives its skipped sends, and its
// receipt orders the scheduler's counters before the caller reads them).
func (g *gen) measureWindow(ctx context.Context, name string, winStart, winEnd time.Time, schedDone <-chan int64) (a, b mark, skipped int64, err error) {
	g.log.Printf("%s: warm-up %v, window %v", name, g.cfg.Warmup, g.cfg.Duration)
	if err := sleepUntil(ctx, winStart); err != nil {
		<-schedDone
		return a, b, 0, errInterrupted
	}
	a = g.mark()
	if err := sleepUntil(ctx, winEnd); err != nil {
		<-schedDone
		return a, b, 0, errInterrupted
	}
	b = g.mark()
	return a, b, <-schedDone, nil
}

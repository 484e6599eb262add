package main

import (
	"fmt"
	"math"
)

// procSet samples a group of processes measured together: the nodes of a
// cluster (-server-pid), or Redis and its shards (-redis-pid).
type procSet struct {
	flag  string // the flag that named them, for messages
	procs []*procReader
}

// newProcSet returns a set of pids, or nil for none.
func newProcSet(flag string, pids []int) *procSet {
	if len(pids) == 0 {
		return nil
	}
	s := &procSet{flag: flag}
	for _, pid := range pids {
		s.procs = append(s.procs, newProcReader(pid))
	}
	return s
}

// sample reads every process, in the order given. One failure fails the
// whole sample: a sum with a process missing would look like a saving.
func (s *procSet) sample() ([]ProcSample, error) {
	out := make([]ProcSample, len(s.procs))
	for i, p := range s.procs {
		v, err := p.sample()
		if err != nil {
			return nil, fmt.Errorf("-%s %d: %w", s.flag, p.pid, err)
		}
		out[i] = v
	}
	return out, nil
}

// rss returns the processes' resident memory together.
func (s *procSet) rss() (int64, error) {
	var sum int64
	for _, p := range s.procs {
		v, err := p.rss()
		if err != nil {
			return 0, fmt.Errorf("-%s %d: %w", s.flag, p.pid, err)
		}
		sum += v
	}
	return sum, nil
}

// ProcCost is what one process of a set used over the measurement window.
type ProcCost struct {
	PID  int     `json:"pid"`
	CPUS float64 `json:"cpu_s"`
	// RSSBytes is its resident memory at the window's end.
	RSSBytes int64 `json:"rss_bytes"`
}

// procCosts pairs the samples at the window's ends, a and b, process by
// process, and returns each one's cost and the CPU seconds and RSS of all.
func (s *procSet) procCosts(a, b []ProcSample) (per []ProcCost, cpu float64, rss int64) {
	per = make([]ProcCost, len(s.procs))
	for i, p := range s.procs {
		c := round3(b[i].CPUSeconds - a[i].CPUSeconds)
		per[i] = ProcCost{PID: p.pid, CPUS: c, RSSBytes: b[i].RSSBytes}
		cpu += c
		rss += b[i].RSSBytes
	}
	return per, round3(cpu), rss
}

// maxMinRatio is the busiest process's CPU over the idlest's, how evenly a
// Redis Cluster's shards shared the work; ok is false with fewer than two
// processes or an idle one (the ratio would be infinite).
func maxMinRatio(per []ProcCost) (ratio float64, ok bool) {
	if len(per) < 2 {
		return 0, false
	}
	lo, hi := math.Inf(1), 0.0
	for _, p := range per {
		lo, hi = min(lo, p.CPUS), max(hi, p.CPUS)
	}
	if lo <= 0 {
		return 0, false
	}
	return math.Round(hi/lo*100) / 100, true
}

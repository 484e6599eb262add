package main

import (
	"os"
	"strings"
	"testing"
)

func TestProcCosts(t *testing.T) {
	s := newProcSet("redis-pid", []int{10, 11, 12})
	a := []ProcSample{{CPUSeconds: 1, RSSBytes: 5}, {CPUSeconds: 2, RSSBytes: 5}, {CPUSeconds: 3, RSSBytes: 5}}
	b := []ProcSample{{CPUSeconds: 1.5, RSSBytes: 7}, {CPUSeconds: 3, RSSBytes: 8}, {CPUSeconds: 3.25, RSSBytes: 9}}
	per, cpu, rss := s.procCosts(a, b)
	if cpu != 1.75 || rss != 24 {
		t.Fatalf("cpu %v rss %d, want 1.75 and 24", cpu, rss)
	}
	want := []ProcCost{{10, 0.5, 7}, {11, 1, 8}, {12, 0.25, 9}}
	for i := range want {
		if per[i] != want[i] {
			t.Errorf("per[%d] = %+v, want %+v", i, per[i], want[i])
		}
	}
	if r, ok := maxMinRatio(per); !ok || r != 4 {
		t.Errorf("max/min = %v, %v; want 4", r, ok)
	}
	if _, ok := maxMinRatio(per[:1]); ok {
		t.Error("a ratio of one process")
	}
	if _, ok := maxMinRatio([]ProcCost{{CPUS: 1}, {CPUS: 0}}); ok {
		t.Error("a ratio over an idle process")
	}
	if newProcSet("server-pid", nil) != nil {
		t.Error("a set of no pids")
	}
}

func TestProcSetSamples(t *testing.T) {
	s := newProcSet("server-pid", []int{os.Getpid(), os.Getppid()})
	v, err := s.sample()
	if err != nil || len(v) != 2 || v[0].RSSBytes <= 0 {
		t.Fatalf("sample = %+v, %v", v, err)
	}
	if rss, err := s.rss(); err != nil || rss <= v[0].RSSBytes/2 {
		t.Fatalf("rss = %d, %v", rss, err)
	}
	// One process gone fails the whole sample, naming it.
	s = newProcSet("redis-pid", []int{os.Getpid(), 999999999})
	if _, err := s.sample(); err == nil || !strings.HasPrefix(err.Error(), "-redis-pid 999999999: ") {
		t.Fatalf("err = %v", err)
	}
}

package cputime

import (
	"runtime"
	"testing"
	"time"
)

func TestProcessCountsWork(t *testing.T) {
	before, ok := Process()
	if !ok {
		if runtime.GOOS == "linux" || runtime.GOOS == "darwin" {
			t.Fatalf("Process() not available on %s", runtime.GOOS)
		}
		t.Skipf("no process CPU time on %s", runtime.GOOS)
	}
	// Spin until the clock moves: CPU time advances in ticks, so wait for a
	// change rather than for a set amount of work.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
		if after, _ := Process(); after > before {
			return
		}
	}
	t.Fatalf("CPU time stayed at %v after 10 s of work (%d)", before, x)
}

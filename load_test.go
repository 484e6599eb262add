package livesync

import (
	"math"
	"runtime"
	"testing"
	"time"
)

// fakeLoad is a cpuLoad whose CPU clock the test drives: each tick
// advances the wall clock by one period and the CPU time by use of every
// CPU the process may use.
type fakeLoad struct {
	cpuLoad
	now time.Time
	cpu time.Duration
	ok  bool
}

func newFakeLoad() *fakeLoad {
	f := &fakeLoad{now: time.Unix(1_000_000, 0), cpu: time.Hour, ok: true}
	f.read = func() (time.Duration, bool) { return f.cpu, f.ok }
	return f
}

func (f *fakeLoad) tick(use float64, wall time.Duration) time.Duration {
	f.now = f.now.Add(wall)
	f.cpu += time.Duration(use * float64(wall) * float64(runtime.GOMAXPROCS(0)))
	return f.factor(f.now)
}

func TestCPULoadStretch(t *testing.T) {
	f := newFakeLoad()
	if got := f.tick(0.95, loadPeriod); got != 64 {
		t.Fatalf("first sample: factor %d, want 64 (nothing to compare with yet)", got)
	}
	want := []time.Duration{80, 100, 125, 156, 195, 244, 244, 244}
	for i, w := range want {
		if got := f.tick(0.95, loadPeriod); got != w {
			t.Fatalf("busy period %d: factor %d, want %d", i+1, got, w)
		}
	}
	// Between the thresholds the level holds, in either direction.
	for i := 0; i < 5; i++ {
		if got := f.tick(0.70, loadPeriod); got != 244 {
			t.Fatalf("steady period %d: factor %d, want 244", i+1, got)
		}
	}
	if got := f.tick(0.30, loadPeriod); got != 195 {
		t.Fatalf("a quiet period: factor %d, want 195", got)
	}
	// Asked again within the period: no new sample.
	if got := f.tick(0.30, loadPeriod/4); got != 195 {
		t.Fatalf("within the period: factor %d, want 195", got)
	}
	for range 10 {
		f.tick(0.30, loadPeriod)
	}
	if got := f.tick(0.30, loadPeriod); got != 64 {
		t.Fatalf("after quiet periods: factor %d, want 64", got)
	}
	// A sample after a long silence starts again from no stretch.
	for range 3 {
		f.tick(0.95, loadPeriod)
	}
	if got := f.tick(0.95, loadStale); got != 64 {
		t.Fatalf("stale sample: factor %d, want 64", got)
	}
	// Where CPU time cannot be read, nothing stretches.
	f.ok = false
	for range 5 {
		if got := f.tick(1, loadPeriod); got != 64 {
			t.Fatalf("without a CPU clock: factor %d, want 64", got)
		}
	}
}

func TestCoalesceWait(t *testing.T) {
	atLevel := func(level int32) *cpuLoad {
		l := &cpuLoad{read: func() (time.Duration, bool) { return 0, false }}
		l.level.Store(level)
		return l
	}
	now := time.Now()
	top := int32(len(stretchSteps) - 1)
	ms := time.Millisecond
	for _, tc := range []struct {
		name          string
		since         time.Duration // since the last write
		frames, bytes int           // written now
		level         int32
		want          time.Duration
	}{
		{"first write", time.Duration(math.MaxInt64), 1, 100, 0, 0},
		{"first write, loaded", time.Duration(math.MaxInt64), 1, 100, top, 0},
		{"quiet", busyGap, 1, 100, 0, 0},
		{"busy", 10 * ms, 10, 1000, 0, coalesceFrames * ms},
		{"very busy: capped", 30 * ms, 10, 1000, 0, maxCoalesce},
		{"busy, loaded", 10 * ms, 10, 1000, 3, coalesceFrames * ms * 125 / 64},
		{"capped, loaded", 30 * ms, 10, 1000, top, maxCoalesce * 244 / 64},
		{"quiet unloaded, busy loaded", 8 * ms, 1, 100, 0, 0},
		{"busy once loaded", 8 * ms, 1, 100, 3, maxCoalesce * 125 / 64},
		{"quiet at any load", 20 * ms, 1, 100, top, 0},
		// 64 KiB came in 10 ms: the next 64 KiB is due in 10 ms.
		{"large frames: capped by bytes", 10 * ms, 10, 64 << 10, 0, 10 * ms},
		{"large frames, loaded", 10 * ms, 10, 64 << 10, top, 10 * ms},
		{"no frames", 10 * ms, 0, 0, 0, 0},
	} {
		if got := coalesceWait(tc.since, maxCoalesce, tc.frames, tc.bytes, coalesceBytes, atLevel(tc.level), now); got != tc.want {
			t.Errorf("%s: coalesceWait(%v, %d frames, %d bytes, level %d) = %v, want %v",
				tc.name, tc.since, tc.frames, tc.bytes, tc.level, got, tc.want)
		}
	}
}

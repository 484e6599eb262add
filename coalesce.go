package livesync

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/internal/cputime"
)

// Writers to busy connections wait before writing so that each write
// carries several frames (see coalesceWait): on a loaded server the system
// call per write costs more than everything else. When the process keeps
// its CPUs busy, those waits stretch, so that the server spends less on
// writes and stays ahead of its work: a bounded rise in latency instead of
// queues that grow until clients are dropped.
//
// cpuLoad measures the process's CPU use over the last sample period and
// keeps a stretch level: one step up after a period above loadHigh, one
// down after a period below loadLow, unchanged in between, so that the
// level settles instead of swinging between two extremes. It samples only
// when a writer asks, so an idle server does no work for it.
type cpuLoad struct {
	mu      sync.Mutex // held while sampling; writers only try it
	sampled time.Time  // mu
	cpu     time.Duration
	level   atomic.Int32 // 0 .. len(stretchSteps)-1
	// read returns the process's CPU time; cputime.Process unless a test
	// sets it.
	read func() (time.Duration, bool)
}

const (
	loadPeriod = 100 * time.Millisecond
	// A sample taken after this long without one says nothing about the
	// present: the level starts again from zero.
	loadStale = time.Second
	loadHigh  = 0.80
	loadLow   = 0.60
)

// stretchSteps are the factors, in 64ths, of each stretch level: 1.25
// apart, up to about 3.8.
var stretchSteps = [...]time.Duration{64, 80, 100, 125, 156, 195, 244}

// factor returns the current stretch in 64ths, sampling the CPU use first
// when the last sample is a period old.
func (l *cpuLoad) factor(now time.Time) time.Duration {
	if l.mu.TryLock() {
		if since := now.Sub(l.sampled); since >= loadPeriod {
			l.sample(now, since)
		}
		l.mu.Unlock()
	}
	return stretchSteps[l.level.Load()]
}

// stretch is the current stretch as a factor, without sampling.
func (l *cpuLoad) stretch() float64 {
	return float64(stretchSteps[l.level.Load()]) / 64
}

// sample moves the level by the CPU use since the last sample. l.mu held.
func (l *cpuLoad) sample(now time.Time, since time.Duration) {
	read := l.read
	if read == nil {
		read = cputime.Process
	}
	cpu, ok := read()
	if !ok {
		return
	}
	used := cpu - l.cpu
	l.sampled, l.cpu = now, cpu
	level := l.level.Load()
	switch use := float64(used) / float64(since) / float64(runtime.GOMAXPROCS(0)); {
	case since >= loadStale:
		level = 0
	case use > loadHigh:
		level = min(level+1, int32(len(stretchSteps)-1))
	case use < loadLow:
		level = max(level-1, 0)
	}
	l.level.Store(level)
}

// coalesceWait is how long a writer waits before its next write, given
// what its last write carried: frames and bytes that came over since. A
// quiet connection, whose frames come busyGap apart or more, does not
// wait; a busy one waits for about coalesceFrames more frames, at most
// maxWait (maxCoalesce, or less for a connection whose peers need
// quicker delivery), both stretched by load, and never for more than maxBytes
// at the rate they came, so that a fast stream of large frames neither
// fills its send queue nor makes one huge write.
func coalesceWait(since, maxWait time.Duration, frames, bytes, maxBytes int, load *cpuLoad, now time.Time) time.Duration {
	gap := since / time.Duration(max(frames, 1))
	if gap >= busyGap*stretchSteps[len(stretchSteps)-1]/64 {
		return 0 // quiet at any load: no need to sample it
	}
	f := load.factor(now)
	if gap >= busyGap*f/64 {
		return 0
	}
	wait := min(coalesceFrames*gap, maxWait) * f / 64
	if bytes > 0 {
		// No overflow: since is one interval between writes (seconds at
		// most) and maxBytes at most coalesceBytes.
		wait = min(wait, since*time.Duration(maxBytes)/time.Duration(bytes))
	}
	return wait
}

// A connection whose frames arrive less than busyGap apart on average is
// busy: its writer waits for about coalesceFrames frames, at most
// maxCoalesce, before writing again (each stretched under load), and for
// no more than coalesceBytes (or a quarter of the send queue's limit).
const (
	busyGap        = 5 * time.Millisecond
	coalesceFrames = 12
	maxCoalesce    = 25 * time.Millisecond
	coalesceBytes  = 64 << 10
	// docMaxCoalesce is maxCoalesce for document peers: a keystroke is
	// small, editors see each other's typing, and a document's updates
	// come one per keystroke of every editor, so its peers are busy at
	// rates where a room's are not; at most about 19 ms under load.
	docMaxCoalesce = 5 * time.Millisecond
)

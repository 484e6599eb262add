package main

import (
	"context"
	"sync/atomic"
	"time"
)

// A timed load, as the fanout and chat scenarios run it: every connected
// client sends stamped frames on one schedule through a warm-up and a
// measurement window, then the generator waits a grace period for the
// deliveries still in flight.

// startDelay separates the end of set-up from the first scheduled send, so
// the first slots are not already late.
const startDelay = 50 * time.Millisecond

// gracePoll is how often the grace period re-checks the delivery counters.
const gracePoll = 10 * time.Millisecond

// window holds the measurement window's bounds in Unix nanoseconds. Readers
// load them atomically: they learn about frames through the network, which
// gives the race detector (and the memory model) no ordering with the
// goroutine that set the bounds.
type window struct {
	start, end atomic.Int64
}

// newWindow returns a window that contains nothing until runLoad sets it.
func newWindow() *window {
	w := &window{}
	w.start.Store(1<<63 - 1)
	return w
}

func (w *window) contains(t int64) bool {
	return t >= w.start.Load() && t < w.end.Load()
}

// stampFrame appends a frame carrying a stamp: appendEventFrame or
// appendChatFrame.
type stampFrame func(b []byte, t int64, sender int, seq int64, size int) []byte

// loadRun is what driving a load counted.
type loadRun struct {
	a, b    mark    // the measurement window's ends
	nominal float64 // sends the window holds at the configured rate
	sent    int64   // sends accepted inside the window
	errs    int64   // sends that failed
	full    int64   // sends skipped because the socket buffer was full
	skipped int64   // sends the scheduler was more than an interval late for
}

// runLoad sets win and drives the load: every interval, each of the
// len(clients) slots sends one frame from client pick(k), from startDelay
// on, through -warmup and the -duration window.
func (g *gen) runLoad(ctx context.Context, win *window, clients []*client, interval time.Duration, pick func(k int) *client, frame stampFrame) (loadRun, error) {
	cfg := g.cfg
	start := time.Now().Add(startDelay)
	winStart := start.Add(cfg.Warmup)
	winEnd := winStart.Add(cfg.Duration)
	win.end.Store(winEnd.UnixNano())
	win.start.Store(winStart.UnixNano())

	run := loadRun{nominal: float64(len(clients)) * cfg.Duration.Seconds() / interval.Seconds()}
	// Written by the scheduler goroutine only; read once it is done.
	var sent, errs, full int64
	schedDone := make(chan int64, 1)
	go func() {
		ws, we := winStart.UnixNano(), winEnd.UnixNano()
		schedDone <- schedule(ctx, len(clients), interval, start, winEnd, func(k int, now time.Time) {
			c := pick(k)
			c.seq++
			t := now.UnixNano()
			c.sbuf = frame(c.sbuf[:0], t, c.idx, c.seq, cfg.PayloadBytes)
			switch ok, err := c.send(c.sbuf, now); {
			case err != nil:
				errs++
			case !ok:
				full++
			case t >= ws && t < we:
				sent++
				c.inWin++
			}
		})
	}()

	var err error
	if run.a, run.b, run.skipped, err = g.measureWindow(ctx, cfg.Scenario, winStart, winEnd, schedDone); err != nil {
		return run, err
	}
	run.sent, run.errs, run.full = sent, errs, full
	return run, nil
}

// awaitDelivered waits, at most -grace, until the clients' in-window
// deliveries reach want and done (when not nil) holds, and returns how
// many deliveries there were.
func (g *gen) awaitDelivered(ctx context.Context, clients []*client, want int64, done func() bool) int64 {
	total := func() int64 {
		var n int64
		for _, c := range clients {
			n += c.delivered.Load()
		}
		return n
	}
	waitFor(ctx, time.Now().Add(g.cfg.Grace), gracePoll, func() bool { return total() >= want && (done == nil || done()) })
	return total()
}

// sendStats reports the sending side of run, with a warning when the
// server let sockets fill up or the generator sent too little.
func (g *gen) sendStats(run loadRun) SendStats {
	s := SendStats{
		SentFractionOfNominal: round3(float64(run.sent) / run.nominal),
		SendErrors:            run.errs,
		SendBackpressure:      run.full,
	}
	if run.full > 0 {
		g.warn("%d sends skipped because the server was not reading (socket buffer full)", run.full)
	}
	if s.SentFractionOfNominal < 0.99 {
		g.warn("sent only %.1f%% of the nominal rate (%d sends late, %d refused by a full socket, %d failed)",
			100*s.SentFractionOfNominal, run.skipped, run.full, run.errs)
	}
	return s
}

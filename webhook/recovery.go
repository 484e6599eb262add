package webhook

import (
	"context"
	"time"
)

// How a receiver that comes back gets its backlog.
//
// A failed delivery waits out its retry's time (Config.Retries, up to an
// hour), and its key's later events wait behind it. Left at that, a
// receiver back after a minute's outage would wait minutes more for
// events it could take now. So while the sender is failing (a delivery
// attempt failed in a way that is retried: no answer, a 5xx or a 429),
// it probes the receiver every ProbeInterval with the event waiting
// for a retry that is due first, claimed early; and as soon as a
// delivery succeeds, whether a probe, a retry or a new event, every
// event waiting for a retry is due at once (with a StoreOutbox, every
// node's). Each key's order holds: a probe takes a key's head, not
// claimed by anyone, and a key's later events still wait for it.
//
// A probe that fails is not an attempt: the event keeps its attempt
// count and its due time, so a long outage spends no retry and gives
// nothing up early, and a dead receiver gets one probe per interval per
// process on top of its retries. Likewise a retry brought forward that
// fails (an outbox's hurried event keeps its Due, so the sender can tell
// it is early): it waits for its time as it was, and does not make the
// sender failing, so that a receiver refusing one event with a 5xx or a
// 429 while it takes the others does not see that event again at each
// success, nor has it given up within a second. A refusal (a 4xx but
// 429) is an answer about one event, not about the receiver: it neither
// starts nor ends the failing state.

// ProbeInterval is how often a process probes a failing receiver, one
// probe in flight at a time.
const ProbeInterval = 5 * time.Second

// probeEvery is ProbeInterval, which New copies: tests shorten it
// (export_test.go).
var probeEvery = ProbeInterval

// recoverer is an Outbox whose retries the sender can bring forward:
// MemoryOutbox and StoreOutbox.
type recoverer interface {
	ClaimEarly(ctx context.Context) (Event, bool)
	Hurry() (int, error)
}

// The outcomes of a probe, as metric labels.
const (
	probeDelivered = "delivered" // the receiver is back: the retries are due now
	probeDown      = "down"      // it still fails: the event is back as it was
	probeRefused   = "refused"   // it refused the event (4xx but 429): an attempt like any
)

// probeOutcomes lists the probes' outcomes, exported at 0 from the start.
var probeOutcomes = []string{probeDelivered, probeDown, probeRefused}

// probe runs until Close, probing the receiver every probeEvery while
// the sender is failing. It attempts the probe itself, so only one is
// in flight.
func (w *Webhooks) probe(r recoverer) {
	t := time.NewTimer(w.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		if w.failing.Load() {
			if e, ok := r.ClaimEarly(w.ctx); ok {
				w.attempt(e, true)
			}
		}
		t.Reset(w.probeEvery) // measured from the probe's end: they never pile up
	}
}

// recovered is told of each successful delivery: when the sender was
// failing, every event waiting for a retry is due now. A Hurry that
// fails leaves the sender failing, so that the next success (a probe's)
// tries again.
func (w *Webhooks) recovered() {
	if !w.failing.CompareAndSwap(true, false) {
		return
	}
	r, ok := w.cfg.Outbox.(recoverer)
	if !ok {
		return
	}
	n, err := r.Hurry()
	if err != nil {
		w.failing.Store(true)
		return
	}
	if n > 0 {
		w.cfg.Logger.Info("webhook receiver answers again: the events waiting for a retry are sent now", "retries", n)
	}
}

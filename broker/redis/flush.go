package redis

import "time"

// When the sender sends. Each pipeline costs a write to Redis, a message
// from Redis to every node subscribed to each room in it, and on each of
// those nodes a wake-up to read it: where events arrive a few hundred
// microseconds apart, sending each at once costs all of that per event.
// So when the idle sender is woken sooner than FlushDelay after its
// previous pipeline, it waits for the rest of that delay and sends what
// gathered meanwhile, as Nagle's algorithm does for TCP; a lone event,
// after a pause, goes at once.

// flusher is the sender's memory of its last pipeline.
type flusher struct {
	sent  time.Time   // when the last pipeline was sent
	timer *time.Timer // the hold's, reused
}

// holdable reports whether an operation of kind k may wait for others to
// share its pipeline: those nobody waits for (presence, events). Chat,
// scripts, barriers and the rest end a hold, since their callers wait
// (and a room's chat lock is held) until they are sent.
func (k opKind) holdable() bool {
	return k == opSet || k == opRemove || k == opEvent
}

// hold waits, before the sender takes its next batch, until FlushDelay
// has passed since the previous pipeline; it ends early when an operation
// that is not holdable is queued, or the broker closes.
func (b *Broker) hold(f *flusher) {
	wait := b.opts.FlushDelay - time.Since(f.sent)
	if b.opts.FlushDelay <= 0 || wait <= 0 {
		return
	}
	if f.timer == nil {
		f.timer = time.NewTimer(wait)
	} else {
		f.timer.Reset(wait)
	}
	select {
	case <-f.timer.C:
	case <-b.qurgent:
	case <-b.ctx.Done():
	}
	f.timer.Stop()
}

// drain takes back a pending signal from ch (see signal).
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

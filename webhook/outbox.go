package webhook

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Outbox holds the events waiting for delivery. The sender adds events
// and its workers claim them, one key at a time: while an event is
// claimed or waiting to be retried, later events with its key are not
// handed out, which is what keeps a room's webhooks in order.
//
// MemoryOutbox is the implementation here. A durable one (a table in the
// chat database, written in the chat message's transaction) implements
// the same methods, so that the sender does not change.
//
// An Outbox that also has the methods ClaimEarly and Hurry of
// MemoryOutbox and StoreOutbox lets the sender get a failing receiver's
// backlog to it as soon as it is back (see ProbeInterval); with another,
// each event waits out its retry's time.
type Outbox interface {
	// Add queues e behind the events with its key. It returns ErrFull
	// when the outbox is bounded and full.
	Add(e Event) error
	// Claim waits for the next event that may be delivered (the oldest of
	// a key with nothing in flight, and due) and returns it, or ctx's
	// error once ctx ends.
	Claim(ctx context.Context) (Event, error)
	// Done removes a claimed event: delivered, refused or given up.
	Done(e Event)
	// Retry keeps a claimed event at the head of its key, to be claimed
	// again from e.Due, with e.Attempts recorded.
	Retry(e Event)
	// Stats reports the events held and when the oldest was created
	// (zero when none).
	Stats() (depth int, oldest time.Time)
}

// ErrFull is Outbox.Add's error when there is no room for the event.
var ErrFull = errors.New("webhook: outbox full")

// MemoryOutbox is a bounded Outbox in memory. Its events do not survive
// the process.
type MemoryOutbox struct {
	max int

	mu     sync.Mutex
	lanes  map[string]*lane // by key; a key with no event has none
	ready  []string         // keys whose head may be claimed, oldest first
	depth  int
	wake   chan struct{} // signalled when ready grows
	timers map[*time.Timer]struct{}
}

// lane is one key's events, oldest first.
type lane struct {
	events []Event
	busy   bool // its head is claimed, or waiting for a retry
	// waiting, while the head waits for its retry, is the timer that
	// makes it claimable at its Due: ClaimEarly and Hurry stop it.
	waiting *time.Timer
}

// NewMemoryOutbox returns an outbox holding at most size events (at least 1).
func NewMemoryOutbox(size int) *MemoryOutbox {
	return &MemoryOutbox{max: max(size, 1), lanes: map[string]*lane{}, wake: make(chan struct{}, 1), timers: map[*time.Timer]struct{}{}}
}

// Add implements Outbox.
func (o *MemoryOutbox) Add(e Event) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.depth >= o.max {
		return ErrFull
	}
	o.depth++
	l := o.lanes[e.Key]
	if l == nil {
		l = &lane{}
		o.lanes[e.Key] = l
	}
	l.events = append(l.events, e)
	if len(l.events) == 1 && !l.busy {
		o.readyLocked(e.Key)
	}
	return nil
}

// readyLocked makes key's head claimable. o.mu held.
func (o *MemoryOutbox) readyLocked(key string) {
	o.ready = append(o.ready, key)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Claim implements Outbox.
func (o *MemoryOutbox) Claim(ctx context.Context) (Event, error) {
	for {
		o.mu.Lock()
		if len(o.ready) > 0 {
			key := o.ready[0]
			o.ready = o.ready[1:]
			l := o.lanes[key]
			if l == nil { // abandoned
				o.mu.Unlock()
				continue
			}
			l.busy = true
			if len(o.ready) > 0 {
				// One signal wakes one waiter: pass it on for the rest.
				select {
				case o.wake <- struct{}{}:
				default:
				}
			}
			e := l.events[0]
			o.mu.Unlock()
			return e, nil
		}
		o.mu.Unlock()
		select {
		case <-o.wake:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Done implements Outbox.
func (o *MemoryOutbox) Done(e Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.lanes[e.Key]
	if l == nil || len(l.events) == 0 || l.events[0].ID != e.ID {
		return
	}
	l.events[0] = Event{}
	l.events = l.events[1:]
	l.busy = false
	o.depth--
	if len(l.events) == 0 {
		delete(o.lanes, e.Key)
		return
	}
	o.readyLocked(e.Key)
}

// Retry implements Outbox.
func (o *MemoryOutbox) Retry(e Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.lanes[e.Key]
	if l == nil || len(l.events) == 0 || l.events[0].ID != e.ID {
		return
	}
	l.events[0] = e
	var t *time.Timer
	t = time.AfterFunc(time.Until(e.Due), func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		delete(o.timers, t)
		// Abandoned, or claimed early or hurried since.
		if o.lanes[e.Key] != l || l.waiting != t {
			return
		}
		l.waiting = nil
		l.busy = false
		o.readyLocked(e.Key)
	})
	l.waiting = t
	o.timers[t] = struct{}{}
}

// ClaimEarly claims, ahead of its time, the event waiting for a retry
// that is due first, and reports false when none waits. The sender
// probes a failing receiver with it (see ProbeInterval); a probe that
// fails puts it back with Retry as it was. It costs one step per key
// with events.
func (o *MemoryOutbox) ClaimEarly(context.Context) (Event, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var first *lane
	for _, l := range o.lanes {
		if l.waiting != nil && (first == nil || l.events[0].Due.Before(first.events[0].Due)) {
			first = l
		}
	}
	if first == nil {
		return Event{}, false
	}
	o.stopWaitingLocked(first) // claimed now: the lane stays busy
	return first.events[0], true
}

// Hurry makes every event waiting for a retry claimable now, the oldest
// first, and returns how many: the receiver is back. Each keeps its Due,
// so that a failed try puts it back to wait for it (see attempt). Each
// key's later events still wait for its head. It never fails.
func (o *MemoryOutbox) Hurry() (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var keys []string
	for key, l := range o.lanes {
		if l.waiting != nil {
			o.stopWaitingLocked(l)
			l.busy = false
			keys = append(keys, key)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		return o.lanes[a].events[0].Created.Compare(o.lanes[b].events[0].Created)
	})
	for _, key := range keys {
		o.readyLocked(key)
	}
	return len(keys), nil
}

// stopWaitingLocked ends l's wait for its retry: its timer, should it
// fire anyway, finds itself no longer l's and does nothing. o.mu held.
func (o *MemoryOutbox) stopWaitingLocked(l *lane) {
	l.waiting.Stop()
	delete(o.timers, l.waiting)
	l.waiting = nil
}

// Stats implements Outbox. It looks at each key's head, the oldest of
// its key, so it costs one step per key with events.
func (o *MemoryOutbox) Stats() (int, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var oldest time.Time
	for _, l := range o.lanes {
		if c := l.events[0].Created; oldest.IsZero() || c.Before(oldest) {
			oldest = c
		}
	}
	return o.depth, oldest
}

// abandon empties the outbox, returning how many events of each type it
// held. Only Close calls it, once the workers no longer matter.
func (o *MemoryOutbox) abandon() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := map[string]int{}
	for _, l := range o.lanes {
		for _, e := range l.events {
			n[e.Type]++
		}
	}
	clear(o.lanes)
	o.ready, o.depth = nil, 0
	return n
}

// Close stops the retry timers; the outbox is not used afterwards.
func (o *MemoryOutbox) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for t := range o.timers {
		t.Stop()
	}
	clear(o.timers)
}

package livesync

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/openlivesync/livesync/protocol"
)

// observation is one call to an observer of Hooks, waiting in the queue.
type observation struct {
	kind   observationKind
	member MemberEvent
	conn   ConnectionEvent
	chat   protocol.StoredChatMessage
	user   UserEvent
	doc    DocEvent
	// tally, when set, is the cluster's count that decides member.First
	// or Last (obsJoin, obsLeave) or whether user is observed at all
	// (obsUser online): the observer waits for it (see tally).
	tally *tally
}

type observationKind uint8

const (
	obsConnect observationKind = iota
	obsDisconnect
	obsJoin
	obsLeave
	obsChat
	obsUser
	obsDoc
	obsFlush // not an observation: Hooks.Flush, after a run of them
	numObservationKinds
)

// hookNames name each kind's hook in logs and metrics.
var hookNames = [numObservationKinds]string{"OnConnect", "OnDisconnect", "OnJoin", "OnLeave", "OnChatStored", "OnUser", "OnDocUpdated", "Flush"}

// wants reports whether h has an observer for kind.
func (h *Hooks) wants(kind observationKind) bool {
	switch kind {
	case obsConnect:
		return h.OnConnect != nil
	case obsDisconnect:
		return h.OnDisconnect != nil
	case obsJoin:
		return h.OnJoin != nil
	case obsLeave:
		return h.OnLeave != nil
	case obsChat:
		return h.OnChatStored != nil
	case obsUser:
		return h.OnUser != nil
	case obsDoc:
		return h.OnDocUpdated != nil
	}
	return false
}

// observers hands observations to the feeds that want them: the
// application's Hooks and the webhooks (Options.Webhooks), each with a
// queue and goroutine of its own. Callers queue observations under the
// lock that orders what they observe (a room's mu), so each room's
// observations keep the room's order in every feed. Queuing never
// blocks: a full queue drops and counts, since a room must never wait for
// an observer.
type observers struct {
	feeds []*feed
	stats *hookStats
}

// newObservers starts a feed for each of hooks that observes anything,
// named by names ("hooks", "webhooks"). The feed named ordered, if any,
// counts each room's joins and leaves for chat commits to wait on (see
// roomOrder). The observers' contexts derive from base.
func newObservers(base context.Context, stats *hookStats, log *slog.Logger, names []string, hooks []Hooks, ordered string) *observers {
	o := &observers{stats: stats}
	for i, h := range hooks {
		if h.observing() {
			var order *roomOrder
			if names[i] == ordered && (h.wants(obsJoin) || h.wants(obsLeave)) {
				order = newRoomOrder()
			}
			o.feeds = append(o.feeds, newFeed(base, names[i], h, stats, log, order))
		}
	}
	return o
}

// feed returns the feed named name, nil when there is none.
func (o *observers) feed(name string) *feed {
	for _, f := range o.feeds {
		if f.name == name {
			return f
		}
	}
	return nil
}

// wants reports whether any feed observes kind.
func (o *observers) wants(kind observationKind) bool {
	for _, f := range o.feeds {
		if f.hooks.wants(kind) {
			return true
		}
	}
	return false
}

// add queues ob in every feed that observes its kind. Callers test that
// the server has observers at all (Server.observers is nil without).
func (o *observers) add(ob observation) {
	for _, f := range o.feeds {
		if f.hooks.wants(ob.kind) {
			f.add(ob)
		}
	}
}

// close delivers what is queued and stops every feed, or gives up when
// ctx ends first. Shutdown calls it once no connection or chat worker is
// left to queue more.
func (o *observers) close(ctx context.Context) error {
	for _, f := range o.feeds {
		close(f.stop)
	}
	finished := make(chan struct{})
	go func() {
		for _, f := range o.feeds {
			f.done.Wait()
		}
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	// Out of time: the call in flight is cancelled and what is still
	// queued is dropped (counted), so that no hook is called once
	// Shutdown has returned. A call that ignores its cancelled context is
	// abandoned (see call), so the feeds end promptly.
	for _, f := range o.feeds {
		f.abort()
	}
	<-finished
	return context.Cause(ctx) // a deadline's, not the cancellation that told of it
}

// feed delivers observations to one set of observers from one goroutine,
// in the order they were queued, each call bounded by the hooks'
// ObserverTimeout.
type feed struct {
	name    string
	hooks   Hooks
	stats   *hookStats
	log     *slog.Logger
	ch      chan observation
	dropped atomic.Int64
	stop    chan struct{} // closed by close: drain what is queued, then end
	done    sync.WaitGroup
	// aborted, cancelled by abort when Shutdown runs out of time, is the
	// parent of every call's context: the call in flight ends, and what
	// is queued is dropped instead of called.
	aborted context.Context
	abort   context.CancelFunc
	// caller runs the observers; replaced when one overruns (see call).
	caller *hookCaller
	// overrunning is set while a hook's calls run out their time, so that
	// a hook that hangs is logged once, not once per observation.
	overrunning [numObservationKinds]atomic.Bool
	// order, when set, counts each room's joins and leaves until they
	// have been through the observers, for chat commits to wait on (see
	// roomOrder).
	order *roomOrder
}

func newFeed(base context.Context, name string, h Hooks, stats *hookStats, log *slog.Logger, order *roomOrder) *feed {
	n := h.QueueSize
	if n <= 0 {
		n = defaultHookQueue
	}
	if h.ObserverTimeout <= 0 {
		h.ObserverTimeout = defaultObserverTimeout
	}
	f := &feed{name: name, hooks: h, stats: stats, log: log, ch: make(chan observation, n), stop: make(chan struct{}),
		caller: newHookCaller(), order: order}
	f.aborted, f.abort = context.WithCancel(base)
	stats.feeds = append(stats.feeds, f)
	f.done.Add(1)
	go f.run()
	return f
}

// add queues ob, or drops it when the queue is full.
func (f *feed) add(ob observation) {
	ordered := f.order != nil && (ob.kind == obsJoin || ob.kind == obsLeave)
	if ordered {
		f.order.queued(ob.member.RoomID)
	}
	select {
	case f.ch <- ob:
	default:
		f.dropped.Add(1)
		if ordered {
			f.order.settled(ob.member.RoomID)
		}
	}
}

func (f *feed) run() {
	defer f.done.Done()
	defer func() { close(f.caller.jobs) }() // the caller ends once its call does
	for {
		select {
		case ob := <-f.ch:
			f.deliverRun(ob)
		case <-f.stop:
			for {
				select {
				case ob := <-f.ch:
					f.deliverRun(ob)
				default:
					return
				}
			}
		}
	}
}

// maxFlushRun bounds the observations delivered before each Flush.
const maxFlushRun = 256

// deliverRun delivers ob and, when the hooks have a Flush, what else is
// queued (up to maxFlushRun) before calling it once for them all: a
// durable outbox then commits a run of events at once. The room order's
// joins and leaves are settled only once flushed.
func (f *feed) deliverRun(ob observation) {
	if f.hooks.Flush == nil {
		f.deliver(&ob)
		f.settle(&ob)
		return
	}
	run := []observation{ob}
	for len(run) < maxFlushRun {
		select {
		case next := <-f.ch:
			run = append(run, next)
			continue
		default:
		}
		break
	}
	for i := range run {
		f.deliver(&run[i])
	}
	f.call(obsFlush, f.hooks.Flush)
	for i := range run {
		f.settle(&run[i])
	}
}

// settle tells the room order that ob, a join or a leave, is through.
func (f *feed) settle(ob *observation) {
	if f.order != nil && (ob.kind == obsJoin || ob.kind == obsLeave) {
		f.order.settled(ob.member.RoomID)
	}
}

func (f *feed) deliver(ob *observation) {
	if f.aborted.Err() != nil { // Shutdown ran out of time: drop, do not wait on tallies
		f.dropped.Add(1)
		return
	}
	if t := ob.tally; t != nil {
		edge, known := t.wait()
		switch {
		case ob.kind == obsUser && known && !edge:
			// Another connection of the user counts already, somewhere
			// in the cluster. (Unknown, during an outage: observed, as a
			// repeat is better than a loss.)
			return
		case !known:
			// Keep this node's view, computed when queued.
		case ob.kind == obsJoin:
			ob.member.First = edge
		case ob.kind == obsLeave:
			ob.member.Last = edge
		}
	}
	h := &f.hooks
	var call func(context.Context)
	switch ob.kind {
	case obsConnect:
		call = func(ctx context.Context) { h.OnConnect(ctx, ob.conn) }
	case obsDisconnect:
		call = func(ctx context.Context) { h.OnDisconnect(ctx, ob.conn) }
	case obsJoin:
		call = func(ctx context.Context) { h.OnJoin(ctx, ob.member) }
	case obsLeave:
		call = func(ctx context.Context) { h.OnLeave(ctx, ob.member) }
	case obsChat:
		call = func(ctx context.Context) { h.OnChatStored(ctx, ob.chat) }
	case obsUser:
		call = func(ctx context.Context) { h.OnUser(ctx, ob.user) }
	case obsDoc:
		call = func(ctx context.Context) { h.OnDocUpdated(ctx, ob.doc) }
	default:
		return
	}
	f.call(ob.kind, call)
}

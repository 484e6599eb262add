package livesync

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

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
)

// observers delivers observations to the Hooks' observers from one
// goroutine, in the order they were queued. Callers queue them under the
// lock that orders what they observe (a room's mu), so each room's
// observations keep the room's order. Queuing never blocks: a full queue
// drops and counts, since a room must never wait for an observer.
type observers struct {
	hooks   Hooks
	ch      chan observation
	dropped atomic.Int64
	stop    chan struct{} // closed by close: drain what is queued, then end
	done    sync.WaitGroup

	droppedDesc, depthDesc *prometheus.Desc
}

func newObservers(h Hooks) *observers {
	n := h.QueueSize
	if n <= 0 {
		n = defaultHookQueue
	}
	o := &observers{
		hooks: h,
		ch:    make(chan observation, n),
		stop:  make(chan struct{}),
		droppedDesc: prometheus.NewDesc("livesync_hook_events_dropped_total",
			"Observations (joins, leaves, connections, stored chat) dropped because the hook queue was full.", nil, nil),
		depthDesc: prometheus.NewDesc("livesync_hook_queue_depth",
			"Observations waiting for the hooks' observers.", nil, nil),
	}
	o.done.Add(1)
	go o.run()
	return o
}

// add queues ob, or drops it when the queue is full. Callers test that
// the server has observers at all (Server.observers is nil without).
func (o *observers) add(ob observation) {
	select {
	case o.ch <- ob:
	default:
		o.dropped.Add(1)
	}
}

func (o *observers) run() {
	defer o.done.Done()
	for {
		select {
		case ob := <-o.ch:
			o.deliver(&ob)
		case <-o.stop:
			for {
				select {
				case ob := <-o.ch:
					o.deliver(&ob)
				default:
					return
				}
			}
		}
	}
}

func (o *observers) deliver(ob *observation) {
	h := &o.hooks
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
	switch ob.kind {
	case obsConnect:
		if h.OnConnect != nil {
			h.OnConnect(ob.conn)
		}
	case obsDisconnect:
		if h.OnDisconnect != nil {
			h.OnDisconnect(ob.conn)
		}
	case obsJoin:
		if h.OnJoin != nil {
			h.OnJoin(ob.member)
		}
	case obsLeave:
		if h.OnLeave != nil {
			h.OnLeave(ob.member)
		}
	case obsChat:
		if h.OnChatStored != nil {
			h.OnChatStored(ob.chat)
		}
	case obsUser:
		if h.OnUser != nil {
			h.OnUser(ob.user)
		}
	case obsDoc:
		if h.OnDocUpdated != nil {
			h.OnDocUpdated(ob.doc)
		}
	}
}

// close delivers what is queued and stops, or gives up when ctx ends
// first. Shutdown calls it once no connection or chat worker is left to
// queue more.
func (o *observers) close(ctx context.Context) error {
	close(o.stop)
	finished := make(chan struct{})
	go func() { o.done.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Describe implements prometheus.Collector.
func (o *observers) Describe(ch chan<- *prometheus.Desc) {
	ch <- o.droppedDesc
	ch <- o.depthDesc
}

// Collect implements prometheus.Collector.
func (o *observers) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(o.droppedDesc, prometheus.CounterValue, float64(o.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(o.depthDesc, prometheus.GaugeValue, float64(len(o.ch)))
}

package livesync

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// call runs one observer on f's caller, bounded by ObserverTimeout. An
// observer that overruns is abandoned to finish on its own, with a fresh
// caller taking the next observations: the feed's order holds for every
// observer that keeps to its time.
func (f *feed) call(kind observationKind, fn func(context.Context)) {
	if f.aborted.Err() != nil {
		if kind != obsFlush {
			f.dropped.Add(1)
		}
		return
	}
	ctx, cancel := context.WithTimeout(f.aborted, f.hooks.ObserverTimeout)
	defer cancel()
	name := hookNames[kind]
	f.caller.jobs <- func() {
		defer f.stats.recoverHook(f.log, f.name, name)
		fn(ctx)
	}
	select {
	case <-f.caller.res:
	case <-ctx.Done():
		if !f.returnedAfterCancel() {
			close(f.caller.jobs)
			f.caller = newHookCaller()
		}
	}
	if ctx.Err() == nil || f.aborted.Err() != nil {
		f.overrunning[kind].Store(false)
		return
	}
	f.stats.overruns.WithLabelValues(f.name, name).Inc()
	if f.overrunning[kind].CompareAndSwap(false, true) {
		f.log.Warn("hook overran its timeout: its context is cancelled and the next observations go on without it (logged once until it keeps to its time again)",
			"hook", name, "feed", f.name, "timeout", f.hooks.ObserverTimeout)
	}
}

// returnedAfterCancel reports whether the call in flight, whose context
// has ended, has returned. Cut short by Shutdown (see observers.close),
// a call that keeps to its context is given abortGrace to return, so
// that none is still running when Shutdown returns.
func (f *feed) returnedAfterCancel() bool {
	if f.aborted.Err() == nil {
		select {
		case <-f.caller.res:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(abortGrace)
	defer t.Stop()
	select {
	case <-f.caller.res:
		return true
	case <-t.C:
		return false
	}
}

// abortGrace bounds how long Shutdown, out of time, waits for an observer
// call to return once its context is cancelled.
const abortGrace = time.Second

// hookCaller is a goroutine calling observers one at a time: one per
// feed rather than one per call, since observations come as fast as
// members join and chat.
type hookCaller struct {
	jobs chan func()
	res  chan struct{} // one per job done
}

func newHookCaller() *hookCaller {
	c := &hookCaller{jobs: make(chan func()), res: make(chan struct{}, 1)}
	go func() {
		for job := range c.jobs {
			job()
			c.res <- struct{}{}
		}
	}()
	return c
}

// hookStats counts the hooks' overruns, panics and OnChat's failures,
// and exports the feeds' queues, for Prometheus.
type hookStats struct {
	feeds                  []*feed
	overruns, panics       *prometheus.CounterVec
	chatFailures           *prometheus.CounterVec
	chatFailuresBy         map[string]prometheus.Counter // by reason, every one of chatHookFailureReasons
	orderExpired           prometheus.Counter
	droppedDesc, depthDesc *prometheus.Desc
}

func newHookStats() *hookStats {
	s := &hookStats{
		overruns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livesync_hook_overruns_total",
			Help: "Hook calls that ran out their time (Hooks.ChatTimeout for OnChat, ObserverTimeout for the observers), by feed (hooks, webhooks) and hook.",
		}, []string{"feed", "hook"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livesync_hook_panics_total",
			Help: "Hook calls that panicked (recovered), by feed (hooks, webhooks) and hook.",
		}, []string{"feed", "hook"}),
		chatFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livesync_chat_hook_failures_total",
			Help: "Chat messages OnChat failed to decide (accepted with Hooks.ChatFailOpen, refused with CHAT_UNAVAILABLE without), by reason: timeout, unreachable, status (a non-2xx answer), invalid (an unusable answer or rewrite), failed (any other error, a panic). A call cut short by its sender leaving is not counted.",
		}, []string{"reason"}),
		orderExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livesync_webhook_order_waits_expired_total",
			Help: "Chat commits that waited StoreTimeout for the room's earlier joins and leaves to reach the durable webhook outbox, and went ahead without.",
		}),
		droppedDesc: prometheus.NewDesc("livesync_hook_events_dropped_total",
			"Observations (joins, leaves, connections, stored chat) dropped because a feed's queue was full, or left undelivered when Shutdown's context ended, by feed (hooks, webhooks).", []string{"feed"}, nil),
		depthDesc: prometheus.NewDesc("livesync_hook_queue_depth",
			"Observations waiting in a feed's queue, by feed (hooks, webhooks).", []string{"feed"}, nil),
	}
	// Every reason is exported from the start, at 0, so that a rate is
	// defined before the first failure; and no failure looks a label up.
	s.chatFailuresBy = make(map[string]prometheus.Counter, len(chatHookFailureReasons))
	for _, reason := range chatHookFailureReasons {
		s.chatFailuresBy[reason] = s.chatFailures.WithLabelValues(reason)
	}
	return s
}

// recoverHook, deferred around a hook's call, turns its panic into a log
// line and a count: the server outlives a broken hook.
func (s *hookStats) recoverHook(log *slog.Logger, feed, hook string) {
	if p := recover(); p != nil {
		s.panics.WithLabelValues(feed, hook).Inc()
		log.Error("hook panicked (recovered)", "hook", hook, "feed", feed, "panic", p)
	}
}

// Describe implements prometheus.Collector.
func (s *hookStats) Describe(ch chan<- *prometheus.Desc) {
	s.overruns.Describe(ch)
	s.panics.Describe(ch)
	s.chatFailures.Describe(ch)
	s.orderExpired.Describe(ch)
	ch <- s.droppedDesc
	ch <- s.depthDesc
}

// Collect implements prometheus.Collector.
func (s *hookStats) Collect(ch chan<- prometheus.Metric) {
	s.overruns.Collect(ch)
	s.panics.Collect(ch)
	s.chatFailures.Collect(ch)
	s.orderExpired.Collect(ch)
	for _, f := range s.feeds {
		ch <- prometheus.MustNewConstMetric(s.droppedDesc, prometheus.CounterValue, float64(f.dropped.Load()), f.name)
		ch <- prometheus.MustNewConstMetric(s.depthDesc, prometheus.GaugeValue, float64(len(f.ch)), f.name)
	}
}

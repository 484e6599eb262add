package webhook

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metrics counts deliveries for Prometheus and Stats. Delivery is off the
// server's hot paths, so plain client_golang vectors do.
type metrics struct {
	deliveries *prometheus.CounterVec
	retries    *prometheus.CounterVec
	latency    prometheus.Histogram
	depth      *prometheus.Desc
	oldest     *prometheus.Desc
	stale      *prometheus.Desc
	outboxErrs *prometheus.CounterVec // a StoreOutbox's failed calls (none for an outbox in memory)
	deadNodes  prometheus.Counter     // nodes this process spoke for (see ledger.go)
	probes     *prometheus.CounterVec // probes of a failing receiver, by outcome (see recovery.go)
	dropLogged atomic.Bool            // the outbox-full warning is logged once per overflow
}

func newMetrics() *metrics {
	m := &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livesync_webhook_probes_total",
			Help: "Early attempts of an event waiting for a retry, made every 5 s while the receiver fails, by outcome: delivered (the receiver is back, and every retry is sent now), down (it still fails; not counted as an attempt), refused (4xx but 429, counted as the event's failure).",
		}, []string{"outcome"}),
		outboxErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livesync_webhook_outbox_errors_total",
			Help: "Failed calls on the webhook outbox's database tables, by operation: add, claim, done, retry, stats, hurry; and the ledger's mark, beat, sweep, retire.",
		}, []string{"op"}),
		deadNodes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "livesync_webhook_dead_nodes_total",
			Help: "Nodes without a cluster broker found dead (no beat in the outbox's database for NodeTimeout) whose members' departures this process sent.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livesync_webhook_deliveries_total",
			Help: "Webhook events by type and outcome: delivered, failed (refused, not retried), gave_up (retries exhausted), dropped (outbox full).",
		}, []string{"event", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "livesync_webhook_retries_total",
			Help: "Webhook delivery attempts that failed and were scheduled again, by event type.",
		}, []string{"event"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "livesync_webhook_delivery_latency_seconds",
			Help:    "Time from an event to its successful delivery, retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 120, 600, 3600},
		}),
		depth:  prometheus.NewDesc("livesync_webhook_outbox_depth", "Webhook events waiting for delivery.", nil, nil),
		oldest: prometheus.NewDesc("livesync_webhook_outbox_oldest_age_seconds", "Age of the oldest webhook event waiting for delivery (0 when none).", nil, nil),
		stale: prometheus.NewDesc("livesync_webhook_outbox_stale",
			"1 when livesync_webhook_outbox_depth and _oldest_age_seconds are the last figures read, not current ones: the outbox's database failed or did not answer within half a second (the age still grows from the last oldest event known); 0 otherwise.", nil, nil),
	}
	for _, o := range probeOutcomes {
		m.probes.WithLabelValues(o) // exported at 0 from the start
	}
	return m
}

func (m *metrics) outcome(event, outcome string) { m.deliveries.WithLabelValues(event, outcome).Inc() }

// Describe implements prometheus.Collector: register a Webhooks in the
// server's registry with livesync.Server.RegisterMetrics.
func (w *Webhooks) Describe(ch chan<- *prometheus.Desc) {
	m := w.m
	m.deliveries.Describe(ch)
	m.retries.Describe(ch)
	m.latency.Describe(ch)
	ch <- m.depth
	ch <- m.oldest
	ch <- m.stale
	m.outboxErrs.Describe(ch)
	m.deadNodes.Describe(ch)
	m.probes.Describe(ch)
}

// Collect implements prometheus.Collector.
func (w *Webhooks) Collect(ch chan<- prometheus.Metric) {
	m := w.m
	m.deliveries.Collect(ch)
	m.retries.Collect(ch)
	m.latency.Collect(ch)
	m.outboxErrs.Collect(ch)
	m.deadNodes.Collect(ch)
	m.probes.Collect(ch)
	n, oldest, stale := w.BacklogStatus()
	age, isStale := 0.0, 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	if stale != nil {
		isStale = 1
	}
	ch <- prometheus.MustNewConstMetric(m.depth, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(m.stale, prometheus.GaugeValue, isStale)
}

// Stats is a snapshot of a Webhooks' counters, summed over event types.
type Stats struct {
	Delivered, Failed, GaveUp, Dropped, Retries int64
	Depth                                       int // events in the outbox
	Oldest                                      time.Time
	// Stale says why Depth and Oldest are the last figures read rather
	// than current ones (see Webhooks.BacklogStatus); nil when current.
	Stale error
	// OutboxErrors counts a StoreOutbox's failed calls on its table,
	// summed over operations (0 for an outbox in memory).
	OutboxErrors int64
}

// Stats reads the counters.
func (w *Webhooks) Stats() Stats {
	var s Stats
	for _, e := range AllEvents {
		s.Delivered += count(w.m.deliveries.WithLabelValues(e, outcomeDelivered))
		s.Failed += count(w.m.deliveries.WithLabelValues(e, outcomeFailed))
		s.GaveUp += count(w.m.deliveries.WithLabelValues(e, outcomeGaveUp))
		s.Dropped += count(w.m.deliveries.WithLabelValues(e, outcomeDropped))
		s.Retries += count(w.m.retries.WithLabelValues(e))
	}
	s.Depth, s.Oldest, s.Stale = w.BacklogStatus()
	if _, durable := w.outbox().(*StoreOutbox); durable {
		for _, op := range outboxOps {
			s.OutboxErrors += count(w.m.outboxErrs.WithLabelValues(op))
		}
	}
	return s
}

// count reads a counter's value.
func count(c prometheus.Counter) int64 {
	var m dto.Metric
	c.Write(&m)
	return int64(m.GetCounter().GetValue())
}

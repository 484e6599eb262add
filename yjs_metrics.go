package livesync

import "github.com/prometheus/client_golang/prometheus"

// docMetrics are the shared documents' Prometheus metrics, registered in
// the server's own registry.
type docMetrics struct {
	open         prometheus.Gauge
	updatesIn    prometheus.Counter
	updatesOut   prometheus.Counter
	bytesStored  prometheus.Counter
	compactions  prometheus.Counter
	fallbacks    prometheus.Counter
	storeErrors  prometheus.Counter
	storeLatency prometheus.Histogram
}

func newDocMetrics() *docMetrics {
	buckets := make([]float64, len(latencyBuckets))
	for i, b := range latencyBuckets {
		buckets[i] = b.Seconds()
	}
	return &docMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "livesync_documents_open",
			Help: "Shared documents open on this node (with peers, or being stored)."}),
		updatesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "livesync_document_updates_in_total",
			Help: "Document updates accepted from this node's peers and the HTTP API."}),
		updatesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "livesync_document_updates_out_total",
			Help: "Document updates sent to this node's peers, one per peer."}),
		bytesStored: prometheus.NewCounter(prometheus.CounterOpts{Name: "livesync_document_bytes_stored_total",
			Help: "Bytes of document updates appended to the store."}),
		compactions: prometheus.NewCounter(prometheus.CounterOpts{Name: "livesync_document_compactions_total",
			Help: "Compactions of a document's stored updates into one."}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "livesync_document_compaction_fallbacks_total",
			Help: "Compactions that kept deleted content because collecting it failed, and stored updates left out of a document because they would not merge."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "livesync_document_store_errors_total",
			Help: "Failed document appends (retried) and compactions."}),
		storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "livesync_document_store_latency_seconds",
			Help: "Time to append one batch of document updates to the store.", Buckets: buckets}),
	}
}

// Describe implements prometheus.Collector.
func (m *docMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *docMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *docMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.open, m.updatesIn, m.updatesOut, m.bytesStored, m.compactions, m.fallbacks, m.storeErrors, m.storeLatency}
}

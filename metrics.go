package livesync

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Stats is a snapshot of a server's counters, for monitoring without
// Prometheus (tests, an admin page, a log line).
type Stats struct {
	Connections             int64 // open now (livesync_connections)
	Rooms                   int64 // with at least one local member now (livesync_rooms)
	RoomMembers             int64 // local room members now (livesync_room_members)
	FramesIn                int64 // data messages received, a fragmented one once (livesync_frames_in_total)
	BytesIn                 int64 // their payload bytes (livesync_bytes_in_total)
	MessagesOut             int64 // data and close frames the send queue wrote (livesync_messages_out_total)
	BytesOut                int64 // their bytes (livesync_bytes_out_total)
	EventsRelayed           int64 // broadcast_event messages accepted (livesync_events_relayed_total)
	SlowConsumerDisconnects int64 // connections closed for a full send queue (livesync_slow_consumer_disconnects_total)
	RateLimited             int64 // messages refused for their rate (livesync_rate_limited_total)
	RateLimitDisconnects    int64 // connections closed for their message rate (livesync_rate_limit_disconnects_total)
	ErrorsSent              int64 // error messages sent to clients, summed over codes (livesync_errors_sent_total)
	AuthFailures            int64 // upgrades or tokens refused (livesync_auth_failures_total)
	StoreCalls              int64 // chat store calls, one per stored batch (livesync_store_latency_seconds_count)
	StoreLatencyMicros      int64 // summed over StoreCalls (livesync_store_latency_seconds_sum, in µs)
	StoreErrors             int64 // chat store calls that failed, summed over operations (livesync_store_errors_total)
	Kicks                   int64 // connections this node removed by moderation (livesync_kicks_total)
	ChatDeletions           int64 // chat messages deleted through this node's API (livesync_chat_deletions_total)
	Bans                    int64 // bans (a user from a room) made through this node's API (livesync_bans_total)
}

// metrics counts what Stats and /metrics report. Counters are atomic: they
// are bumped on hot paths without a lock, and a Prometheus scrape reads
// them (see collector) instead of the hot path calling into Prometheus.
type metrics struct {
	connections, rooms, members      atomic.Int64
	framesIn, bytesIn                atomic.Int64
	framesOut, bytesOut              atomic.Int64
	events, slow, limited, authFails atomic.Int64
	storeCalls, storeMicros          atomic.Int64
	kicks, chatDeletes, bans         atomic.Int64 // moderation (moderation.go, api_moderation.go)
	inByType                         [otherMessage + 1]atomic.Int64
	errorsSent                       [len(errorCodes)]atomic.Int64 // by code (metrics_errors.go)
	storeErrs                        [numStoreOps]atomic.Int64     // by operation
	rateCloses                       atomic.Int64
	storeHist, brokerHist            histogram
	brokerOn                         atomic.Bool
	load                             cpuLoad // stretches write coalescing; exported as a gauge

	// The server's own Prometheus registry (see registry): two servers
	// in one process share nothing.
	regOnce sync.Once
	reg     *prometheus.Registry
	// extra holds the collectors registered besides the core one
	// (documents, hooks, webhooks, RegisterMetrics'), for Collector.
	extraMu sync.Mutex
	extra   []prometheus.Collector
}

// The hooks below are called from the core's hot paths; each is one or
// two atomic adds.

func (m *metrics) messageIn(n int)      { m.framesIn.Add(1); m.bytesIn.Add(int64(n)) }
func (m *metrics) eventRelayed()        { m.events.Add(1) }
func (m *metrics) slowConsumer()        { m.slow.Add(1) }
func (m *metrics) rateLimited()         { m.limited.Add(1) }
func (m *metrics) authFailed()          { m.authFails.Add(1) }
func (m *metrics) membersChanged(d int) { m.members.Add(int64(d)) }

// Moderation is rare; it is counted like the rest so that a scrape
// shows how much of it a node does.

func (m *metrics) kicked(n int) { m.kicks.Add(int64(n)) }
func (m *metrics) chatDeleted() { m.chatDeletes.Add(1) }
func (m *metrics) banned(n int) { m.bans.Add(int64(n)) }
func (m *metrics) storeLatency(d time.Duration) {
	m.storeCalls.Add(1)
	m.storeMicros.Add(d.Microseconds())
	m.storeHist.observe(d)
}

// framesWritten counts a batch of frames written to one socket, and their
// bytes. The writer calls it with each batch.
func (m *metrics) framesWritten(parts [][]byte, frames int) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	m.framesOut.Add(int64(frames))
	m.bytesOut.Add(int64(n))
}

// messageType counts one text message received by its envelope type; ""
// (a frame that did not decode) and unknown types count as "other". The
// connection's dispatcher calls it once per message.
func (m *metrics) messageType(kind int) { m.inByType[kind].Add(1) }

// enableBroker makes /metrics export the broker latency histogram. The
// cluster code calls it once when a broker is configured, so a server
// without one does not export an always-empty histogram.
func (m *metrics) enableBroker() { m.brokerOn.Store(true) }

// brokerLatency records one round trip to the cluster broker (a publish,
// or whatever the cluster code times).
func (m *metrics) brokerLatency(d time.Duration) { m.brokerHist.observe(d) }

// messageTypeLabel is the metric label of a message kind (messageKind).
func messageTypeLabel(kind int) string {
	if kind == otherMessage {
		return "other"
	}
	return clientMessages[kind].typ
}

// snapshot reads every counter, each atomically: a snapshot taken under
// load may mix counts from either side of a message.
func (m *metrics) snapshot() Stats {
	var errorsSent, storeErrs int64
	for i := range m.errorsSent {
		errorsSent += m.errorsSent[i].Load()
	}
	for i := range m.storeErrs {
		storeErrs += m.storeErrs[i].Load()
	}
	return Stats{
		RateLimitDisconnects: m.rateCloses.Load(), ErrorsSent: errorsSent, StoreErrors: storeErrs,
		Connections: m.connections.Load(), Rooms: m.rooms.Load(), RoomMembers: m.members.Load(),
		FramesIn: m.framesIn.Load(), BytesIn: m.bytesIn.Load(), MessagesOut: m.framesOut.Load(),
		BytesOut: m.bytesOut.Load(), EventsRelayed: m.events.Load(), SlowConsumerDisconnects: m.slow.Load(),
		RateLimited: m.limited.Load(), AuthFailures: m.authFails.Load(), StoreCalls: m.storeCalls.Load(),
		StoreLatencyMicros: m.storeMicros.Load(), Kicks: m.kicks.Load(), ChatDeletions: m.chatDeletes.Load(),
		Bans: m.bans.Load(),
	}
}

// latencyBuckets are the upper bounds of the latency histograms: from
// half a millisecond (an in-memory store) to the 5 s default store timeout
// and beyond.
var latencyBuckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// histogram is a lock-free latency histogram: observe is an atomic add per
// call, and a scrape turns the counts into a Prometheus histogram.
type histogram struct {
	counts   [len(latencyBuckets) + 1]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumNanos atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBuckets) && d > latencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNanos.Add(int64(d))
}

// metric returns the histogram as a Prometheus metric. The count is the
// sum of the buckets read, so the two always agree even while observations
// land during a scrape.
func (h *histogram) metric(desc *prometheus.Desc) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBuckets))
	var cum uint64
	for i, b := range latencyBuckets {
		cum += h.counts[i].Load()
		buckets[b.Seconds()] = cum
	}
	cum += h.counts[len(latencyBuckets)].Load()
	sum := time.Duration(h.sumNanos.Load()).Seconds()
	return prometheus.MustNewConstHistogram(desc, cum, sum, buckets)
}

// collector exports a server's counters to Prometheus. It reads the
// atomics at scrape time, so the hot paths never touch Prometheus.
type collector struct {
	m *metrics

	connections, rooms, members   *prometheus.Desc
	messagesIn, framesIn, bytesIn *prometheus.Desc
	framesOut, bytesOut, events   *prometheus.Desc
	slow, limited, authFails      *prometheus.Desc
	rateCloses, errorsSent        *prometheus.Desc
	storeErrs                     *prometheus.Desc
	kicks, chatDeletes, bans      *prometheus.Desc
	storeLatency, brokerLatency   *prometheus.Desc
	stretch                       *prometheus.Desc
}

func newCollector(m *metrics) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("livesync_"+name, help, labels, nil)
	}
	return &collector{
		m:             m,
		connections:   d("connections", "WebSocket connections open now."),
		rooms:         d("rooms", "Rooms with at least one member on this node now."),
		members:       d("room_members", "Room members on this node now, summed over rooms."),
		messagesIn:    d("messages_in_total", "Client text messages received, by message type (\"other\": unknown type or not a JSON envelope).", "type"),
		framesIn:      d("frames_in_total", "WebSocket data messages received, text and binary, on both endpoints; a fragmented message counts once, control frames not at all."),
		bytesIn:       d("bytes_in_total", "Payload bytes of the data messages received."),
		framesOut:     d("messages_out_total", "Frames the connections' send queues wrote to clients: data frames, the server's pings and its close frames; not the pongs and close echoes answering the client."),
		bytesOut:      d("bytes_out_total", "Bytes of the frames counted by livesync_messages_out_total, WebSocket headers included."),
		events:        d("events_relayed_total", "broadcast_event messages accepted and relayed to a room."),
		slow:          d("slow_consumer_disconnects_total", "Connections closed because their send queue overflowed."),
		limited:       d("rate_limited_total", "Messages refused for their rate: answered RATE_LIMITED on the rooms' endpoint, dropped on /yjs (document awareness and sync messages over their budget)."),
		rateCloses:    d("rate_limit_disconnects_total", "Connections closed with 1008 for their message rate: MaxViolations refusals in a row, or a /yjs peer over its document budget."),
		errorsSent:    d("errors_sent_total", "Error messages sent to clients, by code (the protocol's fixed set, \"other\" for none of them).", "code"),
		storeErrs:     d("store_errors_total", "Chat store calls that failed, by operation: append (a batch of messages), history (a room's recent chat or a page of it), delete.", "op"),
		authFails:     d("auth_failures_total", "Upgrades refused by OnAuth and join_room tokens that did not verify."),
		kicks:         d("kicks_total", "Connections this node removed by moderation (a kick asked of this node's API or of another node), room members and document peers."),
		chatDeletes:   d("chat_deletions_total", "Chat messages deleted from the store through this node's API."),
		bans:          d("bans_total", "Bans (one user from one room) made through this node's API; each node holds every ban, only the node asked counts it."),
		storeLatency:  d("store_latency_seconds", "Time to store one batch of chat messages in the chat store, failed calls included (livesync_store_errors_total counts those)."),
		brokerLatency: d("broker_latency_seconds", "Time of one round trip to the cluster broker."),
		stretch:       d("write_coalesce_stretch", "How much busy connections' write coalescing is stretched because the CPUs are busy: 1 normally, up to about 3.8."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.connections, c.rooms, c.members, c.messagesIn, c.framesIn, c.bytesIn,
		c.framesOut, c.bytesOut, c.events, c.slow, c.limited, c.authFails,
		c.rateCloses, c.errorsSent, c.storeErrs,
		c.kicks, c.chatDeletes, c.bans, c.storeLatency, c.brokerLatency, c.stretch,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.connections, m.connections.Load())
	gauge(c.rooms, m.rooms.Load())
	gauge(c.members, m.members.Load())
	for i := range m.inByType {
		counter(c.messagesIn, m.inByType[i].Load(), messageTypeLabel(i))
	}
	counter(c.framesIn, m.framesIn.Load())
	counter(c.bytesIn, m.bytesIn.Load())
	counter(c.framesOut, m.framesOut.Load())
	counter(c.bytesOut, m.bytesOut.Load())
	counter(c.events, m.events.Load())
	counter(c.slow, m.slow.Load())
	counter(c.limited, m.limited.Load())
	counter(c.authFails, m.authFails.Load())
	counter(c.rateCloses, m.rateCloses.Load())
	for i := range m.errorsSent {
		counter(c.errorsSent, m.errorsSent[i].Load(), errorCodes[i])
	}
	for i := range m.storeErrs {
		counter(c.storeErrs, m.storeErrs[i].Load(), storeOps[i])
	}
	counter(c.kicks, m.kicks.Load())
	counter(c.chatDeletes, m.chatDeletes.Load())
	counter(c.bans, m.bans.Load())
	ch <- m.storeHist.metric(c.storeLatency)
	ch <- prometheus.MustNewConstMetric(c.stretch, prometheus.GaugeValue, m.load.stretch())
	if m.brokerOn.Load() {
		ch <- m.brokerHist.metric(c.brokerLatency)
	}
}

// registry returns the server's own Prometheus registry, created on first
// use with the server's collector and the Go runtime and process
// collectors. It is never the global default registry, so two servers in
// one process each export their own numbers.
func (m *metrics) registry() *prometheus.Registry {
	m.regOnce.Do(func() {
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			newCollector(m),
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
		m.reg = reg
	})
	return m.reg
}

// RegisterMetrics adds c to the server's own registry, so that /metrics
// (and MetricsHandler) export it with the server's numbers: the webhook
// package's delivery metrics, for one.
func (s *Server) RegisterMetrics(c prometheus.Collector) error {
	return s.metrics.register(c)
}

// register adds c to the server's registry and to what Collector
// returns.
func (m *metrics) register(c prometheus.Collector) error {
	if err := m.registry().Register(c); err != nil {
		return err
	}
	m.extraMu.Lock()
	m.extra = append(m.extra, c)
	m.extraMu.Unlock()
	return nil
}

// extras returns the collectors register added.
func (m *metrics) extras() []prometheus.Collector {
	m.extraMu.Lock()
	defer m.extraMu.Unlock()
	return append([]prometheus.Collector(nil), m.extra...)
}

// serverCollector is everything the server's registry holds but the Go
// runtime and process collectors: the core collector and the ones
// register added (see Server.Collector).
type serverCollector struct {
	core *collector
	m    *metrics
}

// Describe implements prometheus.Collector.
func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	c.core.Describe(ch)
	for _, x := range c.m.extras() {
		x.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	c.core.Collect(ch)
	for _, x := range c.m.extras() {
		x.Collect(ch)
	}
}

package livesync

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

func TestMetricsEndpointCountsTraffic(t *testing.T) {
	o := startOpsServer(t, &Options{Limits: Limits{EventRate: 0.001, EventBurst: 1}}, "")
	a, b := livesynctest.Dial(t, o.ws), livesynctest.Dial(t, o.ws)
	a.Join("m", nil)
	b.Join("m", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)

	b.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "e"})
	a.Expect(protocol.MsgBroadcastEventRelay, nil)
	b.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "over the limit"})
	b.ExpectError(protocol.CodeRateLimited)
	b.Send(protocol.MsgSendChat, map[string]any{"message": "hi"})
	a.Expect(protocol.MsgChatMessage, nil)
	b.Expect(protocol.MsgChatMessage, nil)

	s := o.s
	for name, want := range map[string]float64{
		"livesync_connections":            2,
		"livesync_rooms":                  1,
		"livesync_room_members":           2,
		"livesync_events_relayed_total":   1,
		"livesync_rate_limited_total":     1,
		"livesync_store_latency_seconds":  1, // sample count: one stored batch
		"livesync_write_coalesce_stretch": 1, // an idle server
	} {
		if got := mustMetric(t, s, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Frames received: 2 joins, 2 events, 1 chat, each counted before it
	// was handled, so before the answers the clients read.
	if got := mustMetric(t, s, "livesync_frames_in_total"); got != 5 {
		t.Errorf("frames in = %v, want 5", got)
	}
	if got := mustMetric(t, s, "livesync_bytes_in_total"); got < 5*20 {
		t.Errorf("bytes in = %v, want the bytes of 5 messages", got)
	}
	// room_joined ×2, presence_updated, relayed event, error, chat ×2: a
	// writer counts its frames before writing them.
	if got := mustMetric(t, s, "livesync_messages_out_total"); got != 7 {
		t.Errorf("frames out = %v, want 7", got)
	}
	if _, ok := metricValue(t, s, "livesync_broker_latency_seconds"); ok {
		t.Error("broker latency exported by a server without a broker")
	}

	// The scrape itself, over HTTP, in the text format.
	resp, err := http.Get(o.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, line := range []string{
		"livesync_connections 2",
		"livesync_events_relayed_total 1",
		"# TYPE livesync_store_latency_seconds histogram",
		`livesync_store_latency_seconds_bucket{le="+Inf"} 1`,
		`livesync_messages_in_total{type="send_chat"}`,
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(string(body), line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	// Leaving updates the gauges.
	a.WS.Close()
	b.WS.Close()
	waitMetric(t, s, 0, "livesync_connections")
	waitMetric(t, s, 0, "livesync_rooms")
	waitMetric(t, s, 0, "livesync_room_members")
}

func TestMetricsAuthFailures(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: func(*http.Request) (*UserInfo, error) { return nil, nil }}, "")
	c, err := livesynctest.TryDial(t, o.ws, nil)
	if err == nil {
		c.WaitClosed()
	}
	waitMetric(t, o.s, 1, "livesync_auth_failures_total")
}

// TestMetricsCollectorExportsEveryCounter drives every hook the core
// calls and checks each lands in its metric.
func TestMetricsCollectorExportsEveryCounter(t *testing.T) {
	s, err := New(&Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	m := &s.metrics
	m.messageIn(100)
	m.messageType(messageKind(protocol.MsgJoinRoom))
	m.messageType(messageKind(protocol.MsgSendChat))
	m.messageType(messageKind(protocol.MsgSendChat))
	m.messageType(messageKind("no_such_type"))
	m.messageType(messageKind(""))
	m.framesWritten([][]byte{make([]byte, 10), make([]byte, 5)}, 2)
	m.framesWritten([][]byte{make([]byte, 7)}, 1)
	m.eventRelayed()
	m.slowConsumer()
	m.rateLimited()
	m.rateLimited()
	m.authFailed()
	m.membersChanged(3)
	m.storeLatency(3 * time.Millisecond)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"livesync_frames_in_total", nil, 1},
		{"livesync_bytes_in_total", nil, 100},
		{"livesync_messages_in_total", []string{"type", "join_room"}, 1},
		{"livesync_messages_in_total", []string{"type", "send_chat"}, 2},
		{"livesync_messages_in_total", []string{"type", "update_presence"}, 0},
		{"livesync_messages_in_total", []string{"type", "other"}, 2},
		{"livesync_messages_out_total", nil, 3},
		{"livesync_bytes_out_total", nil, 22},
		{"livesync_events_relayed_total", nil, 1},
		{"livesync_slow_consumer_disconnects_total", nil, 1},
		{"livesync_rate_limited_total", nil, 2},
		{"livesync_auth_failures_total", nil, 1},
		{"livesync_room_members", nil, 3},
		{"livesync_store_latency_seconds", nil, 1},
	} {
		if got := mustMetric(t, s, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	st := s.Stats()
	if st.BytesOut != 22 || st.MessagesOut != 3 || st.StoreCalls != 1 || st.StoreLatencyMicros != 3000 {
		t.Errorf("Stats %+v", st)
	}

	// The broker histogram appears once a broker says it exists.
	if _, ok := metricValue(t, s, "livesync_broker_latency_seconds"); ok {
		t.Fatal("broker histogram before enableBroker")
	}
	m.enableBroker()
	m.brokerLatency(time.Millisecond)
	m.brokerLatency(time.Second)
	if got := mustMetric(t, s, "livesync_broker_latency_seconds"); got != 2 {
		t.Errorf("broker latency count %v, want 2", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	var h histogram
	for _, d := range []time.Duration{0, 500 * time.Microsecond, 600 * time.Microsecond, 30 * time.Millisecond, time.Minute} {
		h.observe(d)
	}
	desc := prometheus.NewDesc("x_seconds", "test", nil, nil)
	var out dto.Metric
	if err := h.metric(desc).Write(&out); err != nil {
		t.Fatal(err)
	}
	hist := out.GetHistogram()
	if hist.GetSampleCount() != 5 {
		t.Fatalf("count %d, want 5", hist.GetSampleCount())
	}
	want := map[float64]uint64{0.0005: 2, 0.001: 3, 0.025: 3, 0.05: 4, 10: 4}
	checked := 0
	for _, b := range hist.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok {
			checked++
			if b.GetCumulativeCount() != w {
				t.Errorf("bucket le=%v has %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
			}
		}
	}
	if checked != len(want) {
		t.Errorf("%d of the %d expected bucket bounds exported", checked, len(want))
	}
	if sum := hist.GetSampleSum(); sum < 60.03 || sum > 60.04 {
		t.Errorf("sum %v, want about 60.031", sum)
	}
}

// TestMetricsRegistriesArePerServer: two servers in one process export
// their own numbers, and neither touches the global registry.
func TestMetricsRegistriesArePerServer(t *testing.T) {
	one := startOpsServer(t, nil, "")
	two := startOpsServer(t, nil, "")
	livesynctest.Dial(t, one.ws).Join("r", nil)
	if got := mustMetric(t, one.s, "livesync_connections"); got != 1 {
		t.Errorf("server one: %v connections, want 1", got)
	}
	if got := mustMetric(t, two.s, "livesync_connections"); got != 0 {
		t.Errorf("server two: %v connections, want 0", got)
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "livesync_") {
			t.Fatalf("%s registered globally", mf.GetName())
		}
	}
	// An application registering the collector in its own registry.
	reg := prometheus.NewRegistry()
	reg.MustRegister(one.s.Collector())
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsCountMessagesByTypeAndBytesOut needs the two core hooks:
// conn.handle calls metrics.messageType(env.Type) after decoding the
// envelope, and conn.writeLoop calls metrics.framesWritten(frames) (in
// place of framesOut) after writing a batch.
func TestMetricsCountMessagesByTypeAndBytesOut(t *testing.T) {
	o := startOpsServer(t, nil, "")
	a := livesynctest.Dial(t, o.ws)
	a.Join("m", nil)
	a.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"x": 1}})
	a.Send(protocol.MsgSendChat, map[string]any{"message": "hi"})
	a.Expect(protocol.MsgChatMessage, nil)
	a.SendRaw(`{"type":"nonsense"}`)
	a.ExpectError(protocol.CodeInvalidMessage)
	a.SendRaw(`not json`)
	a.ExpectError(protocol.CodeInvalidJSON)
	s := o.s
	for typ, want := range map[string]float64{
		protocol.MsgJoinRoom: 1, protocol.MsgUpdatePresence: 1, protocol.MsgSendChat: 1,
		protocol.MsgBroadcastEvent: 0, "other": 2,
	} {
		if got := mustMetric(t, s, "livesync_messages_in_total", "type", typ); got != want {
			t.Errorf(`livesync_messages_in_total{type=%q} = %v, want %v (is conn.handle calling metrics.messageType?)`, typ, got, want)
		}
	}
	// room_joined, chat_message and two errors, counted before they were
	// written: at least 4 frames and their bytes.
	if got := mustMetric(t, s, "livesync_bytes_out_total"); got < 4*20 || s.Stats().BytesOut != int64(got) {
		t.Errorf("bytes out = %v (Stats %d), want those of 4 frames (is conn.writeLoop calling metrics.framesWritten?)", got, s.Stats().BytesOut)
	}
}

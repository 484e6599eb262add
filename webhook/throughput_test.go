package webhook

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/protocol"
)

// BenchmarkDelivery measures webhook throughput from one node to a local
// receiver: chat.message events over 64 rooms, as the server's observer
// would emit them, and the time from each event to its arrival. It
// reports events/s and the p99 of that latency: "burst" emits as fast as
// it can (the p99 is then the time to drain the backlog), "5000/s" paces
// the events below saturation (the p99 is then a delivery's own).
//
//	go test -run '^$' -bench Delivery -benchtime 20000x ./webhook
func BenchmarkDelivery(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchDelivery(b, 0) })
	b.Run("5000/s", func(b *testing.B) { benchDelivery(b, 5000) })
}

func benchDelivery(b *testing.B, rate int) {
	secret, _ := ParseSecret("whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 32)))
	var mu sync.Mutex
	var lat []time.Duration
	var got atomic.Int64
	sent := sync.Map{} // message id → time emitted
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if at, ok := sent.Load(r.Header.Get("webhook-id")); ok {
			mu.Lock()
			lat = append(lat, time.Since(at.(time.Time)))
			mu.Unlock()
		}
		got.Add(1)
	}))
	defer rcv.Close()
	w, err := New(Config{URL: rcv.URL, Secret: secret, OutboxSize: b.N + 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(b.Context())
	if _, err := w.Start(livesync.WebhookEnv{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		room := fmt.Sprint("room-", i%64)
		e := newEvent(ChatMessage, roomKey(room), time.Now(), protocol.StoredChatMessage{
			ID: fmt.Sprint(i), RoomID: room, ConnectionID: "n-1", UserID: "u", Message: "hello", CreatedAt: time.Now().UnixMilli()})
		sent.Store(e.ID, time.Now())
		w.emit(e)
	}
	for got.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	mu.Lock()
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	mu.Unlock()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

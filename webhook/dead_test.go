package webhook_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/webhook"
)

// A dead receiver slows nothing: chat keeps flowing while the outbox
// grows to its bound, and beyond it events are dropped and counted.
func TestDeadReceiverDoesNotSlowChat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		receive func(t *testing.T) string
	}{
		{"refused", func(t *testing.T) string { return "http://" + livesynctest.ClosedAddr(t) }},
		{"hanging", func(t *testing.T) string {
			hang := make(chan struct{})
			r := newReceiver(t, func(*delivery, int) int { <-hang; return http.StatusOK })
			t.Cleanup(func() { close(hang) })
			return r.srv.URL
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const outbox, messages = 100, 300
			n := startNode(t, nil, webhook.Config{URL: tc.receive(t), OutboxSize: outbox, Timeout: time.Hour,
				Retries: []time.Duration{time.Hour}},
				livesync.Options{Limits: livesync.Limits{ChatRate: 1e6, ChatBurst: 1e6}})
			a, b := n.dial(t, "ann"), n.dial(t, "bob")
			a.Join("r", nil)
			b.Join("r", nil)
			for i := range messages {
				a.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprint(i)})
			}
			for i := range messages {
				var m protocol.StoredChatMessage
				json.Unmarshal(b.NextOf(protocol.MsgChatMessage).Payload, &m)
				if m.Message != fmt.Sprint(i) {
					t.Fatalf("message %d: %q", i, m.Message)
				}
			}
			s := waitStat(t, n.wh, "a full outbox", func(s webhook.Stats) bool { return s.Depth == outbox && s.Dropped > 0 })
			if s.Oldest.IsZero() || s.Delivered != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

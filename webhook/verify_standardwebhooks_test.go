package webhook_test

import (
	"net/http"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/webhook"
)

// The webhooks verify with the maintained Standard Webhooks Go library,
// as the README's Go receiver does, not only with our own code; a
// tampered body or a wrong secret does not.
func TestStandardWebhooksGoLibraryVerifies(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := startNode(t, rcv, webhook.Config{}, livesync.Options{})
	c := n.dial(t, "ann")
	c.Join("r", nil)
	c.Send(protocol.MsgSendChat, map[string]any{"message": "hi"})
	got := rcv.wait("member.joined and chat.message", func(d []delivery) bool {
		return len(d) >= 4 // user.online, room.occupied, member.joined, chat.message
	})
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	other, err := standardwebhooks.NewWebhook("whsec_YW5vdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMuLi4uLi4=")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range got {
		h := http.Header{}
		h.Set("webhook-id", d.ID)
		h.Set("webhook-timestamp", d.Timestamp)
		h.Set("webhook-signature", d.Signature)
		if err := wh.Verify(d.Body, h); err != nil {
			t.Fatalf("%s does not verify: %v", d.Type, err)
		}
		forged := append([]byte(nil), d.Body...)
		forged[len(forged)-2] ^= 1
		if wh.Verify(forged, h) == nil {
			t.Fatalf("a tampered %s verifies", d.Type)
		}
		if other.Verify(d.Body, h) == nil {
			t.Fatalf("%s verifies under another secret", d.Type)
		}
	}
}

package webhook_test

import (
	"fmt"
	"testing"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/webhook"
)

// With the durable outbox, chat.message is written by the chat commit
// and member.joined through the observers: a member that joins and chats
// at once still has its member.joined delivered first, every time.
func TestJoinThenChatOrder(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		rcv := newReceiver(t, nil)
		store, _, _ := d.open(t)
		n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined, webhook.ChatMessage}},
			livesync.Options{Store: store.(chat.Store)})
		if n.wh.OutboxTable() == "" {
			t.Fatal("not the durable outbox")
		}
		const rounds = 50
		for i := range rounds {
			c := n.dial(t, "ann")
			room := fmt.Sprint("order-", i)
			// Both frames at once: the chat is committed while the join's
			// observation may still be on its way to the outbox.
			c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": room})
			c.Send(protocol.MsgSendChat, map[string]any{"message": "hi"})
			c.ExpectJoined()
			c.Expect(protocol.MsgChatMessage, nil)
			c.Close()
		}
		got := rcv.waitN(2 * rounds)
		first := map[string]string{}
		for _, dl := range got {
			room, _ := dl.Data["roomId"].(string)
			if _, seen := first[room]; !seen {
				first[room] = dl.Type
			}
		}
		for i := range rounds {
			if room := fmt.Sprint("order-", i); first[room] != webhook.MemberJoined {
				t.Fatalf("room %s: %s came first, want member.joined (all: %s)", room, first[room], types(got))
			}
		}
	})
}

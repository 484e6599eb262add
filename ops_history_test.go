package livesync

import (
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// TestGetChatHistoryPaging pages back through 250 stored messages over
// the WebSocket extension get_chat_history → chat_history, 100 at a time.
func TestGetChatHistoryPaging(t *testing.T) {
	store := chat.NewMemoryStore(nil)
	seedHistory(t, store, "h", 250)
	o := startOpsServer(t, &Options{Store: store}, "")
	c := livesynctest.Dial(t, o.ws)
	rj := c.Join("h", nil)
	if len(rj.ChatHistory) != 100 || rj.ChatHistory[0].Message != "m151" || rj.ChatHistory[99].Message != "m250" {
		t.Fatalf("room_joined history: %d messages", len(rj.ChatHistory))
	}

	pageBack(t, func(before string) (p protocol.ChatHistoryPayload) {
		c.Send(protocol.MsgGetChatHistory, protocol.GetChatHistoryPayload{Limit: 100, Before: before})
		c.Expect(protocol.MsgChatHistory, &p)
		return p
	})

	// Paging back from the oldest message of room_joined continues where
	// the join's history ends.
	c.Send(protocol.MsgGetChatHistory, protocol.GetChatHistoryPayload{Limit: 10, Before: rj.ChatHistory[0].ID})
	var p protocol.ChatHistoryPayload
	c.Expect(protocol.MsgChatHistory, &p)
	if len(p.Messages) != 10 || p.Messages[9].Message != "m150" || !p.HasMore {
		t.Fatalf("page before the join's history: %d messages, last %q", len(p.Messages), p.Messages[len(p.Messages)-1].Message)
	}
}

// TestGetChatHistoryBadCursor: a before that is not a message id is the
// client's mistake, INVALID_PAYLOAD, not a storage outage, and the
// connection stays usable.
func TestGetChatHistoryBadCursor(t *testing.T) {
	o := startOpsServer(t, nil, "")
	c := livesynctest.Dial(t, o.ws)
	c.Join("h", nil)
	c.Send(protocol.MsgGetChatHistory, protocol.GetChatHistoryPayload{Before: "not-an-id"})
	var e protocol.ErrorPayload
	c.Expect(protocol.MsgError, &e)
	if e.Code != protocol.CodeInvalidPayload {
		t.Fatalf("bad before answered %s (%s), want %s: handlers.go handleHistory must map chat.ErrBadCursor to INVALID_PAYLOAD",
			e.Code, e.Message, protocol.CodeInvalidPayload)
	}
	c.Send(protocol.MsgGetChatHistory, nil)
	c.Expect(protocol.MsgChatHistory, nil)
}

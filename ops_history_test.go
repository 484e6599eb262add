package livesync

import (
	"fmt"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// TestGetChatHistoryPaging pages back through 250 stored messages over
// the WebSocket extension get_chat_history → chat_history, 100 at a time.
func TestGetChatHistoryPaging(t *testing.T) {
	store := chat.NewMemoryStore(nil)
	seedHistory(t, store, "h", 250)
	o := startOpsServer(t, &Options{Store: store}, "")
	c := dial(t, o.ws)
	rj := c.join("h", nil)
	if len(rj.ChatHistory) != 100 || rj.ChatHistory[0].Message != "m151" || rj.ChatHistory[99].Message != "m250" {
		t.Fatalf("room_joined history: %d messages", len(rj.ChatHistory))
	}

	var pages [][]protocol.StoredChatMessage
	var more []bool
	before := ""
	for range 3 {
		c.send(protocol.MsgGetChatHistory, protocol.GetChatHistoryPayload{Limit: 100, Before: before})
		var p protocol.ChatHistoryPayload
		c.expect(protocol.MsgChatHistory, &p)
		if p.RoomID != "h" || p.Messages == nil {
			t.Fatalf("chat_history %+v", p)
		}
		pages = append(pages, p.Messages)
		more = append(more, p.HasMore)
		before = p.Messages[0].ID
	}
	if fmt.Sprint(more) != "[true true false]" {
		t.Fatalf("hasMore %v, want [true true false]", more)
	}
	if len(pages[0]) != 100 || len(pages[1]) != 100 || len(pages[2]) != 50 {
		t.Fatalf("page sizes %d %d %d", len(pages[0]), len(pages[1]), len(pages[2]))
	}
	checkPages(t, pages, 250)

	// Paging back from the oldest message of room_joined continues where
	// the join's history ends.
	c.send(protocol.MsgGetChatHistory, protocol.GetChatHistoryPayload{Limit: 10, Before: rj.ChatHistory[0].ID})
	var p protocol.ChatHistoryPayload
	c.expect(protocol.MsgChatHistory, &p)
	if len(p.Messages) != 10 || p.Messages[9].Message != "m150" || !p.HasMore {
		t.Fatalf("page before the join's history: %d messages, last %q", len(p.Messages), p.Messages[len(p.Messages)-1].Message)
	}
}

// TestGetChatHistoryBadCursor: a before that is not a message id is the
// client's mistake, INVALID_PAYLOAD, not a storage outage, and the
// connection stays usable.
func TestGetChatHistoryBadCursor(t *testing.T) {
	o := startOpsServer(t, nil, "")
	c := dial(t, o.ws)
	c.join("h", nil)
	c.send(protocol.MsgGetChatHistory, protocol.GetChatHistoryPayload{Before: "not-an-id"})
	var e protocol.ErrorPayload
	c.expect(protocol.MsgError, &e)
	if e.Code != protocol.CodeInvalidPayload {
		t.Fatalf("bad before answered %s (%s), want %s: handlers.go handleHistory must map chat.ErrBadCursor to INVALID_PAYLOAD",
			e.Code, e.Message, protocol.CodeInvalidPayload)
	}
	c.send(protocol.MsgGetChatHistory, nil)
	c.expect(protocol.MsgChatHistory, nil)
}

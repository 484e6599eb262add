package livesync

import (
	"net/http"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// A connection refused after the upgrade (4401) is in its close handshake
// until the client answers or the grace period ends. Whatever it sends
// meanwhile must not be acted on: with no CanJoin, a nil user may join
// any room, so an intruder that writes before reading would otherwise
// join, broadcast and chat as the anonymous connection "".
func TestRefusedConnectionIsNotServed(t *testing.T) {
	_, url := startServer(t, &Options{OnAuth: func(r *http.Request) (*UserInfo, error) {
		if r.URL.Query().Get("t") == "ok" {
			return &UserInfo{UserID: "member"}, nil
		}
		return nil, nil
	}})
	a, b := livesynctest.Pair(t, url+"?t=ok", "r")

	intruder := livesynctest.RawDial(t, url) // refused; it never answers the close
	intruder.WriteText(t, `{"type":"join_room","payload":{"roomId":"r","name":"intruder"}}`)
	intruder.WriteText(t, `{"type":"broadcast_event","payload":{"event":"x","payload":{"from":"intruder"}}}`)
	intruder.WriteText(t, `{"type":"send_chat","payload":{"message":"from the intruder"}}`)
	intruder.WriteText(t, `{"type":"update_presence","payload":{"presence":{"from":"intruder"}}}`)
	// The server closes the socket once the grace period is over, after
	// its reader has seen every frame above.
	if !livesynctest.ReadsUntilClosed(intruder, livesynctest.Timeout) {
		t.Fatal("the refused connection was not closed")
	}

	b.Send(protocol.MsgSendChat, map[string]any{"message": "marker"})
	var chat protocol.StoredChatMessage
	a.Expect(protocol.MsgChatMessage, &chat) // Expect fails on anything else first
	if chat.Message != "marker" {
		t.Fatalf("a's next chat is %q, want the marker", chat.Message)
	}
	rj := livesynctest.Dial(t, url+"?t=ok").Join("r", nil)
	if len(rj.Presence) != 3 {
		t.Fatalf("the room holds %d members, want a, b and the joiner", len(rj.Presence))
	}
	for _, m := range rj.ChatHistory {
		if m.Message != "marker" {
			t.Fatalf("history holds %q from the refused connection", m.Message)
		}
	}
}

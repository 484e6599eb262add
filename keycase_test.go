package livesync

import (
	"net/http"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// Keys are read as JSON.parse reads them, exactly: one that names a field
// only when case is ignored is an unknown key, left alone. encoding/json
// took "ROOMID" for "roomId", so a message a JavaScript proxy or the Node
// server read as joining room "lobby" joined "admin" here.
func TestKeysMatchExactly(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	c := livesynctest.Dial(t, o.ws)
	c.SendRaw(`{"Type":"join_room","Payload":{"RoomId":"lobby"}}`)
	c.ExpectError(protocol.CodeInvalidMessage)
	c.SendRaw(`{"type":"join_room","payload":{"roomId":"lobby","ROOMID":"admin"}}`)
	if j := c.ExpectJoined(); j.RoomID != "lobby" {
		t.Fatalf("joined %q, want lobby", j.RoomID)
	}
	c.SendRaw(`{"type":"send_chat","payload":{"message":"hi","MESSAGE":"evil","Metadata":{"x":1}}}`)
	var m protocol.StoredChatMessage
	c.Expect(protocol.MsgChatMessage, &m)
	if m.Message != "hi" || len(m.Metadata) != 0 {
		t.Fatalf("chat %q %s, want hi without metadata", m.Message, m.Metadata)
	}
	c.SendRaw(`{"type":"send_chat","payload":{"message":"ok"},"TYPE":"nope"}`)
	if c.Expect(protocol.MsgChatMessage, &m); m.Message != "ok" {
		t.Fatalf("chat %q, want ok", m.Message)
	}
	r := o.api(t, http.MethodPost, roomPath("lobby", "/chat"), `{"message":"x","Message":"evil"}`)
	var stored protocol.StoredChatMessage
	r.decode(t, &stored)
	if r.status != http.StatusCreated || stored.Message != "x" {
		t.Fatalf("API chat: %d %s, want 201 with message x", r.status, r.body)
	}
}

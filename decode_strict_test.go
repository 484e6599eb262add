package livesync

import (
	"net/http"
	"strings"
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

// A text field holding a lone UTF-16 surrogate escape is refused, naming
// the field: encoding/json would read it as U+FFFD, another room or
// another message than the one written. Pairs are text, and what is
// relayed as it came (presence) reaches the others as written.
func TestLoneSurrogatesInTextFieldsRefused(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	for _, tc := range []struct{ frame, field string }{
		{`{"type":"join_room","payload":{"roomId":"a\ud800b"}}`, "roomId"},
		{`{"type":"join_room","payload":{"roomId":"a\uDC00"}}`, "roomId"},
		{`{"type":"join_room","payload":{"roomId":"r","name":"\ud800\ud800"}}`, "name"},
	} {
		a.SendRaw(tc.frame)
		if e := a.ExpectError(protocol.CodeInvalidPayload); !strings.Contains(e.Message, `"`+tc.field+`"`) {
			t.Fatalf("%s: %q does not name %s", tc.frame, e.Message, tc.field)
		}
	}
	a.SendRaw(`{"type":"join_room","payload":{"roomId":"r\ud83d\ude00","presence":{"s":"\ud800"}}}`)
	if j := a.ExpectJoined(); j.RoomID != "r😀" {
		t.Fatalf("joined %q", j.RoomID)
	}
	b.SendRaw(`{"type":"join_room","payload":{"roomId":"r\ud83d\ude00"}}`)
	if j := b.ExpectJoined(); string(j.Presence[a.ID].Presence) != `{"s":"\ud800"}` {
		t.Fatalf("presence reached b as %s", j.Presence[a.ID].Presence)
	}
	a.Expect(protocol.MsgPresenceUpdated, nil) // b joined
	a.SendRaw(`{"type":"send_chat","payload":{"message":"x\\ud800 \udfff"}}`)
	if e := a.ExpectError(protocol.CodeInvalidPayload); !strings.Contains(e.Message, `"message"`) {
		t.Fatalf("chat: %q", e.Message)
	}
	a.SendRaw(`{"type":"send_chat","payload":{"message":"x\\ud800"}}`) // an escaped backslash: text
	var m protocol.StoredChatMessage
	if a.Expect(protocol.MsgChatMessage, &m); m.Message != `x\ud800` {
		t.Fatalf("chat %q", m.Message)
	}
}

func TestHasLoneSurrogate(t *testing.T) {
	for in, want := range map[string]bool{
		`"plain"`:                false,
		`"\ud83d\ude00"`:         false,
		`"\uD83D\uDE00"`:         false,
		`"\u00e9\u0041"`:         false,
		`"\\ud800"`:              false, // an escaped backslash, then text
		`"\\\ud800"`:             true,
		`"\ud800"`:               true,
		`"\udc00"`:               true,
		`"\ud800\u0041"`:         true,
		`"\ud800\ud800\udc00"`:   true,
		`"\ud83d\ude00\udfff"`:   true,
		`"\ud800`:                true, // cut short: encoding/json says what is wrong
		`{"a":"\ud83d\ude00x"}`:  false,
		`{"\udfff":1}`:           true,
		`"\u12"`:                 false,
		`"\ud83d\ude0"`:          true,
		`"\ud83d\ude00\ud83d\u"`: true,
	} {
		if got := hasLoneSurrogate([]byte(in)); got != want {
			t.Errorf("%s: %v, want %v", in, got, want)
		}
	}
}

package livesync

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// TestAppendJSONStringInvalidUTF8: strings from Go code (an OnAuth hook's
// names, a store's messages) may hold any bytes; the server's frames are
// text and must be UTF-8, so each invalid byte is written as U+FFFD, as
// encoding/json does.
func TestAppendJSONStringInvalidUTF8(t *testing.T) {
	for _, s := range []string{
		"plain", "é€😀", "\xff", "a\x80b", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80",
		"ok\xe2\x82", "\xe2\x82\xac\xe2\x82", "\"quoted\"\n\u2028", "\xfe\xff\x00",
	} {
		got := appendJSONString(nil, s)
		if !utf8.Valid(got) {
			t.Errorf("%q encoded as %q, not UTF-8", s, got)
		}
		var fromOurs, fromStd string
		if err := json.Unmarshal(got, &fromOurs); err != nil {
			t.Errorf("%q encoded as %q: %v", s, got, err)
			continue
		}
		std, _ := json.Marshal(s)
		json.Unmarshal(std, &fromStd)
		if fromOurs != fromStd {
			t.Errorf("%q encoded as %q, reads back %q; encoding/json gives %q", s, got, fromOurs, fromStd)
		}
	}
}

// TestServerFramesAreUTF8: names an OnAuth hook returns with invalid
// UTF-8 reach the room as valid text.
func TestServerFramesAreUTF8(t *testing.T) {
	_, url := startServer(t, &Options{OnAuth: func(*http.Request) (*UserInfo, error) {
		return &UserInfo{UserID: "u\xff", Name: "Ada \xed\xa0\x80", Email: "a\xc0@example.com"}, nil
	}})
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join_room","payload":{"roomId":"r"}}`)); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(livesynctest.Timeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(data) {
		t.Fatalf("room_joined is not UTF-8: %q", data)
	}
	var env protocol.Envelope
	var joined protocol.RoomJoinedPayload
	if json.Unmarshal(data, &env) != nil || env.Type != protocol.MsgRoomJoined || json.Unmarshal(env.Payload, &joined) != nil {
		t.Fatalf("not room_joined: %s", data)
	}
	for _, e := range joined.Presence {
		if e.Name != "Ada \ufffd\ufffd\ufffd" || e.UserID != "u\ufffd" {
			t.Fatalf("entry %+v", e)
		}
	}
}

// TestInvalidUTF8FromClient: a text message that is not UTF-8 closes the
// connection with 1007 and reaches no one.
func TestInvalidUTF8FromClient(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := livesynctest.Pair(t, url, "r")
	if err := b.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"broadcast_event","payload":{"event":"e","payload":{"x":"`+"\xed\xa0\x80"+`"}}}`)); err != nil {
		t.Fatal(err)
	}
	if code := b.WaitClosed(); code != 1007 {
		t.Fatalf("closed with %d, want 1007", code)
	}
	// b's leaving is what a sees next: the event never came.
	env := a.Next()
	if env.Type != protocol.MsgPresenceUpdated {
		t.Fatalf("a got %s %s", env.Type, env.Payload)
	}
}

// TestAPIRefusesInvalidUTF8: a body that is not UTF-8 is refused like one
// that is not JSON, before anything is relayed or stored.
func TestAPIRefusesInvalidUTF8(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a := livesynctest.Dial(t, o.ws)
	a.Join("r", nil)
	for _, c := range []struct{ path, body string }{
		{"/events", `{"event":"e","payload":{"x":"` + "\xff" + `"}}`},
		{"/events", `{"event":"` + "\xed\xa0\x80" + `"}`},
		{"/chat", `{"message":"hi ` + "\xc0\xaf" + `"}`},
		{"/chat", `{"message":"hi","metadata":{"k":"` + "\xf4\x90\x80\x80" + `"}}`},
	} {
		e := o.api(t, http.MethodPost, roomPath("r", c.path), c.body).wantError(t, http.StatusBadRequest, protocol.CodeInvalidJSON)
		if !strings.Contains(e.Message, "UTF-8") {
			t.Fatalf("%s %q: message %q", c.path, c.body, e.Message)
		}
	}
	// A valid one after them is the first thing a sees.
	o.api(t, http.MethodPost, roomPath("r", "/events"), `{"event":"after"}`)
	var ev protocol.BroadcastEventRelayPayload
	a.Expect(protocol.MsgBroadcastEventRelay, &ev)
	if ev.Event != "after" {
		t.Fatalf("a got event %q first", ev.Event)
	}
}

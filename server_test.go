package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

func TestRootAndNonUpgrade(t *testing.T) {
	s, url := startServer(t, nil)
	base := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), s.opts.Path)
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "openlivesync" {
		t.Fatalf("GET / = %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("GET /live without upgrade = %d, want 426", resp.StatusCode)
	}
	resp, err = http.Get(base + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET /nope = %d, want 404", resp.StatusCode)
	}
}

func TestJoinSnapshotAndPresence(t *testing.T) {
	_, url := startServer(t, nil)
	a := livesynctest.Dial(t, url)
	rj := a.Join("r1", map[string]any{"cursor": map[string]int{"x": 1}})
	if rj.RoomID != "r1" || rj.ConnectionID == "" || len(rj.Presence) != 1 {
		t.Fatalf("room_joined %+v", rj)
	}
	if got := string(rj.Presence[rj.ConnectionID].Presence); got != `{"cursor":{"x":1}}` {
		t.Fatalf("own presence %s", got)
	}

	// chatHistory is always an array, never null or absent.
	b := livesynctest.Dial(t, url)
	b.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r1", "name": "Bea", "email": "bea@example.com"})
	env := b.Expect(protocol.MsgRoomJoined, nil)
	if !strings.Contains(string(env.Payload), `"chatHistory":[]`) {
		t.Fatalf("room_joined without an empty chatHistory array: %s", env.Payload)
	}
	var rjb protocol.RoomJoinedPayload
	json.Unmarshal(env.Payload, &rjb)
	if len(rjb.Presence) != 2 || rjb.Presence[rj.ConnectionID].ConnectionID != rj.ConnectionID {
		t.Fatalf("b's snapshot %+v", rjb.Presence)
	}

	var pu protocol.PresenceUpdatedPayload
	a.Expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Joined) != 1 || pu.Joined[0].ConnectionID != rjb.ConnectionID || pu.Joined[0].Name != "Bea" ||
		pu.Joined[0].Email != "bea@example.com" || string(pu.Joined[0].Presence) != "{}" {
		t.Fatalf("joined delta %+v", pu)
	}
	// Optional fields are omitted, never null.
	if strings.Contains(string(env.Payload), "null") {
		t.Fatalf("null in %s", env.Payload)
	}

	b.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"x": 5}})
	a.Expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Updated) != 1 || string(pu.Updated[0].Presence) != `{"x":5}` || pu.Updated[0].Name != "Bea" {
		t.Fatalf("updated delta %+v", pu)
	}

	b.Send(protocol.MsgLeaveRoom, map[string]any{})
	a.Expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Left) != 1 || pu.Left[0] != rjb.ConnectionID {
		t.Fatalf("left delta %+v", pu)
	}
	// After leaving, b is not in a room.
	b.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "x"})
	b.ExpectError(protocol.CodeNotInRoom)
}

func TestBroadcastEventGoesToOthersOnly(t *testing.T) {
	_, url := startServer(t, &Options{OnAuth: func(r *http.Request) (*UserInfo, error) {
		return &UserInfo{UserID: r.URL.Query().Get("u"), Name: "N", Provider: "test"}, nil
	}})
	a, b, c := livesynctest.Dial(t, url+"?u=ua"), livesynctest.Dial(t, url+"?u=ub"), livesynctest.Dial(t, url+"?u=uc")
	a.Join("room", nil)
	b.Join("room", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)
	c.Join("other", nil)

	a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "draw", "payload": map[string]any{"x": 1, "s": "é\u2028"}})
	var ev protocol.BroadcastEventRelayPayload
	b.Expect(protocol.MsgBroadcastEventRelay, &ev)
	if ev.RoomID != "room" || ev.ConnectionID != a.ID || ev.UserID != "ua" || ev.Event != "draw" {
		t.Fatalf("relay %+v", ev)
	}
	var pl map[string]any
	if err := json.Unmarshal(ev.Payload, &pl); err != nil || pl["s"] != "é\u2028" {
		t.Fatalf("payload %s", ev.Payload)
	}
	// Neither the sender nor another room got it: the next thing each sees
	// is a marker sent afterwards.
	b.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "marker"})
	a.Expect(protocol.MsgBroadcastEventRelay, &ev)
	if ev.Event != "marker" {
		t.Fatalf("sender got %+v", ev)
	}
	c2 := livesynctest.Dial(t, url+"?u=uc2")
	c2.Join("other", nil)
	c.Expect(protocol.MsgPresenceUpdated, nil) // the marker for c: nothing came before it

	// A null payload is relayed as none: optional fields are omitted, never
	// null (both the fast path and encoding/json's).
	for _, frame := range []string{
		`{"type":"broadcast_event","payload":{"event":"n","payload":null}}`,
		`{"type":"broadcast_event","payload":{"payload" : null , "event":"n\u0041"}}`,
	} {
		a.SendRaw(frame)
		env := b.Expect(protocol.MsgBroadcastEventRelay, nil)
		if strings.Contains(string(env.Payload), "null") {
			t.Fatalf("relay of %s: %s", frame, env.Payload)
		}
	}

	// The user's fields appear in presence entries.
	rj := livesynctest.Dial(t, url+"?u=ud").Join("room", nil)
	if e := rj.Presence[a.ID]; e.UserID != "ua" || e.Name != "N" || e.Provider != "test" {
		t.Fatalf("entry %+v", e)
	}
}

func TestChatStoredThenBroadcastToEveryone(t *testing.T) {
	_, url := startServer(t, &Options{HistoryLimit: 3})
	a, b := livesynctest.Pair(t, url, "r")
	for i := range 5 {
		a.Send(protocol.MsgSendChat, map[string]any{"message": "m" + string(rune('0'+i)), "metadata": map[string]any{"i": i}})
	}
	var got []protocol.StoredChatMessage
	for _, c := range []*livesynctest.Client{a, b} {
		got = got[:0]
		for range 5 {
			var m protocol.StoredChatMessage
			c.Expect(protocol.MsgChatMessage, &m)
			got = append(got, m)
		}
		for i, m := range got {
			if m.Message != "m"+string(rune('0'+i)) || m.ID == "" || m.CreatedAt == 0 || m.ConnectionID != a.ID || m.RoomID != "r" {
				t.Fatalf("message %d: %+v", i, m)
			}
			if i > 0 && m.ID == got[i-1].ID {
				t.Fatalf("duplicate id %s", m.ID)
			}
		}
	}
	// A new joiner gets the last HistoryLimit messages, oldest first.
	rj := livesynctest.Dial(t, url).Join("r", nil)
	if len(rj.ChatHistory) != 3 || rj.ChatHistory[0].Message != "m2" || rj.ChatHistory[2].Message != "m4" ||
		rj.ChatHistory[2].ID != got[4].ID || string(rj.ChatHistory[0].Metadata) != `{"i":2}` {
		t.Fatalf("history %+v", rj.ChatHistory)
	}
}

func TestOneRoomPerConnection(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := livesynctest.Pair(t, url, "one")
	rj := b.Join("two", nil)
	if len(rj.Presence) != 1 {
		t.Fatalf("two's snapshot %+v", rj.Presence)
	}
	var pu protocol.PresenceUpdatedPayload
	a.Expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Left) != 1 || pu.Left[0] != b.ID {
		t.Fatalf("a saw %+v", pu)
	}
	// A closed socket leaves its room: a member that saw b hears it leave,
	// and a later joiner does not see it.
	b.WS.Close()
	c := livesynctest.Dial(t, url)
	if _, saw := c.Join("two", nil).Presence[b.ID]; saw {
		c.Expect(protocol.MsgPresenceUpdated, &pu)
		if len(pu.Left) != 1 || pu.Left[0] != b.ID {
			t.Fatalf("c saw %+v, want b leaving", pu)
		}
	}
	rj = livesynctest.Dial(t, url).Join("two", nil)
	if _, ok := rj.Presence[b.ID]; ok || len(rj.Presence) != 2 {
		t.Fatalf("two after b closed: %+v, want c and the joiner", rj.Presence)
	}
}

func TestAuthCloseCodes(t *testing.T) {
	_, url := startServer(t, &Options{OnAuth: func(r *http.Request) (*UserInfo, error) {
		switch r.URL.Query().Get("t") {
		case "ok":
			return &UserInfo{UserID: "u1", Email: "u1@example.com"}, nil
		case "fail":
			return nil, errors.New("identity provider down")
		}
		return nil, nil
	}})
	if code := livesynctest.Dial(t, url).WaitClosed(); code != protocol.CloseAuthRejected {
		t.Fatalf("no user: close %d, want 4401", code)
	}
	if code := livesynctest.Dial(t, url+"?t=fail").WaitClosed(); code != protocol.CloseAuthFailed {
		t.Fatalf("auth error: close %d, want 4500", code)
	}
	c := livesynctest.Dial(t, url+"?t=ok")
	c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r", "name": "chosen", "email": "chosen@example.com"})
	var rj protocol.RoomJoinedPayload
	c.Expect(protocol.MsgRoomJoined, &rj)
	// Auth's email wins over the client's; the client's name fills the gap.
	if e := rj.Presence[rj.ConnectionID]; e.UserID != "u1" || e.Email != "u1@example.com" || e.Name != "chosen" {
		t.Fatalf("entry %+v", e)
	}
}

func TestRoomPermissions(t *testing.T) {
	_, url := startServer(t, &Options{
		OnAuth: func(r *http.Request) (*UserInfo, error) {
			return &UserInfo{UserID: "u", Rooms: []string{"team-1/*", "lobby"}}, nil
		},
		CanJoin: func(_ context.Context, u *UserInfo, room string) bool { return room != "team-1/secret" },
	})
	c := livesynctest.Dial(t, url)
	for _, room := range []string{"team-2/a", "lobbyx", "team-1/secret"} {
		c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": room})
		c.ExpectError(protocol.CodeForbidden)
	}
	c.Join("team-1/a", nil)
	c.Join("lobby", nil)
}

// TestLargeSnapshotJoin: a room_joined whose snapshot is large goes out as
// the room's cached encoding plus a frame head. Joiners that come one after
// another (each appending to that cache) and one that comes after a change
// (a fresh encoding) must each get one well-formed message with every member
// and the chat history.
func TestLargeSnapshotJoin(t *testing.T) {
	_, url := startServer(t, &Options{PresenceThrottle: -1})
	pad := strings.Repeat("x", 1200) // 20 members: more than sharedJoinBytes
	var members []*livesynctest.Client
	for i := range 20 {
		c := livesynctest.Dial(t, url)
		c.Join("big", map[string]any{"i": i, "pad": pad})
		members = append(members, c)
	}
	// skipUntil reads c's messages until one has type typ and satisfies ok.
	skipUntil := func(c *livesynctest.Client, typ string, ok func(json.RawMessage) bool) {
		t.Helper()
		for {
			if env := c.Next(); env.Type == typ && ok(env.Payload) {
				return
			}
		}
	}
	members[0].Send(protocol.MsgSendChat, map[string]any{"message": "hello"})
	members[0].NextOf(protocol.MsgChatMessage)
	check := func(c *livesynctest.Client, want int) {
		t.Helper()
		rj := c.Join("big", map[string]any{"i": want - 1, "pad": pad})
		if len(rj.Presence) != want || len(rj.ChatHistory) != 1 || rj.ChatHistory[0].Message != "hello" {
			t.Fatalf("room_joined with %d members (want %d), history %+v", len(rj.Presence), want, rj.ChatHistory)
		}
		for _, m := range members {
			if e, ok := rj.Presence[m.ID]; !ok || !strings.Contains(string(e.Presence), pad) {
				t.Fatalf("snapshot lacks %s or its presence: %+v", m.ID, e)
			}
		}
		members = append(members, c)
	}
	check(livesynctest.Dial(t, url), 21)
	check(livesynctest.Dial(t, url), 22)
	members[3].Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]any{"i": 3, "pad": pad + "y"}})
	skipUntil(members[4], protocol.MsgPresenceUpdated, func(p json.RawMessage) bool {
		var pu protocol.PresenceUpdatedPayload
		json.Unmarshal(p, &pu)
		return len(pu.Updated) == 1
	})
	check(livesynctest.Dial(t, url), 23)
}

// TestOverTLS: a connection the poller cannot watch (TLS) is read by a
// goroutine of its own and written only through its queue; joining,
// presence, events and chat work as on a plain one.
func TestOverTLS(t *testing.T) {
	s, ts := startOn(t, nil, httptest.NewTLSServer)
	d := websocket.Dialer{HandshakeTimeout: livesynctest.Timeout, TLSClientConfig: ts.Client().Transport.(*http.Transport).TLSClientConfig}
	url := "wss" + strings.TrimPrefix(ts.URL, "https") + s.opts.Path
	dialTLS := func() *livesynctest.Client {
		c, err := livesynctest.DialWith(t, &d, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dialTLS(), dialTLS()
	a.Join("r", nil)
	b.Join("r", nil)
	var pu protocol.PresenceUpdatedPayload
	a.Expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Joined) != 1 || pu.Joined[0].ConnectionID != b.ID {
		t.Fatalf("a saw %+v, want b joining", pu)
	}
	b.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "cursor", "payload": map[string]int{"x": 1}})
	var ev protocol.BroadcastEventRelayPayload
	a.Expect(protocol.MsgBroadcastEventRelay, &ev)
	if ev.Event != "cursor" || string(ev.Payload) != `{"x":1}` {
		t.Fatalf("relayed %+v", ev)
	}
	b.Send(protocol.MsgSendChat, map[string]any{"message": "over tls"})
	for _, c := range []*livesynctest.Client{a, b} {
		var m protocol.StoredChatMessage
		c.Expect(protocol.MsgChatMessage, &m)
		if m.Message != "over tls" {
			t.Fatalf("chat %+v", m)
		}
	}
}

// TestPathMustBeRoutable: a Path that Handler's mux would read as a
// pattern (braces, spaces) or that the root page would shadow ("/") is
// refused by New, not a panic in Handler or a server without its
// WebSocket.
func TestPathMustBeRoutable(t *testing.T) {
	for _, p := range []string{"live", "/", "/{", "/ws path", "/{$}", "/a?b", "/a#b", "/{room}"} {
		if _, err := New(&Options{Path: p}); err == nil {
			t.Errorf("Path %q accepted", p)
		}
	}
	for _, p := range []string{"/live", "/ws/v1", "/a-b_c.d~e", "/@x:1"} {
		s, err := New(&Options{Path: p})
		if err != nil {
			t.Errorf("Path %q: %v", p, err)
			continue
		}
		s.Handler()
		s.Shutdown(context.Background())
	}
}

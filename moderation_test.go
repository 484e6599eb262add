package livesync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// usersByQuery authenticates each connection as the user its URL's "u"
// names (anonymous without one), so tests can give connections users.
func usersByQuery(r *http.Request) (*UserInfo, error) {
	if u := r.URL.Query().Get("u"); u != "" {
		return &UserInfo{UserID: u, Provider: "test"}, nil
	}
	return &UserInfo{}, nil
}

// postChats stores texts in room through the API, in order.
func postChats(t *testing.T, o *opsServer, room string, texts ...string) []protocol.StoredChatMessage {
	t.Helper()
	var out []protocol.StoredChatMessage
	for _, text := range texts {
		r := o.api(t, http.MethodPost, roomPath(room, "/chat"), fmt.Sprintf(`{"message":%q}`, text))
		if r.status != http.StatusCreated {
			t.Fatalf("POST chat = %d %s", r.status, r.body)
		}
		var m protocol.StoredChatMessage
		r.decode(t, &m)
		out = append(out, m)
	}
	return out
}

func chatTexts(ms []protocol.StoredChatMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Message
	}
	return out
}

// historyTexts is what get_chat_history gives c for room's newest page.
func historyTexts(c *livesynctest.Client) []string {
	c.T.Helper()
	c.Send(protocol.MsgGetChatHistory, map[string]any{})
	var h protocol.ChatHistoryPayload
	c.Expect(protocol.MsgChatHistory, &h)
	return chatTexts(h.Messages)
}

// kickResult sends a kick and decodes its 200 answer.
func kickResult(t *testing.T, o *opsServer, room, body string) apiKickResponse {
	t.Helper()
	r := o.api(t, http.MethodPost, roomPath(room, "/kick"), body)
	if r.status != http.StatusOK {
		t.Fatalf("POST kick %s = %d %s", body, r.status, r.body)
	}
	var k apiKickResponse
	r.decode(t, &k)
	return k
}

// waitKicked waits until the server closed c and checks the close: 4403
// with reason.
func waitKicked(t *testing.T, c *livesynctest.Client, reason string) {
	t.Helper()
	if code := c.WaitClosed(); code != protocol.CloseKicked {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseKicked)
	}
	var ce *websocket.CloseError
	if !errors.As(c.Err(), &ce) || ce.Text != reason {
		t.Fatalf("close reason %v, want %q", c.Err(), reason)
	}
}

// expectLeft reads c's presence deltas until id has left its view.
func expectLeft(c *livesynctest.Client, ids ...string) {
	c.T.Helper()
	c.Until(fmt.Sprint(ids, " to leave"), func() bool {
		for _, id := range ids {
			if _, in := c.View[id]; in {
				return false
			}
		}
		return true
	}, func(env protocol.Envelope) {
		if env.Type != protocol.MsgPresenceUpdated {
			c.T.Fatalf("got %s while waiting for a leave", env.Type)
		}
		c.Track(env)
	})
}

// TestModerationDeleteChat: a deleted message is gone for a later joiner,
// get_chat_history and the API's history; the members connected are sent
// nothing; a second DELETE, an unknown id or room is 404; an
// Idempotency-Key replays the first answer.
func TestModerationDeleteChat(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a := livesynctest.Dial(t, o.ws)
	a.Join("r", nil)
	msgs := postChats(t, o, "r", "one", "two", "three")
	for range msgs {
		a.Expect(protocol.MsgChatMessage, nil)
	}

	path := roomPath("r", "/chat/"+msgs[1].ID)
	if r := o.api(t, http.MethodDelete, path, "", "Idempotency-Key", "del-1"); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE = %d %s, want 204 without a body", r.status, r.body)
	}
	want := []string{"one", "three"}
	b := livesynctest.Dial(t, o.ws)
	if got := chatTexts(b.Join("r", nil).ChatHistory); !slices.Equal(got, want) {
		t.Fatalf("a later joiner's history %q, want %q", got, want)
	}
	if got := historyTexts(b); !slices.Equal(got, want) {
		t.Fatalf("get_chat_history %q, want %q", got, want)
	}
	var page protocol.ChatHistoryPayload
	o.api(t, http.MethodGet, roomPath("r", "/history"), "").decode(t, &page)
	if got := chatTexts(page.Messages); !slices.Equal(got, want) {
		t.Fatalf("GET history %q, want %q", got, want)
	}
	// a was told of b's join and nothing else: no message about the deletion.
	a.Expect(protocol.MsgPresenceUpdated, nil)
	b.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "after"})
	a.Expect(protocol.MsgBroadcastEventRelay, nil)

	// The same key replays the 204; without it the message is gone: 404.
	if r := o.api(t, http.MethodDelete, path, "", "Idempotency-Key", "del-1"); r.status != http.StatusNoContent || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("DELETE replayed = %d %v", r.status, r.header)
	}
	o.api(t, http.MethodDelete, path, "").wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
	o.api(t, http.MethodDelete, roomPath("r", "/chat/999999"), "").wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
	o.api(t, http.MethodDelete, roomPath("nowhere", "/chat/"+msgs[0].ID), "").wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
	// Another room's message is not this room's to delete.
	other := postChats(t, o, "other", "kept")
	o.api(t, http.MethodDelete, roomPath("r", "/chat/"+other[0].ID), "").wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
	if r := o.api(t, http.MethodGet, roomPath("r", "/chat/"+msgs[0].ID), ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != http.MethodDelete {
		t.Fatalf("GET on a message = %d, Allow %q", r.status, r.header.Get("Allow"))
	}
}

// TestModerationDeleteRefillsJoinHistory: a deletion from the recent
// history does not shorten what later joiners get: they get the newest
// HistoryLimit messages that remain.
func TestModerationDeleteRefillsJoinHistory(t *testing.T) {
	o := startOpsServer(t, &Options{HistoryLimit: 3}, testAPIKey)
	a := livesynctest.Dial(t, o.ws)
	a.Join("r", nil) // keeps the room, and its recent history, alive
	msgs := postChats(t, o, "r", "1", "2", "3", "4", "5")
	for range msgs {
		a.Expect(protocol.MsgChatMessage, nil)
	}
	if r := o.api(t, http.MethodDelete, roomPath("r", "/chat/"+msgs[4].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", r.status, r.body)
	}
	want := []string{"2", "3", "4"}
	if got := chatTexts(livesynctest.Dial(t, o.ws).Join("r", nil).ChatHistory); !slices.Equal(got, want) {
		t.Fatalf("a later joiner's history %q, want %q", got, want)
	}
}

// TestModerationDeleteRacingLoads: a deletion the room heard of before
// a history read from the store returned it (the read came first), or
// before a message reached it from elsewhere, does not bring the message
// back into the recent history joiners get.
func TestModerationDeleteRacingLoads(t *testing.T) {
	store := chat.NewMemoryStore(nil)
	s := newTestServer(t, &Options{Store: store})
	t.Cleanup(func() { ctxShutdown(t, s) })
	var stored []protocol.StoredChatMessage
	for _, text := range []string{"one", "two", "three"} {
		m, err := store.Append(context.Background(), chat.Message{RoomID: "r", ConnectionID: "c", Message: text})
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, m)
	}
	recent := func(r *room) []string {
		r.mu.Lock()
		defer r.mu.Unlock()
		return chatTexts(r.history)
	}
	r := s.acquireRoom("r")
	r.forget("", stored[1].ID) // heard of before the store's delete
	r.ensureHistory()
	if got := recent(r); !slices.Equal(got, []string{"one", "three"}) {
		t.Fatalf("recent history after the load %q", got)
	}
	late := []protocol.StoredChatMessage{{ID: "late-1", ConnectionID: "x", Message: "four"}, {ID: "late-2", ConnectionID: "x", Message: "five"}}
	r.forget("x", "late-1")
	r.forget("other-conn", "late-2") // another message with that id
	r.mu.Lock()
	r.appendChat(late, chatFrames(late))
	r.mu.Unlock()
	if got := recent(r); !slices.Equal(got, []string{"one", "three", "five"}) {
		t.Fatalf("recent history after a late delivery %q", got)
	}
	if late[0].ID != "late-1" {
		t.Fatal("the caller's slice was changed")
	}
}

// TestModerationKickByConnection: the connection named is closed with
// 4403 and the reason, the others see it leave, and kicking it again is
// 200 with 0.
func TestModerationKickByConnection(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: usersByQuery}, testAPIKey)
	a, b := livesynctest.Pair(t, o.ws+"?u=ua", "r")
	k := kickResult(t, o, "r", fmt.Sprintf(`{"connectionId":%q,"reason":"spam"}`, a.ID))
	if k.Kicked != 1 || k.Banned != nil {
		t.Fatalf("kick answered %+v, want 1 kicked, no ban", k)
	}
	waitKicked(t, a, "spam")
	expectLeft(b, a.ID)
	if k := kickResult(t, o, "r", fmt.Sprintf(`{"connectionId":%q}`, a.ID)); k.Kicked != 0 {
		t.Fatalf("second kick answered %+v, want 0 kicked", k)
	}
	// Without a ban the user may come back.
	c := livesynctest.Dial(t, o.ws+"?u=ua")
	c.Join("r", nil)
}

// TestModerationKickUserBans: a kick by userId closes every connection of
// the user in the room (not in other rooms), the ban refuses the user's
// rejoin with FORBIDDEN, not other users' nor other rooms', and ends.
func TestModerationKickUserBans(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: usersByQuery}, testAPIKey)
	watcher := livesynctest.Dial(t, o.ws+"?u=w")
	watcher.Join("r", nil)
	tab1, tab2 := livesynctest.Dial(t, o.ws+"?u=ua"), livesynctest.Dial(t, o.ws+"?u=ua")
	elsewhere := livesynctest.Dial(t, o.ws+"?u=ua")
	elsewhere.Join("other", nil)
	tab1.Join("r", nil)
	tab2.Join("r", nil)
	watcher.Until("both tabs to join", func() bool { return len(watcher.View) == 3 }, watcher.Track)

	k := kickResult(t, o, "r", `{"userId":"ua","banSeconds":600}`)
	if k.Kicked != 2 || !slices.Equal(k.Banned, []string{"ua"}) {
		t.Fatalf("kick answered %+v, want 2 kicked, ua banned", k)
	}
	waitKicked(t, tab1, defaultKickReason)
	waitKicked(t, tab2, defaultKickReason)
	expectLeft(watcher, tab1.ID, tab2.ID)
	// Its connection in another room stays, and may not join this one.
	elsewhere.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r"})
	if e := elsewhere.ExpectError(protocol.CodeForbidden); !strings.Contains(e.Message, "banned") {
		t.Fatalf("refusal %q", e.Message)
	}
	back := livesynctest.Dial(t, o.ws+"?u=ua")
	back.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r"})
	back.ExpectError(protocol.CodeForbidden)
	back.Join("third", nil)
	livesynctest.Dial(t, o.ws+"?u=ub").Join("r", nil)
	livesynctest.Dial(t, o.ws).Join("r", nil) // anonymous

	// Kicking them again (they are gone) answers 0 and extends nothing
	// shorter: a ban is never shortened.
	if k := kickResult(t, o, "r", `{"userId":"ua","banSeconds":1}`); k.Kicked != 0 {
		t.Fatalf("second kick answered %+v", k)
	}
	o.s.bans.skew.Store(int64(time.Minute))
	back.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r"})
	back.ExpectError(protocol.CodeForbidden)
	// Ten minutes on, the ban has ended.
	o.s.bans.skew.Store(int64(11 * time.Minute))
	back.Join("r", nil)
	// Ended bans leave the list without another ban being added.
	livesynctest.WaitFor(t, "the ended ban to be purged", func() bool { return o.s.bans.n.Load() == 0 })
}

// TestModerationKickAnonymousConnectionBansNobody: banSeconds with the id
// of an anonymous connection closes it and bans no one (nothing of it can
// rejoin).
func TestModerationKickAnonymousConnectionBansNobody(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: usersByQuery}, testAPIKey)
	a, _ := livesynctest.Pair(t, o.ws, "r")
	if k := kickResult(t, o, "r", fmt.Sprintf(`{"connectionId":%q,"banSeconds":60}`, a.ID)); k.Kicked != 1 || k.Banned != nil {
		t.Fatalf("kick answered %+v", k)
	}
	waitKicked(t, a, defaultKickReason)
	livesynctest.Dial(t, o.ws).Join("r", nil)
	// By connection id, a user's connection bans its user.
	u, _ := livesynctest.Pair(t, o.ws+"?u=ux", "r2")
	if k := kickResult(t, o, "r2", fmt.Sprintf(`{"connectionId":%q,"banSeconds":60}`, u.ID)); k.Kicked != 1 || !slices.Equal(k.Banned, []string{"ux"}) {
		t.Fatalf("kick answered %+v", k)
	}
}

// TestModerationKickRefusals: bad input is 400 and kicks nobody; a room
// with nobody in it and no chat is 404; a room with chat only is known.
func TestModerationKickRefusals(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: usersByQuery}, testAPIKey)
	a, _ := livesynctest.Pair(t, o.ws+"?u=ua", "r")
	for _, body := range []string{
		`{}`,
		`{"reason":"x"}`,
		`{"connectionId":"c","userId":"u"}`,
		`{"userId":"ua","banSeconds":-1}`,
		`{"userId":"ua","banSeconds":2592001}`,
		`{"userId":"ua","banSeconds":1.5}`,
		`{"userId":"ua","banSeconds":"60"}`,
		`{"userId":1}`,
		fmt.Sprintf(`{"userId":"ua","reason":%q}`, strings.Repeat("x", maxCloseReason+1)),
		`[]`,
	} {
		o.api(t, http.MethodPost, roomPath("r", "/kick"), body).wantError(t, http.StatusBadRequest, protocol.CodeInvalidPayload)
	}
	o.api(t, http.MethodPost, roomPath("r", "/kick"), `{"userId":`).wantError(t, http.StatusBadRequest, protocol.CodeInvalidJSON)
	o.api(t, http.MethodPost, roomPath("nowhere", "/kick"), `{"userId":"ua"}`).wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
	if r := o.api(t, http.MethodGet, roomPath("r", "/kick"), ""); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET kick = %d", r.status)
	}
	postChats(t, o, "quiet", "hello")
	livesynctest.WaitFor(t, "the chat-only room to retire", func() bool { return o.s.lookupRoom("quiet") == nil })
	if k := kickResult(t, o, "quiet", `{"userId":"ua","banSeconds":60}`); k.Kicked != 0 || !slices.Equal(k.Banned, []string{"ua"}) {
		t.Fatalf("kick in a room with chat only answered %+v", k)
	}
	// Nobody was kicked by the refusals.
	a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "still here"})
	if k := kickResult(t, o, "r", `{"userId":"ua","banSeconds":30}`); k.Kicked != 2 { // both of the pair
		t.Fatalf("kick answered %+v", k)
	}
}

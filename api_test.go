package livesync

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

const testAPIKey = "test-api-key-0123456789abcdef"

// api sends an authorised API request.
func (o *opsServer) api(t testing.TB, method, path, body string, headers ...string) httpResult {
	t.Helper()
	return o.do(t, method, path, body, append([]string{"Authorization", "Bearer " + testAPIKey, "Content-Type", "application/json"}, headers...)...)
}

func roomPath(room, rest string) string { return "/api/rooms/" + url.PathEscape(room) + rest }

func TestAPIDisabledByDefault(t *testing.T) {
	o := startOpsServer(t, nil, "")
	if r := o.api(t, http.MethodGet, "/api/rooms", ""); r.status != http.StatusNotFound {
		t.Fatalf("GET /api/rooms without an APIKey = %d, want 404", r.status)
	}
	// An APIHandler built with an empty key refuses everything.
	s := o.s
	h := s.APIHandler("")
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest(http.MethodGet, "/api/rooms", nil)
	req.Header.Set("Authorization", "Bearer ")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("empty-key handler answered %d", rec.Code)
	}
}

func TestAPIAuth(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Basic " + testAPIKey, "Bearer " + testAPIKey + "x", testAPIKey} {
		var r httpResult
		if auth == "" {
			r = o.do(t, http.MethodGet, "/api/rooms", "")
		} else {
			r = o.do(t, http.MethodGet, "/api/rooms", "", "Authorization", auth)
		}
		r.wantError(t, http.StatusUnauthorized, protocol.CodeForbidden)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a WWW-Authenticate: Bearer challenge (auth %q)", auth)
		}
	}
	if r := o.do(t, http.MethodGet, "/api/rooms", "", "Authorization", "bearer "+testAPIKey); r.status != 200 {
		t.Fatalf("lower-case scheme: %d %s", r.status, r.body)
	}
	// The API answers nothing, not even 404 or 405, before authentication.
	o.do(t, http.MethodDelete, "/api/nope", "").wantError(t, http.StatusUnauthorized, protocol.CodeForbidden)
}

func TestAPIEventReachesMembers(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a, b := livesynctest.Dial(t, o.ws), livesynctest.Dial(t, o.ws)
	a.Join("team/42", nil) // a "/" in the id travels percent-encoded
	b.Join("team/42", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)

	r := o.api(t, http.MethodPost, roomPath("team/42", "/events"), `{"event":"deploy","payload":{"version":"1.2.3"}}`)
	if r.status != 200 {
		t.Fatalf("POST events = %d %s", r.status, r.body)
	}
	var resp apiEventResponse
	r.decode(t, &resp)
	if resp.RoomID != "team/42" || resp.Recipients != 2 {
		t.Fatalf("response %+v", resp)
	}
	for _, c := range []*livesynctest.Client{a, b} {
		var ev protocol.BroadcastEventRelayPayload
		c.Expect(protocol.MsgBroadcastEventRelay, &ev)
		if ev.RoomID != "team/42" || ev.ConnectionID != o.s.apiConnectionID() || !strings.HasPrefix(ev.ConnectionID, "server-") || ev.Event != "deploy" || string(ev.Payload) != `{"version":"1.2.3"}` || ev.UserID != "" {
			t.Fatalf("relayed %+v", ev)
		}
	}
	// Without a payload, none is sent (never null).
	o.api(t, http.MethodPost, roomPath("team/42", "/events"), `{"event":"ping","payload":null}`)
	env := a.Expect(protocol.MsgBroadcastEventRelay, nil)
	if strings.Contains(string(env.Payload), "null") || strings.Contains(string(env.Payload), `"payload"`) {
		t.Fatalf("event without payload: %s", env.Payload)
	}
	// A room without members: accepted, sent to nobody.
	r = o.api(t, http.MethodPost, roomPath("empty", "/events"), `{"event":"x"}`)
	r.decode(t, &resp)
	if r.status != 200 || resp.Recipients != 0 {
		t.Fatalf("event to an empty room: %d %s", r.status, r.body)
	}
}

func TestAPIEventIdempotency(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a := livesynctest.Dial(t, o.ws)
	a.Join("r", nil)
	path := roomPath("r", "/events")

	first := o.api(t, http.MethodPost, path, `{"event":"once"}`, "Idempotency-Key", "k-1")
	a.Expect(protocol.MsgBroadcastEventRelay, nil)
	again := o.api(t, http.MethodPost, path, `{"event":"once"}`, "Idempotency-Key", "k-1")
	if again.status != first.status || string(again.body) != string(first.body) {
		t.Fatalf("retry answered %d %s, first %d %s", again.status, again.body, first.status, first.body)
	}
	if again.header.Get("Idempotent-Replayed") != "true" || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("Idempotent-Replayed: first %q, retry %q", first.header.Get("Idempotent-Replayed"), again.header.Get("Idempotent-Replayed"))
	}
	// The retry was not re-sent: the next event a sees is the marker.
	o.api(t, http.MethodPost, path, `{"event":"marker"}`, "Idempotency-Key", "k-2")
	expectEvent(t, a, "marker")

	// The same key for a different request is refused, and sends nothing.
	o.api(t, http.MethodPost, path, `{"event":"other"}`, "Idempotency-Key", "k-1").
		wantError(t, http.StatusUnprocessableEntity, protocol.CodeInvalidPayload)
	o.api(t, http.MethodPost, roomPath("elsewhere", "/events"), `{"event":"once"}`, "Idempotency-Key", "k-1").
		wantError(t, http.StatusUnprocessableEntity, protocol.CodeInvalidPayload)
	// A failed request is not remembered: fixed and retried with the same
	// key, it runs (a remembered failure would answer 422 to the new body).
	o.api(t, http.MethodPost, path, `{"event":""}`, "Idempotency-Key", "k-3").
		wantError(t, http.StatusBadRequest, protocol.CodeInvalidPayload)
	if r := o.api(t, http.MethodPost, path, `{"event":"fixed"}`, "Idempotency-Key", "k-3"); r.status != 200 || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("fixed retry = %d %s (replayed %q)", r.status, r.body, r.header.Get("Idempotent-Replayed"))
	}
	expectEvent(t, a, "fixed")
	// Bad keys.
	o.api(t, http.MethodPost, path, `{"event":"x"}`, "Idempotency-Key", strings.Repeat("k", 256)).
		wantError(t, http.StatusBadRequest, protocol.CodeInvalidPayload)
	o.api(t, http.MethodPost, path, `{"event":"x"}`, "Idempotency-Key", "k\u00e9").
		wantError(t, http.StatusBadRequest, protocol.CodeInvalidPayload)
}

// TestAPIEventIdempotencyConcurrent: retries racing each other still send
// the event once, and all get the same answer.
func TestAPIEventIdempotencyConcurrent(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a := livesynctest.Dial(t, o.ws)
	a.Join("r", nil)
	const n = 16
	var wg sync.WaitGroup
	results := make([]httpResult, n)
	for i := range n {
		wg.Go(func() {
			results[i] = o.api(t, http.MethodPost, roomPath("r", "/events"), `{"event":"race"}`, "Idempotency-Key", "same")
		})
	}
	wg.Wait()
	replays := 0
	for _, r := range results {
		if r.status != 200 || string(r.body) != string(results[0].body) {
			t.Fatalf("answers differ: %d %s vs %s", r.status, r.body, results[0].body)
		}
		if r.header.Get("Idempotent-Replayed") == "true" {
			replays++
		}
	}
	if replays != n-1 {
		t.Fatalf("%d replays, want %d", replays, n-1)
	}
	expectEvent(t, a, "race")
	o.api(t, http.MethodPost, roomPath("r", "/events"), `{"event":"marker"}`)
	expectEvent(t, a, "marker")
}

// expectEvent checks that c's next message is the relayed event name.
func expectEvent(t *testing.T, c *livesynctest.Client, name string) {
	t.Helper()
	var ev protocol.BroadcastEventRelayPayload
	c.Expect(protocol.MsgBroadcastEventRelay, &ev)
	if ev.Event != name {
		t.Fatalf("got event %q, want %q", ev.Event, name)
	}
}

// expectChats checks that c's next messages are chat_messages with these
// texts, in order.
func expectChats(t *testing.T, c *livesynctest.Client, texts ...string) {
	t.Helper()
	for _, want := range texts {
		var m protocol.StoredChatMessage
		c.Expect(protocol.MsgChatMessage, &m)
		if m.Message != want {
			t.Fatalf("chat %q, want %q", m.Message, want)
		}
	}
}

func TestAPIChatStoredThenBroadcast(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a := livesynctest.Dial(t, o.ws)
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "from a client"})
	var before protocol.StoredChatMessage
	a.Expect(protocol.MsgChatMessage, &before)

	r := o.api(t, http.MethodPost, roomPath("r", "/chat"), `{"message":"Build #7 passed","name":"CI","metadata":{"url":"https://ci.example/7"}}`)
	if r.status != http.StatusCreated {
		t.Fatalf("POST chat = %d %s", r.status, r.body)
	}
	var stored protocol.StoredChatMessage
	r.decode(t, &stored)
	if stored.ID == "" || stored.CreatedAt == 0 || stored.ConnectionID != o.s.apiConnectionID() || stored.UserID != "system" ||
		stored.RoomID != "r" || stored.Message != "Build #7 passed" {
		t.Fatalf("stored %+v", stored)
	}
	var meta map[string]string
	if err := json.Unmarshal(stored.Metadata, &meta); err != nil || meta["name"] != "CI" || meta["url"] != "https://ci.example/7" {
		t.Fatalf("metadata %s", stored.Metadata)
	}
	var got protocol.StoredChatMessage
	a.Expect(protocol.MsgChatMessage, &got)
	if got.ID != stored.ID || got.Message != stored.Message || string(got.Metadata) != string(stored.Metadata) {
		t.Fatalf("broadcast %+v, stored %+v", got, stored)
	}

	// A given userId and a metadata name win over the defaults.
	r = o.api(t, http.MethodPost, roomPath("r", "/chat"), `{"message":"hi","userId":"bot-1","name":"Bot","metadata":{"name":"Kept"}}`)
	r.decode(t, &stored)
	if stored.UserID != "bot-1" || string(stored.Metadata) != `{"name":"Kept"}` {
		t.Fatalf("stored %+v", stored)
	}
	a.Expect(protocol.MsgChatMessage, nil)

	// A joiner's history has them all, in the one order everyone saw.
	b := livesynctest.Dial(t, o.ws)
	rj := b.Join("r", nil)
	if len(rj.ChatHistory) != 3 || rj.ChatHistory[0].ID != before.ID || rj.ChatHistory[1].Message != "Build #7 passed" || rj.ChatHistory[2].UserID != "bot-1" {
		t.Fatalf("history %+v", rj.ChatHistory)
	}
}

// TestAPIChatToEmptyRoom: a message to a room nobody is in is stored, a
// later joiner gets it, and the room does not linger.
func TestAPIChatToEmptyRoom(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	for _, m := range []string{"m0", "", "m2"} { // an empty one is fine, as in send_chat
		if r := o.api(t, http.MethodPost, roomPath("later", "/chat"), fmt.Sprintf(`{"message":%q}`, m)); r.status != http.StatusCreated {
			t.Fatalf("POST chat %q = %d %s", m, r.status, r.body)
		}
	}
	// The room's chat worker answers each request, then retires the room
	// once its queue is empty: it goes away, shortly after the last answer.
	livesynctest.WaitFor(t, "the empty room to retire", func() bool { return o.s.Stats().Rooms == 0 })
	var rooms apiRoomsResponse
	o.api(t, http.MethodGet, "/api/rooms", "").decode(t, &rooms)
	if len(rooms.Rooms) != 0 {
		t.Fatalf("rooms %+v", rooms)
	}
	a := livesynctest.Dial(t, o.ws)
	rj := a.Join("later", nil)
	if len(rj.ChatHistory) != 3 || rj.ChatHistory[0].Message != "m0" || rj.ChatHistory[2].Message != "m2" {
		t.Fatalf("history %+v", rj.ChatHistory)
	}
}

func TestAPIChatStoreFailure(t *testing.T) {
	store := newOpsStore()
	o := startOpsServer(t, &Options{Store: store}, testAPIKey)
	a := livesynctest.Dial(t, o.ws)
	a.Join("r", nil)
	store.set(func(s *opsStore) { s.broken = true })
	o.api(t, http.MethodPost, roomPath("r", "/chat"), `{"message":"lost"}`, "Idempotency-Key", "c-1").
		wantError(t, http.StatusServiceUnavailable, protocol.CodeChatUnavailable)
	// Nothing was broadcast; once the store is back, the retry with the
	// same key goes through (a failure is not remembered).
	store.set(func(s *opsStore) { s.broken = false })
	if r := o.api(t, http.MethodPost, roomPath("r", "/chat"), `{"message":"retried"}`, "Idempotency-Key", "c-2"); r.status != http.StatusCreated {
		t.Fatalf("after the store recovered: %d %s", r.status, r.body)
	}
	if r := o.api(t, http.MethodPost, roomPath("r", "/chat"), `{"message":"lost"}`, "Idempotency-Key", "c-1"); r.status != http.StatusCreated {
		t.Fatalf("retry = %d %s", r.status, r.body)
	}
	expectChats(t, a, "retried", "lost")
}

func TestAPIPresenceAndRooms(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a, b, c := livesynctest.Dial(t, o.ws), livesynctest.Dial(t, o.ws), livesynctest.Dial(t, o.ws)
	a.Join("b-room", map[string]any{"cursor": map[string]int{"x": 1, "y": 2}})
	b.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "b-room", "name": "Bea"})
	b.Expect(protocol.MsgRoomJoined, nil)
	c.Join("a-room", nil)

	var pres struct {
		RoomID   string                            `json:"roomId"`
		Presence map[string]protocol.PresenceEntry `json:"presence"`
	}
	r := o.api(t, http.MethodGet, roomPath("b-room", "/presence"), "")
	r.decode(t, &pres)
	if r.status != 200 || pres.RoomID != "b-room" || len(pres.Presence) != 2 {
		t.Fatalf("presence %d %s", r.status, r.body)
	}
	if e := pres.Presence[a.ID]; string(e.Presence) != `{"cursor":{"x":1,"y":2}}` || e.ConnectionID != a.ID {
		t.Fatalf("a's entry %+v", e)
	}
	found := false
	for _, e := range pres.Presence {
		found = found || e.Name == "Bea"
	}
	if !found {
		t.Fatalf("Bea missing: %s", r.body)
	}
	r = o.api(t, http.MethodGet, roomPath("nobody", "/presence"), "")
	if r.status != 200 || string(r.body) != `{"roomId":"nobody","presence":{}}` {
		t.Fatalf("presence of an empty room: %d %s", r.status, r.body)
	}

	var rooms apiRoomsResponse
	o.api(t, http.MethodGet, "/api/rooms", "").decode(t, &rooms)
	want := []roomSummary{{"a-room", 1}, {"b-room", 2}}
	if fmt.Sprint(rooms.Rooms) != fmt.Sprint(want) {
		t.Fatalf("rooms %+v, want %+v", rooms.Rooms, want)
	}
	// HEAD works like GET.
	if r := o.api(t, http.MethodHead, "/api/rooms", ""); r.status != 200 {
		t.Fatalf("HEAD /api/rooms = %d", r.status)
	}
}

// seedHistory stores n messages "m1".."mn" in room, oldest first.
func seedHistory(t *testing.T, store chat.Store, room string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if _, err := store.Append(t.Context(), chat.Message{RoomID: room, ConnectionID: "seed", Message: fmt.Sprintf("m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// pageBack pages back through the 250 messages seedHistory stored, 100 at
// a time: fetch(before) returns the page before the message id before
// ("" for the newest). The pages must hold 100, 100 and 50 messages, say
// whether more remain, and cover m1..m250 once, oldest first.
func pageBack(t *testing.T, fetch func(before string) protocol.ChatHistoryPayload) {
	t.Helper()
	var all []protocol.StoredChatMessage
	var shape []string
	before := ""
	for range 3 {
		p := fetch(before)
		if p.RoomID != "h" || len(p.Messages) == 0 {
			t.Fatalf("page before %q: %+v", before, p)
		}
		shape = append(shape, fmt.Sprintf("%d/%v", len(p.Messages), p.HasMore))
		all = append(p.Messages, all...)
		before = p.Messages[0].ID
	}
	if got := strings.Join(shape, " "); got != "100/true 100/true 50/false" {
		t.Fatalf("pages (size/hasMore) %s, want 100/true 100/true 50/false", got)
	}
	for i, m := range all {
		if m.Message != fmt.Sprintf("m%d", i+1) {
			t.Fatalf("message %d is %q: pages overlap, miss or are out of order", i, m.Message)
		}
	}
}

func TestAPIHistoryPaging(t *testing.T) {
	store := chat.NewMemoryStore(nil)
	seedHistory(t, store, "h", 250)
	o := startOpsServer(t, &Options{Store: store}, testAPIKey)
	pageBack(t, func(before string) (p protocol.ChatHistoryPayload) {
		r := o.api(t, http.MethodGet, roomPath("h", "/history?limit=100&before="+url.QueryEscape(before)), "")
		if r.status != 200 {
			t.Fatalf("history = %d %s", r.status, r.body)
		}
		r.decode(t, &p)
		return p
	})

	// Defaults and bounds.
	var p protocol.ChatHistoryPayload
	o.api(t, http.MethodGet, roomPath("h", "/history"), "").decode(t, &p)
	if len(p.Messages) != 100 || !p.HasMore || p.Messages[99].Message != "m250" {
		t.Fatalf("default page: %d messages, hasMore %v", len(p.Messages), p.HasMore)
	}
	r := o.api(t, http.MethodGet, roomPath("unknown", "/history"), "")
	if r.status != 200 || string(r.body) != `{"roomId":"unknown","messages":[],"hasMore":false}` {
		t.Fatalf("empty room history: %d %s", r.status, r.body)
	}
	o.api(t, http.MethodGet, roomPath("h", "/history?before=not-an-id"), "").
		wantError(t, http.StatusBadRequest, protocol.CodeInvalidPayload)
	for _, lim := range []string{"0", "-1", "ten"} {
		o.api(t, http.MethodGet, roomPath("h", "/history?limit="+lim), "").
			wantError(t, http.StatusBadRequest, protocol.CodeInvalidPayload)
	}

	// The default page is the server's HistoryLimit, capped like limit.
	big := chat.NewMemoryStore(nil)
	seedHistory(t, big, "h", maxHistoryPage+10)
	o3 := startOpsServer(t, &Options{Store: big, HistoryLimit: 2 * maxHistoryPage}, testAPIKey)
	o3.api(t, http.MethodGet, roomPath("h", "/history"), "").decode(t, &p)
	if len(p.Messages) != maxHistoryPage || !p.HasMore {
		t.Fatalf("default page with HistoryLimit %d: %d messages, hasMore %v", 2*maxHistoryPage, len(p.Messages), p.HasMore)
	}

	// A store that cannot page says so.
	o2 := startOpsServer(t, &Options{Store: noPingStore{chat.NewMemoryStore(nil)}}, testAPIKey)
	o2.api(t, http.MethodGet, roomPath("h", "/history"), "").
		wantError(t, http.StatusNotImplemented, protocol.CodeServerError)
}

func TestAPIValidation(t *testing.T) {
	o := startOpsServer(t, &Options{Limits: Limits{MaxMessageBytes: 4 << 10, MaxChatBytes: 100, MaxPresenceBytes: 64}}, testAPIKey)
	long := strings.Repeat("r", 257)
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", roomPath(long, "/events"), `{"event":"e"}`, 400, protocol.CodeInvalidPayload},
		{"POST", "/api/rooms/a%01b/events", `{"event":"e"}`, 400, protocol.CodeInvalidPayload},
		{"POST", "/api/rooms/%ff/events", `{"event":"e"}`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/events"), `{"event":`, 400, protocol.CodeInvalidJSON},
		{"POST", roomPath("r", "/events"), ``, 400, protocol.CodeInvalidJSON}, // as an empty frame is
		{"POST", roomPath("r", "/events"), `[1]`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/events"), `{}`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/events"), `{"event":5}`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/events"), `{"event":"e","payload":"` + strings.Repeat("x", 5000) + `"}`, 413, protocol.CodeMessageTooLarge},
		{"POST", roomPath("r", "/chat"), `{}`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/chat"), `{"message":null}`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/chat"), `{"message":["x"]}`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/chat"), `{"message":"` + strings.Repeat("x", 101) + `"}`, 413, protocol.CodeMessageTooLarge},
		{"POST", roomPath("r", "/chat"), `{"message":"x","metadata":"str"}`, 400, protocol.CodeInvalidPayload},
		{"POST", roomPath("r", "/chat"), `{"message":"x","metadata":{"k":"` + strings.Repeat("x", 64) + `"}}`, 413, protocol.CodeMessageTooLarge},
		{"POST", roomPath("r", "/chat"), `{"message":"x","name":"` + strings.Repeat("n", 60) + `"}`, 413, protocol.CodeMessageTooLarge},
		{"POST", roomPath("r", "/chat"), `{"message":"x","userId":"` + strings.Repeat("u", 257) + `"}`, 413, protocol.CodeMessageTooLarge},
		{"GET", roomPath("r", "/events"), ``, 405, protocol.CodeInvalidMessage},
		{"POST", roomPath("r", "/presence"), `{}`, 405, protocol.CodeInvalidMessage},
		{"DELETE", "/api/rooms", ``, 405, protocol.CodeInvalidMessage},
		{"GET", roomPath("r", "/nope"), ``, 404, protocol.CodeInvalidMessage},
		{"GET", "/api/other", ``, 404, protocol.CodeInvalidMessage},
		{"GET", "/api/rooms/r/events/extra", ``, 404, protocol.CodeInvalidMessage},
	} {
		r := o.api(t, c.method, c.path, c.body)
		if r.status != c.status {
			t.Errorf("%s %.60s %.40s = %d %s, want %d", c.method, c.path, c.body, r.status, r.body, c.status)
			continue
		}
		r.wantError(t, c.status, c.code)
	}
	if r := o.api(t, "GET", roomPath("r", "/events"), ""); r.header.Get("Allow") != "POST" {
		t.Errorf("405 without Allow: POST")
	}
}

// TestAPIRefusesWritesWhileShuttingDown: once Shutdown has begun (the
// store may be closed), a write is refused without touching a room; reads
// still answer.
func TestAPIRefusesWritesWhileShuttingDown(t *testing.T) {
	s, err := New(&Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h := s.APIHandler(testAPIKey)
	ctxShutdown(t, s)
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, roomPath("r", "/chat"), `{"message":"late"}`},
		{http.MethodPost, roomPath("r", "/events"), `{"event":"late"}`},
		{http.MethodGet, "/api/rooms", ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		h.ServeHTTP(rec, req)
		want := http.StatusServiceUnavailable
		if c.method == http.MethodGet {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("%s %s after Shutdown = %d %s, want %d", c.method, c.path, rec.Code, rec.Body, want)
		}
	}
	if st := s.Stats(); st.Rooms != 0 {
		t.Fatalf("%d rooms created after Shutdown", st.Rooms)
	}
}

// TestAPIChatKeepsTheRoomsOrder: chat posted through the API while
// clients chat lands in the room's one order: every member sees the
// messages in store order (the memory store's ids increase), and a joiner's
// history is that same order.
func TestAPIChatKeepsTheRoomsOrder(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	a, b := livesynctest.Dial(t, o.ws), livesynctest.Dial(t, o.ws)
	a.Join("r", nil)
	b.Join("r", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)

	const each = 15 // within the default chat burst of 20
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range each {
			if r := o.api(t, http.MethodPost, roomPath("r", "/chat"), fmt.Sprintf(`{"message":"api %d"}`, i)); r.status != http.StatusCreated {
				t.Errorf("POST chat = %d %s", r.status, r.body)
			}
		}
	})
	for i := range each {
		a.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprintf("client %d", i)})
	}
	wg.Wait()

	seen := func(c *livesynctest.Client) []string {
		var ids []string
		for range 2 * each {
			var m protocol.StoredChatMessage
			c.Expect(protocol.MsgChatMessage, &m)
			ids = append(ids, m.ID+" "+m.Message)
		}
		return ids
	}
	orderA, orderB := seen(a), seen(b)
	if fmt.Sprint(orderA) != fmt.Sprint(orderB) {
		t.Fatalf("members saw different orders:\n%v\n%v", orderA, orderB)
	}
	for i := 1; i < len(orderA); i++ {
		var prev, cur int
		fmt.Sscan(orderA[i-1], &prev)
		fmt.Sscan(orderA[i], &cur)
		if cur <= prev {
			t.Fatalf("delivered out of store order: %q after %q", orderA[i], orderA[i-1])
		}
	}
	var history []string
	for _, m := range livesynctest.Dial(t, o.ws).Join("r", nil).ChatHistory {
		history = append(history, m.ID+" "+m.Message)
	}
	if fmt.Sprint(history) != fmt.Sprint(orderA) {
		t.Fatalf("history differs from what members saw:\n%v\n%v", history, orderA)
	}
}

package livesync

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// Tests of chat against a store that fails, stalls or returns damaged
// rows.

// failingStore is a chat.Store whose appends fail while broken is set:
// the server's reaction to a store fault, without a database.
type failingStore struct {
	*chat.MemoryStore
	mu     sync.Mutex
	broken bool
}

func (f *failingStore) Append(ctx context.Context, m chat.Message) (protocol.StoredChatMessage, error) {
	f.mu.Lock()
	broken := f.broken
	f.mu.Unlock()
	if broken {
		return protocol.StoredChatMessage{}, fmt.Errorf("disk on fire")
	}
	return f.MemoryStore.Append(ctx, m)
}

func TestChatUnavailableBroadcastsNothing(t *testing.T) {
	fs := &failingStore{MemoryStore: chat.NewMemoryStore(nil), broken: true}
	_, url := startServer(t, &Options{Store: fs})
	a, b := livesynctest.Pair(t, url, "r")
	a.Send(protocol.MsgSendChat, map[string]any{"message": "lost?"})
	a.ExpectError(protocol.CodeChatUnavailable)
	// Events still flow, and b saw no chat: its next message is the event.
	a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "still-here"})
	b.Expect(protocol.MsgBroadcastEventRelay, nil)
	fs.mu.Lock()
	fs.broken = false
	fs.mu.Unlock()
	a.Send(protocol.MsgSendChat, map[string]any{"message": "back"})
	var m protocol.StoredChatMessage
	b.Expect(protocol.MsgChatMessage, &m)
	if m.Message != "back" {
		t.Fatalf("got %+v", m)
	}
}

// gateStore holds every append until its gate opens.
type gateStore struct {
	*chat.MemoryStore
	entered chan struct{}
	gate    chan struct{}
}

func (g *gateStore) Append(ctx context.Context, m chat.Message) (protocol.StoredChatMessage, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.MemoryStore.Append(ctx, m)
}

func (g *gateStore) AppendBatch(ctx context.Context, ms []chat.Message) ([]protocol.StoredChatMessage, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.MemoryStore.AppendBatch(ctx, ms)
}

// TestChatOutlivesItsSender: a sender that leaves while its message is
// still being stored does not take the message with it; whoever joins
// the room next gets it, live or in the history.
func TestChatOutlivesItsSender(t *testing.T) {
	gs := &gateStore{MemoryStore: chat.NewMemoryStore(nil), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	s, url := startServer(t, &Options{Store: gs})
	a := livesynctest.Dial(t, url)
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "in flight"})
	<-gs.entered
	a.WS.Close()
	livesynctest.WaitFor(t, "the sender to be gone", func() bool { return s.Stats().Connections == 0 })

	b := livesynctest.Dial(t, url)
	rj := b.Join("r", nil)
	close(gs.gate)
	if len(rj.ChatHistory) == 1 && rj.ChatHistory[0].Message == "in flight" {
		return
	}
	var m protocol.StoredChatMessage
	b.Expect(protocol.MsgChatMessage, &m)
	if m.Message != "in flight" {
		t.Fatalf("got %+v", m)
	}
}

// corruptStore returns history whose metadata is not JSON, as a damaged
// database row might.
type corruptStore struct{ *chat.MemoryStore }

func (c corruptStore) History(ctx context.Context, room string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	return []protocol.StoredChatMessage{
		{ID: "1", RoomID: room, ConnectionID: "x", Message: "ok", Metadata: []byte(`{"a":1}`), CreatedAt: 1},
		{ID: "2", RoomID: room, ConnectionID: "x", Message: "bad", Metadata: []byte(`{not json`), CreatedAt: 2},
		{ID: "3", RoomID: room, ConnectionID: "x", Message: "array", Metadata: []byte(`[1]`), CreatedAt: 3},
	}, nil
}

func TestCorruptStoredMetadataDoesNotBreakJoins(t *testing.T) {
	_, url := startServer(t, &Options{Store: corruptStore{chat.NewMemoryStore(nil)}})
	rj := livesynctest.Dial(t, url).Join("r", nil)
	if len(rj.ChatHistory) != 3 || string(rj.ChatHistory[0].Metadata) != `{"a":1}` ||
		rj.ChatHistory[1].Metadata != nil || rj.ChatHistory[2].Metadata != nil || rj.ChatHistory[1].Message != "bad" {
		t.Fatalf("history %+v", rj.ChatHistory)
	}
}

// TestNullOptionalFieldsAreAbsent: a browser app written for the Node
// client passes null for what it does not have (sendChat(text, null),
// joinRoom(id, null)), and the Node server takes it as absent: so do we,
// on the wire and in the HTTP API.
func TestNullOptionalFieldsAreAbsent(t *testing.T) {
	_, url := startServer(t, nil)
	c := livesynctest.Dial(t, url)
	c.SendRaw(`{"type":"join_room","payload":{"roomId":"r","presence":null}}`)
	var rj protocol.RoomJoinedPayload
	c.Expect(protocol.MsgRoomJoined, &rj)
	c.SendRaw(`{"type":"send_chat","payload":{"message":"m","metadata":null}}`)
	var m protocol.StoredChatMessage
	c.Expect(protocol.MsgChatMessage, &m)
	if m.Message != "m" || m.Metadata != nil {
		t.Fatalf("chat with null metadata: %+v, want the message without metadata", m)
	}
}

// A NUL in what a message is stored with but the client did not type (a
// user id from OnAuth or a token) is refused up front with
// INVALID_PAYLOAD, through the API too, never failing the commit it
// would share with other members' messages, which all get through.
func TestNULUserIDFailsOnlyItsOwnChat(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: usersByQuery}, testAPIKey)
	bad := livesynctest.Dial(t, o.ws+"?u=a%00b")
	good := livesynctest.Dial(t, o.ws+"?u=bob")
	bad.Join("r", nil)
	good.Join("r", nil)
	bad.Expect(protocol.MsgPresenceUpdated, nil)
	const n = 15
	for i := range n {
		bad.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprint("bad ", i)})
		good.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprint("good ", i)})
	}
	got := 0
	good.Until("good's messages", func() bool { return got == n }, func(env protocol.Envelope) {
		switch env.Type {
		case protocol.MsgChatMessage:
			got++
		default:
			t.Fatalf("good got %s %s", env.Type, env.Payload)
		}
	})
	for range n { // between good's messages, which it hears
		var e protocol.ErrorPayload
		json.Unmarshal(bad.NextOf(protocol.MsgError).Payload, &e)
		if e.Code != protocol.CodeInvalidPayload || !strings.Contains(e.Message, "user id") {
			t.Fatalf("error %+v, want INVALID_PAYLOAD naming the user id", e)
		}
	}
	o.api(t, http.MethodPost, roomPath("r", "/chat"), `{"message":"hi","userId":"a\u0000b"}`).wantError(t, http.StatusBadRequest, protocol.CodeInvalidPayload)
}

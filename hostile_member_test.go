package livesync

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// Tests that one member cannot harm the others: by the size of what it
// leaves in a room, by malformed chat, by flooding the store with reads,
// by racing its own announcement, or by chatting through a shutdown.

// TestJoinerSurvivesALargeSnapshot: a member that fills the history with
// maximum-size chat, or members with maximum-size presence, make the
// room_joined snapshot larger than a joiner's send queue; the joiner is
// admitted all the same, and the history it gets is bounded by bytes;
// so is a history page it asks for, as large as its queue or larger.
func TestJoinerSurvivesALargeSnapshot(t *testing.T) {
	const queue = 64 << 10
	const historyBytes = 100 << 10
	_, url := startServer(t, &Options{Limits: Limits{SendQueueBytes: queue, HistoryBytes: historyBytes, ChatRate: 1e6, ChatBurst: 1e6}})

	t.Run("chat", func(t *testing.T) {
		big := livesynctest.Dial(t, url)
		big.Join("chat", nil)
		text := strings.Repeat("m", 16<<10)
		meta := map[string]string{"pad": strings.Repeat("x", 8<<10-16)}
		const n = 12 // 12 × 24 KiB: beyond both the queue and HistoryBytes
		for range n {
			big.Send(protocol.MsgSendChat, map[string]any{"message": text, "metadata": meta})
			big.Expect(protocol.MsgChatMessage, nil)
		}
		joiner := livesynctest.Dial(t, url)
		joiner.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "chat"})
		var rj struct {
			ChatHistory json.RawMessage `json:"chatHistory"`
		}
		joiner.Expect(protocol.MsgRoomJoined, &rj)
		if len(rj.ChatHistory) > historyBytes {
			t.Fatalf("history of %d bytes, limit %d", len(rj.ChatHistory), historyBytes)
		}
		var msgs []protocol.StoredChatMessage
		if err := json.Unmarshal(rj.ChatHistory, &msgs); err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 || len(msgs) == n {
			t.Fatalf("history holds %d of %d messages; want the newest that fit", len(msgs), n)
		}
		// Still connected and served.
		big.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "after"})
		joiner.Expect(protocol.MsgBroadcastEventRelay, nil)
		// A page it asks for is as large as HistoryBytes, over its queue:
		// an answer, not a backlog it let pile up.
		for range 2 {
			joiner.Send(protocol.MsgGetChatHistory, map[string]any{"limit": 100})
			env := joiner.Expect(protocol.MsgChatHistory, nil)
			if len(env.Payload) < queue || len(env.Payload) > historyBytes+1024 {
				t.Fatalf("history page of %d bytes; want more than the queue's %d, within %d", len(env.Payload), queue, historyBytes)
			}
		}
		big.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "after the pages"})
		joiner.Expect(protocol.MsgBroadcastEventRelay, nil)
	})

	t.Run("presence", func(t *testing.T) {
		presence := map[string]string{"p": strings.Repeat("x", 8<<10-16)}
		var members []*livesynctest.Client
		for range 12 { // 12 × 8 KiB: beyond the queue
			c := livesynctest.Dial(t, url)
			c.Join("presence", presence)
			members = append(members, c)
		}
		joiner := livesynctest.Dial(t, url)
		rj := joiner.Join("presence", nil)
		if len(rj.Presence) != len(members)+1 {
			t.Fatalf("snapshot lists %d members, want %d", len(rj.Presence), len(members)+1)
		}
		members[0].Send(protocol.MsgBroadcastEvent, map[string]any{"event": "after"})
		joiner.NextOf(protocol.MsgBroadcastEventRelay)
	})
}

// TestHistoryPagesAreBoundedByBytes: a get_chat_history page holds at most
// HistoryBytes, says hasMore when it left messages out, and paging back
// from its oldest message reaches every message once.
func TestHistoryPagesAreBoundedByBytes(t *testing.T) {
	const historyBytes = 40 << 10
	_, url := startServer(t, &Options{Limits: Limits{HistoryBytes: historyBytes, ChatRate: 1e6, ChatBurst: 1e6}})
	c := livesynctest.Dial(t, url)
	c.Join("r", nil)
	const n = 10
	for i := range n {
		c.Send(protocol.MsgSendChat, map[string]any{"message": strings.Repeat(string(rune('a'+i)), 10<<10)})
		c.Expect(protocol.MsgChatMessage, nil)
	}
	seen := map[string]bool{}
	before := ""
	for page := 0; ; page++ {
		if page > n {
			t.Fatal("paging does not end")
		}
		c.Send(protocol.MsgGetChatHistory, map[string]any{"limit": 100, "before": before})
		env := c.Expect(protocol.MsgChatHistory, nil)
		var h struct {
			Messages json.RawMessage `json:"messages"`
			HasMore  bool            `json:"hasMore"`
		}
		json.Unmarshal(env.Payload, &h)
		if len(h.Messages) > historyBytes {
			t.Fatalf("page of %d bytes, limit %d", len(h.Messages), historyBytes)
		}
		var msgs []protocol.StoredChatMessage
		json.Unmarshal(h.Messages, &msgs)
		for _, m := range msgs {
			if seen[m.ID] {
				t.Fatalf("message %s twice", m.ID)
			}
			seen[m.ID] = true
		}
		if !h.HasMore {
			break
		}
		before = msgs[0].ID
	}
	if len(seen) != n {
		t.Fatalf("paged through %d messages, want %d", len(seen), n)
	}
}

// TestSendChatNeedsAStringMessage: send_chat without a string message, or
// with U+0000 in it, is refused with INVALID_PAYLOAD naming the field, and
// nothing is stored or broadcast.
func TestSendChatNeedsAStringMessage(t *testing.T) {
	store := chat.NewMemoryStore(nil)
	_, url := startServer(t, &Options{Store: store})
	a, b := livesynctest.Pair(t, url, "r")
	for _, payload := range []string{`{}`, `{"message":null}`, `{"metadata":{"k":1}}`, `{"message":"a\u0000b"}`} {
		a.SendRaw(`{"type":"send_chat","payload":` + payload + `}`)
		if e := a.ExpectError(protocol.CodeInvalidPayload); !strings.Contains(e.Message, `"message"`) {
			t.Errorf("%s: error %q does not name the field", payload, e.Message)
		}
	}
	a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "marker"})
	b.Expect(protocol.MsgBroadcastEventRelay, nil) // no chat_message before it
	h, err := store.History(context.Background(), "r", 10, 0)
	if err != nil || len(h) != 0 {
		t.Fatalf("stored %v (%v)", h, err)
	}
	// An empty string is a message.
	a.Send(protocol.MsgSendChat, map[string]any{"message": ""})
	b.Expect(protocol.MsgChatMessage, nil)
}

// TestHistoryRequestsAreRateLimited: get_chat_history is a store read; a
// client asking in a loop is refused with RATE_LIMITED, and the others'
// chat keeps flowing meanwhile.
func TestHistoryRequestsAreRateLimited(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{HistoryRate: 1, HistoryBurst: 3}})
	flooder, a, b := livesynctest.Dial(t, url), livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	flooder.Join("r", nil)
	a.Join("r", nil)
	b.Join("r", nil)
	limited := 0
	for range 20 {
		flooder.Send(protocol.MsgGetChatHistory, map[string]any{"limit": 500})
	}
	a.Send(protocol.MsgSendChat, map[string]any{"message": "still flowing"})
	for got := 0; got < 20; {
		env := flooder.Next()
		switch env.Type {
		case protocol.MsgChatHistory:
			got++
		case protocol.MsgError:
			var e protocol.ErrorPayload
			json.Unmarshal(env.Payload, &e)
			if e.Code != protocol.CodeRateLimited {
				t.Fatalf("error %+v", e)
			}
			limited++
			got++
		}
	}
	if limited < 20-3-1 {
		t.Fatalf("%d of 20 requests refused, want at least 16", limited)
	}
	b.NextOf(protocol.MsgChatMessage)
}

// TestNewcomerIsAnnouncedBeforeItsEvents: whatever a newcomer sends
// reaches no member before the presence_updated announcing it, even when
// it sends at once, without waiting for room_joined, in a small room and
// in one large enough that its flushes wait.
func TestNewcomerIsAnnouncedBeforeItsEvents(t *testing.T) {
	_, url := startServer(t, nil)
	for _, size := range []int{1, largeRoom + 2} {
		announcedFirst(t, fmt.Sprint("r", size), size, url, url)
	}
}

// announcedFirst has newcomers join room on newcomerURL, each sending an
// event (and every other one a chat message) at once, and checks that
// none of it reaches the watchers, size members on watcherURL, before the
// newcomer's announcement.
func announcedFirst(t *testing.T, room string, size int, watcherURL, newcomerURL string) {
	t.Helper()
	watchers := make([]*livesynctest.Client, size)
	views := make([]map[string]bool, size) // every member ever announced
	for i := range watchers {
		watchers[i] = livesynctest.Dial(t, watcherURL)
		rj := watchers[i].Join(room, nil)
		views[i] = map[string]bool{}
		for id := range rj.Presence {
			views[i][id] = true
		}
	}
	for round := range 60 {
		nc := livesynctest.Dial(t, newcomerURL)
		nc.SendRaw(`{"type":"join_room","payload":{"roomId":"` + room + `"}}`)
		last := protocol.MsgBroadcastEventRelay // what the watchers wait for
		if round%3 != 2 {
			nc.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "first"})
		}
		if round%3 != 0 { // with an event first, and alone
			nc.Send(protocol.MsgSendChat, map[string]any{"message": "first"})
		}
		if round%3 == 2 {
			last = protocol.MsgChatMessage
		}
		var rj protocol.RoomJoinedPayload
		nc.Expect(protocol.MsgRoomJoined, &rj)
		for i, w := range watchers {
			for seen := false; !seen; {
				env := w.Next()
				switch env.Type {
				case protocol.MsgPresenceUpdated:
					var pu protocol.PresenceUpdatedPayload
					json.Unmarshal(env.Payload, &pu)
					for _, e := range pu.Joined {
						views[i][e.ConnectionID] = true
					}
				case protocol.MsgBroadcastEventRelay, protocol.MsgChatMessage:
					var from struct {
						ConnectionID string `json:"connectionId"`
					}
					json.Unmarshal(env.Payload, &from)
					if !views[i][from.ConnectionID] {
						t.Fatalf("room of %d, round %d: %s from %s before its announcement", size, round, env.Type, from.ConnectionID)
					}
					seen = from.ConnectionID == rj.ConnectionID && env.Type == last
				}
			}
		}
		nc.WS.Close()
	}
}

// slowStore stores each append after a pause, so that chat is still
// queued when the server shuts down, and counts what it stored. It stores
// one message at a time (no AppendBatch).
type slowStore struct {
	chat.Store
	pause  time.Duration
	mu     sync.Mutex
	stored int
}

func (s *slowStore) Append(ctx context.Context, m chat.Message) (protocol.StoredChatMessage, error) {
	time.Sleep(s.pause)
	out, err := s.Store.Append(ctx, m)
	if err == nil {
		s.mu.Lock()
		s.stored++
		s.mu.Unlock()
	}
	return out, err
}

func (s *slowStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored
}

// TestShutdownDeliversStoredChat: every message stored before the close
// reaches the members still connected, its sender included, before their
// 1001; every other message is answered CHAT_UNAVAILABLE. Serve then
// returns http.ErrServerClosed, and the store is closed.
func TestShutdownDeliversStoredChat(t *testing.T) {
	store := &slowStore{Store: chat.NewMemoryStore(nil), pause: 5 * time.Millisecond}
	s := newTestServer(t, &Options{Store: store, Limits: Limits{ChatRate: 1e6, ChatBurst: 1e6}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	url := "ws://" + ln.Addr().String() + "/live"
	sender, other := livesynctest.Pair(t, url, "r")
	const n = 100
	for i := range n {
		sender.Send(protocol.MsgSendChat, map[string]any{"message": strings.Repeat("x", i%7)})
	}
	livesynctest.WaitFor(t, "some chat to be stored", func() bool { return store.count() >= 5 })
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stored := store.count() // what was queued before Shutdown is stored
	count := func(c *livesynctest.Client) (chats, refused int) {
		tally := func(env protocol.Envelope) {
			switch env.Type {
			case protocol.MsgChatMessage:
				chats++
			case protocol.MsgError:
				refused++
			}
		}
		timer := time.NewTimer(livesynctest.Timeout)
		defer timer.Stop()
		for {
			select {
			case env, ok := <-c.In():
				if ok {
					tally(env)
					continue
				}
				if ce, ok := c.Err().(*websocket.CloseError); !ok || ce.Code != websocket.CloseGoingAway {
					t.Errorf("closed with %v, want 1001", c.Err())
				}
				return chats, refused
			case <-timer.C:
				t.Error("not closed")
				return chats, refused
			}
		}
	}
	var wg sync.WaitGroup
	var sChats, sRefused, oChats int
	wg.Go(func() { sChats, sRefused = count(sender) })
	wg.Go(func() { oChats, _ = count(other) })
	wg.Wait()
	if sChats != stored || oChats != stored {
		t.Fatalf("%d messages stored; the sender got %d, the other member %d", stored, sChats, oChats)
	}
	if sChats+sRefused != n {
		t.Fatalf("the sender got %d messages and %d refusals for %d sent", sChats, sRefused, n)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := s.store.History(ctx, "r", 10, 0); err == nil {
		t.Fatal("store still open after Shutdown")
	}
}

// hangingStore never answers an append before its context ends, and
// records each append's deadline.
type hangingStore struct {
	*chat.MemoryStore
	mu        sync.Mutex
	deadlines map[string]time.Time // by message text
}

func (h *hangingStore) Append(ctx context.Context, m chat.Message) (protocol.StoredChatMessage, error) {
	d, _ := ctx.Deadline()
	h.mu.Lock()
	h.deadlines[m.Message] = d
	h.mu.Unlock()
	<-ctx.Done()
	return protocol.StoredChatMessage{}, ctx.Err()
}

// TestChatDeadlineCountsFromArrival: a message queued behind another that
// hangs in the store is answered StoreTimeout after it was sent, not
// StoreTimeout after the store got to it.
func TestChatDeadlineCountsFromArrival(t *testing.T) {
	const timeout = 2 * time.Second
	store := &hangingStore{MemoryStore: chat.NewMemoryStore(nil), deadlines: map[string]time.Time{}}
	_, url := startServer(t, &Options{Store: store, Limits: Limits{StoreTimeout: timeout}})
	c := livesynctest.Dial(t, url)
	c.Join("r", nil)
	c.Send(protocol.MsgSendChat, map[string]any{"message": "first"})
	livesynctest.WaitFor(t, "the first message to reach the store", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return !store.deadlines["first"].IsZero()
	})
	time.Sleep(timeout / 2)
	sent := time.Now()
	c.Send(protocol.MsgSendChat, map[string]any{"message": "second"})
	c.ExpectError(protocol.CodeChatUnavailable)
	c.ExpectError(protocol.CodeChatUnavailable)
	store.mu.Lock()
	d := store.deadlines["second"]
	store.mu.Unlock()
	// Queued behind the first until it failed, the second is given what
	// is left of its own StoreTimeout (or is answered without a store
	// call); before, it got a whole StoreTimeout of its own from then on.
	if !d.IsZero() && d.After(sent.Add(timeout+timeout/3)) {
		t.Fatalf("the second message's store deadline is %v after it was sent, StoreTimeout is %v", d.Sub(sent), timeout)
	}
}

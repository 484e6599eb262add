package livesync

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

func TestBadInputGetsErrorsAndHarmsNobody(t *testing.T) {
	_, url := startServer(t, nil)
	bad, other := dial(t, url), dial(t, url)
	other.join("r", nil)

	notInRoom := []struct{ name, frame, code string }{
		{"not JSON", `{"type":`, protocol.CodeInvalidJSON},
		{"not an object", `[1,2]`, protocol.CodeInvalidMessage},
		{"type not a string", `{"type":5}`, protocol.CodeInvalidMessage},
		{"no type", `{"payload":{}}`, protocol.CodeInvalidMessage},
		{"unknown type", `{"type":"explode","payload":{}}`, protocol.CodeInvalidMessage},
		{"join without payload", `{"type":"join_room"}`, protocol.CodeInvalidPayload},
		{"payload not an object", `{"type":"join_room","payload":"r"}`, protocol.CodeInvalidPayload},
		{"roomId missing", `{"type":"join_room","payload":{}}`, protocol.CodeInvalidPayload},
		{"roomId empty", `{"type":"join_room","payload":{"roomId":""}}`, protocol.CodeInvalidPayload},
		{"roomId not a string", `{"type":"join_room","payload":{"roomId":42}}`, protocol.CodeInvalidPayload},
		{"roomId too long", `{"type":"join_room","payload":{"roomId":"` + strings.Repeat("a", 257) + `"}}`, protocol.CodeInvalidPayload},
		{"roomId control char", `{"type":"join_room","payload":{"roomId":"a\u0000b"}}`, protocol.CodeInvalidPayload},
		{"presence not an object", `{"type":"join_room","payload":{"roomId":"r","presence":[1]}}`, protocol.CodeInvalidPayload},
		{"presence too large", `{"type":"join_room","payload":{"roomId":"r","presence":{"a":"` + strings.Repeat("x", 9000) + `"}}}`, protocol.CodeMessageTooLarge},
		{"event before joining", `{"type":"broadcast_event","payload":{"event":"e"}}`, protocol.CodeNotInRoom},
		{"chat before joining", `{"type":"send_chat","payload":{"message":"m"}}`, protocol.CodeNotInRoom},
		{"presence before joining", `{"type":"update_presence","payload":{"presence":{}}}`, protocol.CodeNotInRoom},
		{"leave before joining", `{"type":"leave_room"}`, protocol.CodeNotInRoom},
	}
	for _, tc := range notInRoom {
		bad.sendRaw(tc.frame)
		if e := bad.expectError(tc.code); e.Message == "" {
			t.Errorf("%s: empty error message", tc.name)
		}
	}
	if err := bad.ws.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	bad.expectError(protocol.CodeInvalidMessage)

	bad.join("r", nil)
	other.expect(protocol.MsgPresenceUpdated, nil)
	inRoom := []struct{ name, frame, code, field string }{
		{"event not a string", `{"type":"broadcast_event","payload":{"event":7}}`, protocol.CodeInvalidPayload, "event"},
		{"event missing", `{"type":"broadcast_event","payload":{}}`, protocol.CodeInvalidPayload, "event"},
		{"message not a string", `{"type":"send_chat","payload":{"message":{}}}`, protocol.CodeInvalidPayload, "message"},
		{"metadata not an object", `{"type":"send_chat","payload":{"message":"m","metadata":"x"}}`, protocol.CodeInvalidPayload, "metadata"},
		{"chat too large", `{"type":"send_chat","payload":{"message":"` + strings.Repeat("x", 16<<10+1) + `"}}`, protocol.CodeMessageTooLarge, "message"},
		{"presence missing", `{"type":"update_presence","payload":{}}`, protocol.CodeInvalidPayload, "presence"},
		{"presence not an object", `{"type":"update_presence","payload":{"presence":"x"}}`, protocol.CodeInvalidPayload, "presence"},
		{"presence null", `{"type":"update_presence","payload":{"presence":null}}`, protocol.CodeInvalidPayload, "presence"},
		{"leave another room", `{"type":"leave_room","payload":{"roomId":"elsewhere"}}`, protocol.CodeNotInRoom, ""},
	}
	for _, tc := range inRoom {
		bad.sendRaw(tc.frame)
		e := bad.expectError(tc.code)
		if tc.field != "" && !strings.Contains(e.Message, tc.field) {
			t.Errorf("%s: message %q does not name %q", tc.name, e.Message, tc.field)
		}
	}
	// Still usable, still in the room, and the other member saw none of it:
	// its next message is the event sent now.
	bad.send(protocol.MsgBroadcastEvent, map[string]any{"event": "ok"})
	var ev protocol.BroadcastEventRelayPayload
	other.expect(protocol.MsgBroadcastEventRelay, &ev)
	if ev.Event != "ok" {
		t.Fatalf("other got %+v", ev)
	}
}

func TestFrameTooLargeCloses1009(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{MaxMessageBytes: 1024}})
	c := dial(t, url)
	c.sendRaw(`{"type":"join_room","payload":{"roomId":"` + strings.Repeat("a", 2000) + `"}}`)
	if code := c.waitClosed(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close %d, want 1009", code)
	}
}

func TestRateLimits(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{EventRate: 1, EventBurst: 3, ChatRate: 1, ChatBurst: 2, MaxViolations: 5}})
	c := dial(t, url)
	c.join("r", nil)
	for range 3 {
		c.send(protocol.MsgBroadcastEvent, map[string]any{"event": "e"})
	}
	c.send(protocol.MsgBroadcastEvent, map[string]any{"event": "e"})
	c.expectError(protocol.CodeRateLimited)
	c.send(protocol.MsgSendChat, map[string]any{"message": "1"})
	c.send(protocol.MsgSendChat, map[string]any{"message": "2"})
	c.send(protocol.MsgSendChat, map[string]any{"message": "3"})
	// The refusal may overtake the stored messages: count, don't order.
	kinds := map[string]int{}
	for range 3 {
		kinds[c.next().Type]++
	}
	if kinds[protocol.MsgChatMessage] != 2 || kinds[protocol.MsgError] != 1 {
		t.Fatalf("got %v, want 2 chat messages and 1 error", kinds)
	}
	// Sustained abuse closes the connection with 1008.
	for range 5 {
		c.send(protocol.MsgBroadcastEvent, map[string]any{"event": "e"})
	}
	if code := c.waitClosed(); code != websocket.ClosePolicyViolation {
		t.Fatalf("close %d, want 1008", code)
	}
}

func TestConnectionsPerIP(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{ConnectionsPerIP: 2}})
	dial(t, url)
	b := dial(t, url)
	_, err := dialErr(t, url, nil)
	var he *httpError
	if !errorsAs(err, &he) || he.status != http.StatusTooManyRequests {
		t.Fatalf("third connection: %v, want HTTP 429", err)
	}
	b.ws.Close()
	waitFor(t, "a slot to free", func() bool {
		c, err := dialErr(t, url, nil)
		if err == nil {
			c.ws.Close()
		}
		return err == nil
	})
}

// TestRefusedConnectionHoldsItsSlot: a connection refused after the
// upgrade (here by OnAuth) counts against its address until it has ended,
// as an accepted one does; a client that never answers the close holds
// the slot for the grace period, not for nothing.
func TestRefusedConnectionHoldsItsSlot(t *testing.T) {
	_, url := startServer(t, &Options{
		Limits: Limits{ConnectionsPerIP: 1},
		OnAuth: func(*http.Request) (*UserInfo, error) { return nil, nil }, // refuses everyone
	})
	d := websocket.Dialer{HandshakeTimeout: waitTimeout}
	silent, _, err := d.Dial(url, nil) // upgraded, then sent 4401; it never reads
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, err = dialErr(t, url, nil)
	var he *httpError
	if !errorsAs(err, &he) || he.status != http.StatusTooManyRequests {
		t.Fatalf("second connection while the refused one lingers: %v, want HTTP 429", err)
	}
	silent.Close()
	waitFor(t, "the refused connection's slot to free", func() bool {
		_, err := dialErr(t, url, nil)
		return err == nil
	})
}

func errorsAs(err error, target **httpError) bool {
	he, ok := err.(*httpError)
	if ok {
		*target = he
	}
	return ok
}

// TestConvergence: many clients join and some leave concurrently; every
// remaining member's view (snapshot plus deltas) must equal the room.
func TestConvergence(t *testing.T) {
	_, url := startServer(t, nil)
	const n = 200
	clients := make([]*client, n)
	views := make([]view, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialErr(t, url, nil)
			if err != nil {
				t.Error(err)
				return
			}
			c.send(protocol.MsgJoinRoom, map[string]any{"roomId": "storm", "presence": map[string]int{"i": i}})
			clients[i] = c
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Every odd client leaves (half by leave_room, half by closing) while
	// the others are still taking in the joins.
	for i, c := range clients {
		churn(i, c)
	}
	want := map[string]bool{}
	for i, c := range clients {
		if i%2 == 1 {
			continue
		}
		var rj protocol.RoomJoinedPayload
		c.expect(protocol.MsgRoomJoined, &rj)
		c.id = rj.ConnectionID
		want[rj.ConnectionID] = true
		views[i] = view(rj.Presence)
	}
	for i, c := range clients {
		if i%2 == 1 {
			continue
		}
		v := views[i]
		deadline := time.Now().Add(waitTimeout)
		for !sameKeys(v, want) {
			if time.Now().After(deadline) {
				t.Fatalf("client %d view has %d members, want %d", i, len(v), len(want))
			}
			var pu protocol.PresenceUpdatedPayload
			c.expect(protocol.MsgPresenceUpdated, &pu)
			v.apply(t, pu)
		}
		if v[c.id].Presence == nil || string(v[c.id].Presence) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("client %d own entry %+v", i, v[c.id])
		}
	}
	// No stray delta is still on its way: after a marker event, views are
	// unchanged.
	clients[0].send(protocol.MsgBroadcastEvent, map[string]any{"event": "marker"})
	for i, c := range clients {
		if i%2 == 1 || i == 0 {
			continue
		}
		c.presenceBefore(func(pu protocol.PresenceUpdatedPayload) { views[i].apply(t, pu) })
		if !sameKeys(views[i], want) {
			t.Fatalf("client %d view changed after converging", i)
		}
	}
}

func sameKeys(v view, want map[string]bool) bool {
	if len(v) != len(want) {
		return false
	}
	for id := range want {
		if _, ok := v[id]; !ok {
			return false
		}
	}
	return true
}

func TestPresenceThrottleDeliversLatest(t *testing.T) {
	_, url := startServer(t, &Options{PresenceThrottle: 200 * time.Millisecond})
	a, b := dial(t, url), dial(t, url)
	a.join("r", nil)
	b.join("r", nil)
	a.expect(protocol.MsgPresenceUpdated, nil)
	for i := 1; i <= 20; i++ {
		b.send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"x": i}})
	}
	// The updates are coalesced; whatever arrives, the last one delivered
	// is the last one sent, and far fewer than 20 arrive.
	got := 0
	for {
		var pu protocol.PresenceUpdatedPayload
		a.expect(protocol.MsgPresenceUpdated, &pu)
		got++
		if string(pu.Updated[0].Presence) == `{"x":20}` {
			break
		}
	}
	if got > 3 {
		t.Fatalf("%d presence messages for 20 updates inside one window", got)
	}
}

// TestSlowConsumerDoesNotStallRoom: a client that never reads is cut off
// once its queue is full, and the others keep receiving.
func TestSlowConsumerDoesNotStallRoom(t *testing.T) {
	s, url := startServer(t, &Options{Limits: Limits{SendQueueBytes: 64 << 10, EventRate: 1e6, EventBurst: 1e6}})
	sender, reader := dial(t, url), dial(t, url)
	sender.join("r", nil)
	reader.join("r", nil)
	sender.expect(protocol.MsgPresenceUpdated, nil)

	// The stuck client completes the handshake and joins, then never reads.
	stuck := rawDial(t, url)
	stuck.writeText(t, `{"type":"join_room","payload":{"roomId":"r"}}`)
	sender.expect(protocol.MsgPresenceUpdated, nil)
	reader.expect(protocol.MsgPresenceUpdated, nil)

	payload := strings.Repeat("p", 4000)
	var left bool
	for i := 0; !left; i++ {
		if i > 20000 {
			t.Fatal("the stuck client was never disconnected")
		}
		sender.send(protocol.MsgBroadcastEvent, map[string]any{"event": "e", "payload": map[string]string{"p": payload}})
		reader.presenceBefore(func(pu protocol.PresenceUpdatedPayload) { left = left || len(pu.Left) == 1 })
	}
	if s.Stats().SlowConsumerDisconnects != 1 {
		t.Fatalf("slow consumers %d", s.Stats().SlowConsumerDisconnects)
	}
}

// rawConn is a WebSocket client that does nothing it is not told to: it
// answers no ping and reads nothing.
type rawConn struct {
	net.Conn
}

func rawDial(t testing.TB, url string) *rawConn {
	t.Helper()
	addr := strings.TrimPrefix(url, "ws://")
	path := addr[strings.Index(addr, "/"):]
	addr = addr[:strings.Index(addr, "/")]
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("raw handshake: %v %v", resp, err)
	}
	return &rawConn{nc}
}

// writeText sends a masked text frame.
func (c *rawConn) writeText(t testing.TB, s string) {
	t.Helper()
	p := []byte(s)
	hdr := []byte{0x81}
	switch {
	case len(p) < 126:
		hdr = append(hdr, 0x80|byte(len(p)))
	default:
		hdr = append(hdr, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	mask := []byte{1, 2, 3, 4}
	hdr = append(hdr, mask...)
	for i := range p {
		p[i] ^= mask[i%4]
	}
	if _, err := c.Write(append(hdr, p...)); err != nil {
		t.Fatal(err)
	}
}

func TestDeadPeerIsDropped(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond}})
	watcher := dial(t, url)
	watcher.join("r", nil)
	dead := rawDial(t, url)
	dead.writeText(t, `{"type":"join_room","payload":{"roomId":"r"}}`)
	var pu protocol.PresenceUpdatedPayload
	watcher.expect(protocol.MsgPresenceUpdated, &pu)
	deadID := pu.Joined[0].ConnectionID
	// The watcher's client answers pings, so only the dead peer goes.
	watcher.expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Left) != 1 || pu.Left[0] != deadID {
		t.Fatalf("got %+v, want %s to leave", pu, deadID)
	}
}

func TestShutdownClosesWith1001(t *testing.T) {
	s, err := New(&Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	url := "ws://" + ln.Addr().String() + "/live"
	a, b := dial(t, url), dial(t, url)
	a.join("r", nil)
	b.join("r", nil)
	a.expect(protocol.MsgPresenceUpdated, nil)
	a.send(protocol.MsgSendChat, map[string]any{"message": "before shutdown"})
	b.expect(protocol.MsgChatMessage, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b} {
		if code := c.waitClosed(); code != websocket.CloseGoingAway {
			t.Fatalf("close %d, want 1001", code)
		}
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := s.store.History(ctx, "r", 10, 0); err == nil {
		t.Fatal("store still open after Shutdown")
	}
}

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
	a, b := dial(t, url), dial(t, url)
	a.join("r", nil)
	b.join("r", nil)
	a.expect(protocol.MsgPresenceUpdated, nil)
	a.send(protocol.MsgSendChat, map[string]any{"message": "lost?"})
	a.expectError(protocol.CodeChatUnavailable)
	// Events still flow, and b saw no chat: its next message is the event.
	a.send(protocol.MsgBroadcastEvent, map[string]any{"event": "still-here"})
	b.expect(protocol.MsgBroadcastEventRelay, nil)
	fs.mu.Lock()
	fs.broken = false
	fs.mu.Unlock()
	a.send(protocol.MsgSendChat, map[string]any{"message": "back"})
	var m protocol.StoredChatMessage
	b.expect(protocol.MsgChatMessage, &m)
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
	a := dial(t, url)
	a.join("r", nil)
	a.send(protocol.MsgSendChat, map[string]any{"message": "in flight"})
	<-gs.entered
	a.ws.Close()
	waitFor(t, "the sender to be gone", func() bool { return s.Stats().Connections == 0 })

	b := dial(t, url)
	rj := b.join("r", nil)
	close(gs.gate)
	if len(rj.ChatHistory) == 1 && rj.ChatHistory[0].Message == "in flight" {
		return
	}
	var m protocol.StoredChatMessage
	b.expect(protocol.MsgChatMessage, &m)
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
	rj := dial(t, url).join("r", nil)
	if len(rj.ChatHistory) != 3 || string(rj.ChatHistory[0].Metadata) != `{"a":1}` ||
		rj.ChatHistory[1].Metadata != nil || rj.ChatHistory[2].Metadata != nil || rj.ChatHistory[1].Message != "bad" {
		t.Fatalf("history %+v", rj.ChatHistory)
	}
}

// TestJoinersDuringAFlushWindow: in a room large enough that presence is
// flushed after a window, members join while others update their presence,
// leave, or leave and come back on the same connection. A joiner is
// admitted at once with a snapshot that includes changes not yet flushed,
// so the next flush must tell it only what changed after that snapshot:
// every view ends equal to the room, presence included, and no delta repeats
// a join, names a member the view lacks, or is about the client itself.
func TestJoinersDuringAFlushWindow(t *testing.T) {
	_, url := startServer(t, &Options{PresenceThrottle: -1})
	type peer struct {
		c    *client
		v    view
		pres int  // the latest presence {"i": pres} it sent
		in   bool // a member, as far as the test has asked
	}
	var peers []*peer
	add := func() *peer {
		p := &peer{c: dial(t, url), pres: len(peers) * 1000}
		peers = append(peers, p)
		return p
	}
	joinMsg := func(p *peer) map[string]any {
		return map[string]any{"roomId": "window", "presence": map[string]int{"i": p.pres}}
	}
	// 20 members settle first: the room is above largeRoom from then on.
	for range 20 {
		p := add()
		p.c.send(protocol.MsgJoinRoom, joinMsg(p))
		p.in = true
	}
	for round := range 3 {
		for i, p := range peers {
			switch {
			case !p.in:
			case i%7 == 3:
				p.c.send(protocol.MsgLeaveRoom, nil)
				p.pres++
				p.c.send(protocol.MsgJoinRoom, joinMsg(p))
			case i%5 == round:
				p.c.send(protocol.MsgLeaveRoom, nil)
				p.in = false
			default:
				for range 3 {
					p.pres++
					p.c.send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"i": p.pres}})
				}
			}
			if i%3 == 0 {
				q := add()
				q.c.send(protocol.MsgJoinRoom, joinMsg(q))
				q.in = true
			}
		}
	}

	members := func() []*peer {
		var in []*peer
		for _, p := range peers {
			if p.in {
				in = append(in, p)
			}
		}
		return in
	}()
	// Each member reads until its view holds every member with its latest
	// presence; a room_joined starts its view afresh.
	read := func(p *peer) {
		env := p.c.next()
		switch env.Type {
		case protocol.MsgRoomJoined:
			var rj protocol.RoomJoinedPayload
			json.Unmarshal(env.Payload, &rj)
			p.c.id, p.v = rj.ConnectionID, view(rj.Presence)
		case protocol.MsgPresenceUpdated:
			var pu protocol.PresenceUpdatedPayload
			json.Unmarshal(env.Payload, &pu)
			for _, e := range append(pu.Joined, pu.Updated...) {
				if e.ConnectionID == p.c.id {
					t.Errorf("%s told about itself: %s", p.c.id, env.Payload)
				}
			}
			if slices.Contains(pu.Left, p.c.id) {
				t.Errorf("%s told it left: %s", p.c.id, env.Payload)
			}
			p.v.apply(t, pu)
		}
	}
	for _, p := range members {
		for p.v == nil {
			read(p)
		}
	}
	converged := func(p *peer) bool {
		if len(p.v) != len(members) {
			return false
		}
		for _, q := range members {
			// A client is not told of its own updates: its own entry
			// stays as its snapshot had it.
			if e, ok := p.v[q.c.id]; !ok || (q != p && string(e.Presence) != fmt.Sprintf(`{"i":%d}`, q.pres)) {
				return false
			}
		}
		return true
	}
	for _, p := range members {
		deadline := time.Now().Add(waitTimeout)
		for !converged(p) {
			if time.Now().After(deadline) || t.Failed() {
				t.Fatalf("%s: view of %d members does not match the room of %d", p.c.id, len(p.v), len(members))
			}
			read(p)
		}
	}
}

// TestIdleConnectionsHoldNoGoroutine: on Linux a connection that joined and
// went quiet is watched by the poller, not by a goroutine of its own.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux's")
	}
	_, url := startServer(t, nil)
	before := runtime.NumGoroutine()
	const n = 100
	for i := range n {
		rc := rawDial(t, url)
		rc.writeText(t, fmt.Sprintf(`{"type":"join_room","payload":{"roomId":"idle-%d"}}`, i%10))
		// Wait for room_joined: the join has been handled.
		rc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := rc.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the readers of idle connections to end", func() bool {
		return runtime.NumGoroutine()-before < n/4
	})
}

package livesync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// peer is a kit client that also keeps the events and chat it received.
type peer struct {
	*livesynctest.Client
	events map[string][]int // by sender connection id: the "n" of each event, in order
	chats  []protocol.StoredChatMessage
	left   map[string]int // by connection id: how often it was seen leave
}

func newPeer(t testing.TB, url string) *peer {
	return &peer{Client: livesynctest.Dial(t, url), events: map[string][]int{}}
}

// joinRoom joins room, taking the snapshot's view and history.
func (p *peer) joinRoom(room string, presence any) {
	p.T.Helper()
	rj := p.Join(room, presence)
	p.chats = append(p.chats[:0], rj.ChatHistory...)
}

// handle takes in one message: presence into the view, events and chat
// into their records; anything else fails the test.
func (p *peer) handle(env protocol.Envelope) {
	p.T.Helper()
	switch env.Type {
	case protocol.MsgPresenceUpdated:
		p.Track(env)
		var pu protocol.PresenceUpdatedPayload
		json.Unmarshal(env.Payload, &pu)
		for _, id := range pu.Left {
			if p.left == nil {
				p.left = map[string]int{}
			}
			p.left[id]++
		}
	case protocol.MsgBroadcastEventRelay:
		var ev protocol.BroadcastEventRelayPayload
		json.Unmarshal(env.Payload, &ev)
		var body struct{ N int }
		json.Unmarshal(ev.Payload, &body)
		p.events[ev.ConnectionID] = append(p.events[ev.ConnectionID], body.N)
	case protocol.MsgChatMessage:
		var m protocol.StoredChatMessage
		json.Unmarshal(env.Payload, &m)
		p.chats = append(p.chats, m)
	default:
		p.T.Errorf("%s got %s %s", p.ID, env.Type, env.Payload)
	}
}

// until handles messages until cond holds.
func (p *peer) until(what string, cond func() bool) {
	p.T.Helper()
	p.Until(what, cond, p.handle)
}

// sees waits until the peer's view holds exactly ids.
func (p *peer) sees(ids ...string) {
	p.T.Helper()
	p.until(fmt.Sprintf("view %v", ids), func() bool { return p.View.Is(ids...) })
}

// event sends an event whose payload is {"n": n}.
func (p *peer) event(n int) {
	p.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "e", "payload": map[string]int{"n": n}})
}

// TestClusterPresenceEventsChat: members of one room on three nodes see
// each other join, update and leave, receive each other's events exactly
// once, and all see the chat in the order of the shared history.
func TestClusterPresenceEventsChat(t *testing.T) { forRedisModes(t, testClusterPresenceEventsChat) }

func testClusterPresenceEventsChat(t *testing.T, e *clusterEnv) {
	store := newSharedStore(t)
	urls := e.nodes(3, store)
	// a and a2 share a node: they get each other's traffic once, not once
	// more through Redis.
	a, a2, b, c := newPeer(t, urls[0]), newPeer(t, urls[0]), newPeer(t, urls[1]), newPeer(t, urls[2])
	a.joinRoom("room", map[string]int{"n": 1})
	b.joinRoom("room", map[string]int{"n": 2})
	c.joinRoom("room", map[string]int{"n": 3})
	a2.joinRoom("room", nil)
	peers := []*peer{a, a2, b, c}
	for _, p := range peers {
		p.sees(a.ID, a2.ID, b.ID, c.ID)
	}
	if got := string(a.View[b.ID].Presence); got != `{"n":2}` {
		t.Fatalf("a sees b's presence %s", got)
	}

	// An update on one node reaches the others.
	b.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]string{"cursor": "moved"}})
	for _, p := range []*peer{a, a2, c} {
		p.until("b's update", func() bool { return string(p.View[b.ID].Presence) == `{"cursor":"moved"}` })
	}

	// Events: each peer sends 50; everyone else gets each exactly once, in
	// order; nobody gets its own.
	const events = 50
	for i := range events {
		for _, p := range peers {
			p.event(i)
		}
	}
	for _, p := range peers {
		p.until("every event", func() bool {
			n := 0
			for _, q := range peers {
				n += len(p.events[q.ID])
			}
			return n >= (len(peers)-1)*events
		})
	}
	// The chat that follows is a marker: anything duplicated would arrive
	// before it.
	chatsEach := 20
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			for i := range chatsEach {
				p.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprintf("%s-%d", p.ID, i)})
			}
		})
	}
	wg.Wait()
	for _, p := range peers {
		p.until("every chat", func() bool { return len(p.chats) >= len(peers)*chatsEach })
	}
	for _, p := range peers {
		if n := len(p.events[p.ID]); n != 0 {
			t.Errorf("%s received %d of its own events", p.ID, n)
		}
		for _, q := range peers {
			if q == p {
				continue
			}
			want := make([]int, events)
			for i := range want {
				want[i] = i
			}
			if !slices.Equal(p.events[q.ID], want) {
				t.Errorf("%s received %s's events %v, want each of 0..%d once, in order", p.ID, q.ID, p.events[q.ID], events-1)
			}
		}
	}
	history, err := store.History(context.Background(), "room", 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if len(p.chats) != len(history) {
			t.Fatalf("%s received %d chat messages, history has %d", p.ID, len(p.chats), len(history))
		}
		for i := range history {
			if p.chats[i].ID != history[i].ID {
				t.Fatalf("%s: chat %d is %s (%q), history has %s (%q): not the store's order", p.ID, i, p.chats[i].ID, p.chats[i].Message, history[i].ID, history[i].Message)
			}
		}
	}

	// A joiner anywhere gets every node's members and the shared history.
	d := newPeer(t, urls[1])
	d.joinRoom("room", nil)
	d.sees(a.ID, a2.ID, b.ID, c.ID, d.ID)
	if len(d.chats) != len(history) {
		t.Fatalf("joiner's history has %d messages, want %d", len(d.chats), len(history))
	}

	// Leaving, by leave_room or by disconnecting, reaches every node.
	c.Send(protocol.MsgLeaveRoom, nil)
	d.WS.Close()
	a.sees(a.ID, a2.ID, b.ID)
	b.sees(a.ID, a2.ID, b.ID)
}

// TestClusterNewcomerIsAnnouncedFirst: a newcomer on one node is
// announced to the members on another before its first event reaches
// them.
func TestClusterNewcomerIsAnnouncedFirst(t *testing.T) {
	forRedisModes(t, testClusterNewcomerIsAnnouncedFirst)
}

func testClusterNewcomerIsAnnouncedFirst(t *testing.T, e *clusterEnv) {
	urls := e.nodes(2, newSharedStore(t))
	for _, size := range []int{1, largeRoom + 2} {
		announcedFirst(t, fmt.Sprint("r", size), size, urls[0], urls[1])
	}
}

// TestClusterConvergence: 300 clients spread over three nodes join one
// room at once while a quarter leave and a quarter disconnect; every
// remaining member's view (snapshot plus deltas) converges to the room's
// true membership, with no member missing or announced twice.
func TestClusterConvergence(t *testing.T) { forRedisModes(t, testClusterConvergence) }

func testClusterConvergence(t *testing.T, e *clusterEnv) {
	store := newSharedStore(t)
	urls := e.nodes(3, store)
	const n = 300
	peers := make([]*peer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := livesynctest.TryDial(t, urls[i%3], nil)
			if err != nil {
				t.Error(err)
				return
			}
			c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "storm", "presence": map[string]int{"i": i}})
			peers[i] = &peer{Client: c, events: map[string][]int{}}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, p := range peers {
		churn(i, p.Client)
	}
	var stay []*peer
	var want []string
	for i, p := range peers {
		if i%2 == 1 {
			continue
		}
		p.ExpectJoined()
		want = append(want, p.ID)
		stay = append(stay, p)
	}
	for _, p := range stay {
		p.until("convergence", func() bool { return p.View.Is(want...) })
	}
	// No stray delta is still on its way: one member per node sends a
	// marker event, published after every change that node announced;
	// once a member has all three, its view is still the room.
	markers := stay[:3]
	for _, m := range markers {
		m.event(-1)
	}
	for _, p := range stay {
		p.until("the markers", func() bool {
			got := 0
			for _, m := range markers {
				if m != p && len(p.events[m.ID]) > 0 {
					got++
				}
			}
			return got == len(markers)-boolInt(slices.Contains(markers, p))
		})
		if !p.View.Is(want...) {
			t.Fatalf("%s view changed after converging: %d members, want %d", p.ID, len(p.View), len(want))
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// countingHandler counts log records by message, and passes them on.
type countingHandler struct {
	slog.Handler
	mu    *sync.Mutex
	count map[string]int
}

func newCountingLogger() (*slog.Logger, func(substr string) int) {
	h := &countingHandler{Handler: discardLogger().Handler(), mu: &sync.Mutex{}, count: map[string]int{}}
	return slog.New(h), func(substr string) int {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for msg, c := range h.count {
			if strings.Contains(msg, substr) {
				n += c
			}
		}
		return n
	}
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.count[r.Message]++
	h.mu.Unlock()
	return nil
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler         { return h }

// TestClusterRedisOutage: Redis goes away during traffic (proxies between
// the nodes and Redis, or each of its shards, cut every connection) and
// comes back without its data. Meanwhile every node keeps serving its own
// members, reports the outage once (once per shard) and through Healthy,
// and piles up nothing; afterwards presence is resynchronised and views
// converge cluster-wide again.
func TestClusterRedisOutage(t *testing.T) { forRedisModes(t, testClusterRedisOutage) }

func testClusterRedisOutage(t *testing.T, e *clusterEnv) {
	proxy := e.link()
	store := newSharedStore(t)
	var (
		srvs   []*Server
		urls   []string
		counts []func(string) int
	)
	for range 3 {
		log, count := newCountingLogger()
		s, url := e.node(proxy.Addr(), store, log)
		srvs, urls, counts = append(srvs, s), append(urls, url), append(counts, count)
	}
	a, b, c := newPeer(t, urls[0]), newPeer(t, urls[1]), newPeer(t, urls[2])
	a2 := newPeer(t, urls[0])
	for _, p := range []*peer{a, a2, b, c} {
		p.joinRoom("r", nil)
	}
	for _, p := range []*peer{a, a2, b, c} {
		p.sees(a.ID, a2.ID, b.ID, c.ID)
	}

	proxy.Cut()
	e.wipe() // and Redis lost everything
	for i, s := range srvs {
		livesynctest.WaitFor(t, fmt.Sprintf("node %d to notice the outage", i), func() bool { return s.broker.Healthy() != nil })
	}
	if err := srvs[0].Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "broker") {
		t.Errorf("Ready during the outage: %v, want the broker named", err)
	}
	goroutines := runtime.NumGoroutine()

	// Local service goes on: events, chat and presence between members of
	// one node; heavy traffic queues nothing up.
	for i := range 2000 {
		a.event(i)
	}
	a2.until("a's events", func() bool { return len(a2.events[a.ID]) == 2000 })
	a.Send(protocol.MsgSendChat, map[string]any{"message": "during the outage"})
	a.until("own chat", func() bool { return len(a.chats) == 1 })
	a2.until("a's chat", func() bool { return len(a2.chats) == 1 })
	if grown := runtime.NumGoroutine() - goroutines; grown > 50 {
		t.Errorf("%d more goroutines after traffic during the outage", grown)
	}
	// Membership changes during the outage: one joins on node 0, one
	// leaves on node 2... (b stays, c leaves), one joins on node 1.
	a3 := newPeer(t, urls[0])
	a3.joinRoom("r", nil)
	c.Send(protocol.MsgLeaveRoom, nil)
	b2 := newPeer(t, urls[1])
	b2.joinRoom("r", nil)

	proxy.Restore()
	for i, s := range srvs {
		livesynctest.WaitFor(t, fmt.Sprintf("node %d to recover", i), func() bool { return s.broker.Healthy() == nil })
	}
	if err := srvs[0].Ready(context.Background()); err != nil {
		t.Errorf("Ready after the outage: %v", err)
	}
	members := []string{a.ID, a2.ID, a3.ID, b.ID, b2.ID}
	for _, p := range []*peer{a, a2, a3, b, b2} {
		p.sees(members...)
	}
	// Redis came back empty, and each node re-registered its members when
	// it saw it again: nobody was told that those who stayed had left.
	for _, p := range []*peer{a, a2, b} {
		for _, id := range []string{a.ID, a2.ID, b.ID} {
			if p.left[id] != 0 {
				t.Errorf("%s was told %s left, %d times; it never did", p.ID, id, p.left[id])
			}
		}
	}
	outage, times := e.outageLogs()
	for i, count := range counts {
		if n := count(outage); n != times {
			t.Errorf("node %d logged %q %d times, want %d", i, outage, n, times)
		}
	}

	// The cluster works again: an event crosses nodes.
	b2.event(7)
	a3.until("b2's event", func() bool { return len(a3.events[b2.ID]) == 1 })
}

// TestClusterPartitionedNode: one node loses Redis for longer than the
// node TTL. The others declare it dead and its members leave their views;
// it keeps serving its own members; when it is back it re-registers them
// and everyone converges, including on what changed meanwhile.
func TestClusterPartitionedNode(t *testing.T) { forRedisModes(t, testClusterPartitionedNode) }

func testClusterPartitionedNode(t *testing.T, e *clusterEnv) {
	store := newSharedStore(t)
	var urls []string
	cut := e.link()
	var lost *Server
	for i := range 3 {
		addr := e.addr
		if i == 2 {
			addr = cut.Addr()
		}
		s, url := e.node(addr, store, nil)
		urls = append(urls, url)
		lost = s
	}
	a, a2, b, c, c2 := newPeer(t, urls[0]), newPeer(t, urls[0]), newPeer(t, urls[1]), newPeer(t, urls[2]), newPeer(t, urls[2])
	all := []*peer{a, a2, b, c, c2}
	for _, p := range all {
		p.joinRoom("r", nil)
	}
	for _, p := range all {
		p.sees(a.ID, a2.ID, b.ID, c.ID, c2.ID)
	}

	cut.Cut()
	livesynctest.WaitFor(t, "the node to notice", func() bool { return lost.broker.Healthy() != nil })
	// The others sweep its members once its heartbeat expires.
	a.sees(a.ID, a2.ID, b.ID)
	b.sees(a.ID, a2.ID, b.ID)
	// It still serves its own members.
	c.event(1)
	c2.until("c's event", func() bool { return len(c2.events[c.ID]) == 1 })
	// Changes on both sides of the partition.
	a2.Send(protocol.MsgLeaveRoom, nil)
	c2.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"during": 1}})
	a.sees(a.ID, b.ID)
	b.sees(a.ID, b.ID)

	cut.Restore()
	for _, p := range []*peer{a, b, c} {
		p.sees(a.ID, b.ID, c.ID, c2.ID)
	}
	for _, p := range []*peer{a, b} {
		p.until("c2's update", func() bool { return string(p.View[c2.ID].Presence) == `{"during":1}` })
	}
	c2.sees(a.ID, b.ID, c.ID, c2.ID)
}

// TestClusterShutdownLeavesNoGoroutines: two nodes serve a room (joins,
// presence, events, chat across nodes), then their clients go and they
// shut down; every goroutine they started ends.
func TestClusterShutdownLeavesNoGoroutines(t *testing.T) {
	forRedisModes(t, testClusterShutdownLeavesNoGoroutines)
}

func testClusterShutdownLeavesNoGoroutines(t *testing.T, e *clusterEnv) {
	store := newSharedStore(t)
	before := runtime.NumGoroutine()
	var (
		srvs  []*Server
		https []*httptest.Server
		peers []*peer
	)
	for range 2 {
		s, err := New(e.nodeOptions(e.addr, store, nil))
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s.Handler())
		srvs, https = append(srvs, s), append(https, ts)
		url := "ws" + strings.TrimPrefix(ts.URL, "http") + s.opts.Path
		for range 2 {
			peers = append(peers, newPeer(t, url))
		}
	}
	ids := make([]string, len(peers))
	for i, p := range peers {
		p.joinRoom("r", nil)
		ids[i] = p.ID
	}
	for _, p := range peers {
		p.sees(ids...)
	}
	peers[0].event(1)
	peers[3].Send(protocol.MsgSendChat, map[string]any{"message": "bye"})
	for _, p := range peers {
		p.until("the chat", func() bool { return len(p.chats) == 1 })
	}
	for _, p := range peers {
		p.WS.Close()
	}
	for i, s := range srvs {
		ctxShutdown(t, s)
		https[i].Close()
	}
	livesynctest.WaitFor(t, "the nodes' goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

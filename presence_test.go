package livesync

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// Tests of presence: every member's view (snapshot plus deltas) ends equal
// to the room, however joins, leaves and updates interleave, and throttled
// updates deliver the latest.

// TestConvergence: many clients join and some leave concurrently; every
// remaining member's view (snapshot plus deltas) must equal the room.
func TestConvergence(t *testing.T) {
	_, url := startServer(t, nil)
	const n = 200
	clients := make([]*livesynctest.Client, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := livesynctest.TryDial(t, url, nil)
			if err != nil {
				t.Error(err)
				return
			}
			c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "storm", "presence": map[string]int{"i": i}})
			clients[i] = c
		})
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
	var want []string
	for i, c := range clients {
		if i%2 == 0 {
			want = append(want, c.ExpectJoined().ConnectionID)
		}
	}
	for i, c := range clients {
		if i%2 == 1 {
			continue
		}
		c.Until(fmt.Sprintf("client %d's view of %d members", i, len(want)), func() bool { return c.View.Is(want...) }, func(env protocol.Envelope) {
			if env.Type != protocol.MsgPresenceUpdated {
				t.Fatalf("client %d got %s %s, want %s", i, env.Type, env.Payload, protocol.MsgPresenceUpdated)
			}
			c.Track(env)
		})
		if own := c.View[c.ID]; own.Presence == nil || string(own.Presence) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("client %d own entry %+v", i, own)
		}
	}
	// No stray delta is still on its way: after a marker event, views are
	// unchanged.
	clients[0].Send(protocol.MsgBroadcastEvent, map[string]any{"event": "marker"})
	for i, c := range clients {
		if i%2 == 1 || i == 0 {
			continue
		}
		c.PresenceBefore(func(pu protocol.PresenceUpdatedPayload) { c.View.Apply(t, pu) })
		if !c.View.Is(want...) {
			t.Fatalf("client %d view changed after converging", i)
		}
	}
}

func TestPresenceThrottleDeliversLatest(t *testing.T) {
	_, url := startServer(t, &Options{PresenceThrottle: 200 * time.Millisecond})
	a, b := livesynctest.Pair(t, url, "r")
	for i := 1; i <= 20; i++ {
		b.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"x": i}})
	}
	// The updates are coalesced; whatever arrives, the last one delivered
	// is the last one sent, and far fewer than 20 arrive.
	got := 0
	for {
		var pu protocol.PresenceUpdatedPayload
		a.Expect(protocol.MsgPresenceUpdated, &pu)
		got++
		if string(pu.Updated[0].Presence) == `{"x":20}` {
			break
		}
	}
	if got > 3 {
		t.Fatalf("%d presence messages for 20 updates inside one window", got)
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
		c    *livesynctest.Client
		pres int  // the latest presence {"i": pres} it sent
		in   bool // a member, as far as the test has asked
	}
	var peers []*peer
	add := func() *peer {
		p := &peer{c: livesynctest.Dial(t, url), pres: len(peers) * 1000}
		peers = append(peers, p)
		return p
	}
	joinMsg := func(p *peer) map[string]any {
		return map[string]any{"roomId": "window", "presence": map[string]int{"i": p.pres}}
	}
	// 20 members settle first: the room is above largeRoom from then on.
	for range 20 {
		p := add()
		p.c.Send(protocol.MsgJoinRoom, joinMsg(p))
		p.in = true
	}
	for round := range 3 {
		for i, p := range peers {
			switch {
			case !p.in:
			case i%7 == 3:
				p.c.Send(protocol.MsgLeaveRoom, nil)
				p.pres++
				p.c.Send(protocol.MsgJoinRoom, joinMsg(p))
			case i%5 == round:
				p.c.Send(protocol.MsgLeaveRoom, nil)
				p.in = false
			default:
				for range 3 {
					p.pres++
					p.c.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"i": p.pres}})
				}
			}
			if i%3 == 0 {
				q := add()
				q.c.Send(protocol.MsgJoinRoom, joinMsg(q))
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
		env := p.c.Next()
		switch env.Type {
		case protocol.MsgRoomJoined:
			var rj protocol.RoomJoinedPayload
			json.Unmarshal(env.Payload, &rj)
			p.c.ID, p.c.View = rj.ConnectionID, livesynctest.View(rj.Presence)
		case protocol.MsgPresenceUpdated:
			pu := livesynctest.DecodePresence(t, env)
			for _, e := range append(pu.Joined, pu.Updated...) {
				if e.ConnectionID == p.c.ID {
					t.Errorf("%s told about itself: %s", p.c.ID, env.Payload)
				}
			}
			if slices.Contains(pu.Left, p.c.ID) {
				t.Errorf("%s told it left: %s", p.c.ID, env.Payload)
			}
			p.c.View.Apply(t, pu)
		}
	}
	for _, p := range members {
		for p.c.View == nil {
			read(p)
		}
	}
	converged := func(p *peer) bool {
		if len(p.c.View) != len(members) {
			return false
		}
		for _, q := range members {
			// A client is not told of its own updates: its own entry
			// stays as its snapshot had it.
			if e, ok := p.c.View[q.c.ID]; !ok || (q != p && string(e.Presence) != fmt.Sprintf(`{"i":%d}`, q.pres)) {
				return false
			}
		}
		return true
	}
	for _, p := range members {
		deadline := time.Now().Add(livesynctest.Timeout)
		for !converged(p) {
			if time.Now().After(deadline) || t.Failed() {
				t.Fatalf("%s: view of %d members does not match the room of %d", p.c.ID, len(p.c.View), len(members))
			}
			read(p)
		}
	}
}

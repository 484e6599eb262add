package webhook_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/webhook"
)

// roomEvents keeps the deliveries about room r, in the order received.
func roomEvents(ds []delivery, r string) []delivery {
	var out []delivery
	for _, d := range ds {
		if d.Data["roomId"] == r {
			out = append(out, d)
		}
	}
	return out
}

// A join, a chat and the leaves send the room's events in the room's
// order, each signed, with the data named as on the wire.
func TestEventsOfJoinChatLeaveInRoomOrder(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.RoomOccupied, webhook.RoomVacated,
		webhook.MemberJoined, webhook.MemberLeft, webhook.ChatMessage}}, livesync.Options{})
	a, b := n.dial(t, "ann"), n.dial(t, "bob")
	ida := a.Join("r", nil).ConnectionID
	idb := b.Join("r", nil).ConnectionID
	a.Send(protocol.MsgSendChat, map[string]any{"message": "hi", "metadata": map[string]any{"k": 1}})
	var stored protocol.StoredChatMessage
	b.Expect(protocol.MsgChatMessage, &stored)
	a.Send(protocol.MsgLeaveRoom, nil)
	b.NextOf(protocol.MsgPresenceUpdated) // a has left
	b.Close()

	got := rcv.waitN(7)
	want := []string{"room.occupied r", "member.joined " + ida, "member.joined " + idb, "chat.message " + ida,
		"member.left " + ida, "member.left " + idb, "room.vacated r"}
	for i, d := range roomEvents(got, "r") {
		who, _ := d.Data["connectionId"].(string)
		if who == "" {
			who = "r"
		}
		if s := d.Type + " " + who; s != want[i] {
			t.Fatalf("event %d: %s, want %s (all: %s)", i, s, want[i], types(got))
		}
		verify(t, &d)
		if d.Type == webhook.MemberJoined && d.Data["connectionId"] == ida && (d.Data["userId"] != "ann" || d.Data["name"] != "ANN") {
			t.Fatalf("member.joined data %v", d.Data)
		}
		if d.Type == webhook.ChatMessage {
			if d.Data["id"] != stored.ID || d.Data["message"] != "hi" || d.Data["userId"] != "ann" || d.Data["name"] != "ANN" ||
				d.Data["createdAt"] != float64(stored.CreatedAt) || fmt.Sprint(d.Data["metadata"]) != "map[k:1]" {
				t.Fatalf("chat.message data %v, stored %+v", d.Data, stored)
			}
		}
	}
	if !strings.HasPrefix(string(got[0].Body), `{"type":"room.occupied","timestamp":"`) {
		t.Fatalf("body %s", got[0].Body)
	}
}

// user.online once for a user's connections; a reconnect within
// OfflineDelay sends no user.offline; the last close (here flushed by
// the server's Shutdown) sends one.
func TestUserOfflineDebounced(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.UserOnline, webhook.UserOffline},
		OfflineDelay: time.Hour}, livesync.Options{})
	tab1 := n.dial(t, "ann")
	tab2 := n.dial(t, "ann")
	rcv.waitN(1)
	tab1.Close()
	tab2.Close()
	tab3 := n.dial(t, "ann") // the reload
	tab3.Join("r", nil)      // its connection is registered before it is answered
	waitStat(t, n.wh, "nothing queued", func(s webhook.Stats) bool { return s.Depth == 0 })
	tab3.Close()
	waitConns(t, n.srv, 0)
	n.srv.Shutdown(t.Context())
	got := rcv.waitN(2)
	if ts := types(got); ts != "user.online,user.offline" {
		t.Fatalf("got %s, want one user.online and one user.offline", ts)
	}
	if got[1].Data["userId"] != "ann" {
		t.Fatalf("offline data %v", got[1].Data)
	}
}

// With a short OfflineDelay, user.offline comes by itself.
func TestUserOfflineAfterDelay(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.UserOffline}, OfflineDelay: 10 * time.Millisecond}, livesync.Options{})
	n.dial(t, "ann").Close()
	if got := rcv.waitN(1); got[0].Type != webhook.UserOffline {
		t.Fatalf("got %s", types(got))
	}
}

// A 500 is retried, under the same webhook-id, until it succeeds; a 400
// is not retried.
func TestRetryOn500NotOn400(t *testing.T) {
	rcv := newReceiver(t, func(d *delivery, seen int) int {
		switch {
		case d.Type == webhook.MemberLeft:
			return http.StatusBadRequest
		case seen < 2:
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined, webhook.MemberLeft},
		Retries: []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}}, livesync.Options{})
	c := n.dial(t, "ann")
	c.Join("r", nil)
	c.Send(protocol.MsgLeaveRoom, nil)
	s := waitStat(t, n.wh, "one delivered, one refused", func(s webhook.Stats) bool { return s.Delivered == 1 && s.Failed == 1 })
	got := rcv.waitN(4)
	if ts := types(got); ts != "member.joined,member.joined,member.joined,member.left" {
		t.Fatalf("got %s", ts)
	}
	if got[0].ID != got[1].ID || got[1].ID != got[2].ID {
		t.Fatalf("retries changed the webhook-id: %s %s %s", got[0].ID, got[1].ID, got[2].ID)
	}
	for i := range got {
		verify(t, &got[i])
	}
	if s.Retries != 2 {
		t.Fatalf("retries %d, want 2", s.Retries)
	}
}

// Retries run out: the event is given up and counted, and the room's
// next event follows.
func TestGiveUpAfterRetries(t *testing.T) {
	rcv := newReceiver(t, func(d *delivery, seen int) int {
		if d.Type == webhook.MemberJoined {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined, webhook.MemberLeft},
		Retries: []time.Duration{time.Millisecond}}, livesync.Options{})
	c := n.dial(t, "ann")
	c.Join("r", nil)
	c.Send(protocol.MsgLeaveRoom, nil)
	waitStat(t, n.wh, "given up, then delivered", func(s webhook.Stats) bool { return s.GaveUp == 1 && s.Delivered == 1 })
	if ts := types(rcv.waitN(3)); ts != "member.joined,member.joined,member.left" {
		t.Fatalf("got %s", ts)
	}
}

func waitStat(t testing.TB, w *webhook.Webhooks, what string, cond func(webhook.Stats) bool) webhook.Stats {
	t.Helper()
	var s webhook.Stats
	testsvc.WaitState(t, what, 10*time.Second, func() (bool, any) {
		s = w.Stats()
		return cond(s), s
	})
	return s
}

func waitConns(t testing.TB, s *livesync.Server, n int64) {
	t.Helper()
	testsvc.WaitState(t, fmt.Sprintf("%d connections", n), 10*time.Second, func() (bool, any) {
		c := s.Stats().Connections
		return c == n, c
	})
}

// Typing into a room's document sends one document.updated once the
// document is quiet, counting the keystrokes, not one per keystroke.
func TestDocumentUpdatedDebounced(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.DocumentUpdated}},
		livesync.Options{Hooks: livesync.Hooks{DocUpdateDelay: 100 * time.Millisecond}})
	doc := livesynctest.DialSynced(t, strings.TrimSuffix(n.url, "/live")+"/yjs/notes?user=ann")
	for i := range uint64(20) {
		doc.Write(livesynctest.SyncMsg(livesynctest.SyncUpdate, livesynctest.TextUpdate(1, i, "k")))
	}
	got := rcv.waitN(1)
	d := got[0]
	verify(t, &d)
	if d.Type != webhook.DocumentUpdated || d.Data["roomId"] != "notes" || d.Data["updates"] != float64(20) {
		t.Fatalf("got %s %v, want one document.updated for notes with 20 updates (all: %s)", d.Type, d.Data, types(got))
	}
}

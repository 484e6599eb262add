package webhook_test

import (
	"context"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/webhook"
)

// member is what the server's observers tell the webhooks of connection
// conn of user in room.
func member(room, conn, user string, first bool) livesync.MemberEvent {
	return livesync.MemberEvent{RoomID: room, ConnectionID: conn, UserID: user, First: first, At: time.Now()}
}

// online tells h that user came online, as the server does, and flushes.
func online(ctx context.Context, h livesync.Hooks, user string) {
	h.OnUser(ctx, livesync.UserEvent{UserID: user, Online: true, At: time.Now()})
	h.Flush(ctx)
}

// deadNodes reads livesync_webhook_dead_nodes_total, as a scrape of w
// would.
func deadNodes(t *testing.T, w *webhook.Webhooks) float64 {
	t.Helper()
	return series(t, w, "livesync_webhook_dead_nodes_total")[0].GetCounter().GetValue()
}

// A node that stops beating with members marked (a crash: Close with
// members still in rooms leaves its marks, as SIGKILL does) is spoken
// for by another on the database once NodeTimeout has passed: each
// member's member.left, then room.vacated and user.offline, once, but
// for a user another node holds.
func TestStoreOutboxSpeaksForDeadNode(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		rcv := newReceiver(t, nil)
		a, b, _ := d.open(t)
		// Long enough that a busy machine never takes a live node for
		// dead.
		cfg := webhook.Config{NodeTimeout: 2 * time.Second}
		ctx := t.Context()
		wa, ha := startStoreWebhooks(t, a, rcv, cfg)
		online(ctx, ha, "amy")
		online(ctx, ha, "cat")
		ha.OnJoin(ctx, member("room", "a1", "amy", true))
		ha.OnJoin(ctx, member("room", "a2", "cat", false))
		ha.OnJoin(ctx, member("solo", "a3", "cat", true))
		wb, hb := startStoreWebhooks(t, b, rcv, cfg)
		online(ctx, hb, "amy") // amy has a tab on b too
		rcv.waitN(8)
		// Every delivery done: none is left leased to a when it dies.
		waitStat(t, wb, "the arrivals delivered", func(s webhook.Stats) bool { return s.Depth == 0 })

		wa.Close(ctx)
		got := rcv.wait("the dead node's departures", func(ds []delivery) bool {
			return len(ds) >= 8+3+2+1
		})
		waitStat(t, wb, "an empty outbox", func(s webhook.Stats) bool { return s.Depth == 0 })
		got = rcv.waitN(len(got))[8:]
		count := map[string]int{}
		for _, g := range got {
			count[g.Type+" "+str(g.Data["connectionId"])+str(g.Data["roomId"])+str(g.Data["userId"])] += 1
		}
		want := map[string]int{
			"member.left a1roomamy": 1, "member.left a2roomcat": 1, "member.left a3solocat": 1,
			"room.vacated room": 1, "room.vacated solo": 1, "user.offline cat": 1,
		}
		if len(count) != len(want) {
			t.Fatalf("sent for the dead node: %v, want %v", count, want)
		}
		for k, n := range want {
			if count[k] != n {
				t.Fatalf("sent for the dead node: %v, want %v", count, want)
			}
		}
		// A room's members leave before it is vacated.
		left := 0
		for _, g := range got {
			switch {
			case g.Type == webhook.MemberLeft && g.Data["roomId"] == "room":
				left++
			case g.Type == webhook.RoomVacated && g.Data["roomId"] == "room" && left != 2:
				t.Fatalf("room.vacated before its members left: %s", types(got))
			}
		}
		if n := deadNodes(t, wb); n != 1 {
			t.Fatalf("%v dead nodes counted, want 1", n)
		}
	})
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// A node taken for dead while it lives (its beat gone from the database)
// finds out at its next beat and sends its arrivals again.
func TestStoreOutboxNodeTakenForDead(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		rcv := newReceiver(t, nil)
		a, _, db := d.open(t)
		w, h := startStoreWebhooks(t, a, rcv, webhook.Config{NodeTimeout: 300 * time.Millisecond})
		h.OnJoin(t.Context(), member("room", "a1", "amy", true))
		rcv.waitN(2)
		// Once the node's first beat is in: a beat still on its way would
		// write the row again, and the node would never miss it.
		livesynctest.WaitFor(t, "the node's first beat", func() bool {
			var n int
			return db.QueryRow(`SELECT count(*) FROM "`+w.OutboxTable()+`_owners"`).Scan(&n) == nil && n > 0
		})
		if _, err := db.Exec(`DELETE FROM "` + w.OutboxTable() + `_owners"`); err != nil {
			t.Fatal(err)
		}
		got := rcv.waitN(4)[2:]
		if types(got) != webhook.RoomOccupied+","+webhook.MemberJoined || got[1].Data["connectionId"] != "a1" {
			t.Fatalf("sent again: %s %v", types(got), got[1].Data)
		}
	})
}

package webhook_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx", to look at the outbox behind the store's back
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/postgres"
	"github.com/openlivesync/livesync/chat/sqlite"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/webhook"
)

// These tests drive a StoreOutbox through Webhooks with no server: the
// events come from the observers Start returns (called here by hand) and from
// the store's own appends, and a receiver answers as each test needs.

// outboxDB is a database a StoreOutbox can live in.
type outboxDB struct {
	name string
	// open returns two stores on one chat table (so one outbox), as two
	// nodes sharing the database have, and a handle on the database for
	// looking at the outbox table; all closed when t ends, after the
	// Webhooks using them.
	open func(t *testing.T) (a, b chat.OutboxStore, db *sql.DB)
}

var outboxDBs = []outboxDB{
	{"sqlite", func(t *testing.T) (chat.OutboxStore, chat.OutboxStore, *sql.DB) {
		path := filepath.Join(t.TempDir(), "chat.db")
		db := openDB(t, "sqlite", path+"?_pragma=busy_timeout(10000)")
		open := func() chat.OutboxStore {
			s, err := sqlite.New(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open(), db
	}},
	{"postgres", func(t *testing.T) (chat.OutboxStore, chat.OutboxStore, *sql.DB) {
		dsn := testsvc.PostgresDSN(t)
		db := openDB(t, "pgx", dsn)
		table := testsvc.TableName(t, "olswh")
		if len(table) > 40 {
			// Short enough that the outbox's tables are named
			// table+"_outbox" and table+"_outbox_locks" (a longer one is
			// shortened with a hash), with room for "_outbox_away": the
			// random suffix at its end keeps it unique.
			table = "olswh_" + table[len(table)-30:]
		}
		t.Cleanup(func() {
			for _, tb := range []string{table, table + "_outbox", table + "_outbox_locks", table + "_outbox_marks", table + "_outbox_owners", table + "_outbox_away"} {
				if _, err := db.Exec(`DROP TABLE IF EXISTS "` + tb + `" CASCADE`); err != nil {
					t.Errorf("drop %s: %v", tb, err)
				}
			}
		})
		open := func() chat.OutboxStore {
			s, err := postgres.New(context.Background(), dsn, &postgres.Options{TableName: table})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open(), db
	}},
}

func openDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// forEachDB runs f as a subtest per database.
func forEachDB(t *testing.T, f func(t *testing.T, d outboxDB)) {
	for _, d := range outboxDBs {
		t.Run(d.name, func(t *testing.T) { f(t, d) })
	}
}

// startStoreWebhooks starts Webhooks on store's outbox, posting to rcv,
// closed when t ends.
func startStoreWebhooks(t *testing.T, store chat.OutboxStore, rcv *receiver, cfg webhook.Config) (*webhook.Webhooks, livesync.Hooks) {
	t.Helper()
	cfg.Store = store
	w, h := startWebhooks(t, rcv, cfg)
	// The server flushes after each run of observations; here each join
	// is a run.
	join := h.OnJoin
	h.OnJoin = func(ctx context.Context, m livesync.MemberEvent) {
		join(ctx, m)
		h.Flush(ctx)
	}
	return w, h
}

// joined is what the server's OnJoin tells the webhooks when connection
// conn joins room.
func joined(room, conn string) livesync.MemberEvent {
	return livesync.MemberEvent{RoomID: room, ConnectionID: conn, At: time.Now()}
}

// outboxRow reads the attempts and next_at (Unix ms) of the outbox's
// entry with webhook-id id; ok false when there is none.
func outboxRow(t *testing.T, db *sql.DB, table, id string) (attempts int, nextAt int64, ok bool) {
	t.Helper()
	err := db.QueryRow(`SELECT attempts, next_at FROM "`+table+`" WHERE event_id = '`+id+`'`).Scan(&attempts, &nextAt)
	if err == sql.ErrNoRows {
		return 0, 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return attempts, nextAt, true
}

// A StoreOutbox delivers what the server's hooks emit and the
// chat.message entries its store writes with each message, signed, and
// leaves the table empty.
func TestStoreOutboxDelivers(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		rcv := newReceiver(t, nil)
		store, _, _ := d.open(t)
		w, h := startStoreWebhooks(t, store, rcv, webhook.Config{})
		if w.OutboxTable() == "" {
			t.Fatal("no outbox table: not a StoreOutbox")
		}
		h.OnJoin(t.Context(), joined("r", "c1"))
		m, err := store.(chat.Store).Append(context.Background(), chat.Message{RoomID: "r", ConnectionID: "c1", Message: "hi", Name: "Ann"})
		if err != nil {
			t.Fatal(err)
		}
		got := rcv.waitN(2)
		if types(got) != webhook.MemberJoined+","+webhook.ChatMessage {
			t.Fatalf("received %s", types(got))
		}
		for i := range got {
			verify(t, &got[i])
		}
		if got[1].Data["id"] != m.ID || got[1].Data["message"] != "hi" || got[1].Data["name"] != "Ann" {
			t.Fatalf("chat.message data %v, stored %+v", got[1].Data, m)
		}
		waitStat(t, w, "an empty outbox", func(s webhook.Stats) bool { return s.Delivered == 2 && s.Depth == 0 })
	})
}

// A 503 is retried with its attempt and due time recorded in the table,
// under the same webhook-id, and a success then removes the entry.
func TestStoreOutboxRetryIsRecorded(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		rcv := newReceiver(t, func(_ *delivery, seen int) int {
			if seen == 0 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		})
		store, _, db := d.open(t)
		// An hour's wait, and no probe: the test moves the entry's due
		// time itself, so that what the table says is what decides the
		// next attempt.
		webhook.SetProbeInterval(t, time.Hour)
		w, h := startStoreWebhooks(t, store, rcv, webhook.Config{Retries: []time.Duration{time.Hour}})
		before := time.Now()
		h.OnJoin(t.Context(), joined("r", "c1"))
		first := rcv.waitN(1)[0]
		var attempts int
		var nextAt int64
		testsvc.WaitState(t, "the retry recorded", livesynctest.Timeout, func() (bool, any) {
			a, n, ok := outboxRow(t, db, w.OutboxTable(), first.ID)
			attempts, nextAt = a, n
			return ok && a == 1, fmt.Sprintf("row %v attempts %d", ok, a)
		})
		// The hour, jittered by up to a quarter.
		if due := time.UnixMilli(nextAt); due.Before(before.Add(45*time.Minute)) || due.After(time.Now().Add(75*time.Minute)) {
			t.Fatalf("next attempt due %v, want about an hour after %v", due, before)
		}
		if s := w.Stats(); s.Retries != 1 || s.Delivered != 0 || s.Depth != 1 {
			t.Fatalf("stats %+v after a 503", s)
		}
		if _, err := db.Exec(`UPDATE "` + w.OutboxTable() + `" SET next_at = 0`); err != nil {
			t.Fatal(err)
		}
		got := rcv.waitN(2)
		if got[1].ID != first.ID || attempts != 1 {
			t.Fatalf("retried as %q, first sent as %q", got[1].ID, first.ID)
		}
		waitStat(t, w, "the retry delivered", func(s webhook.Stats) bool { return s.Delivered == 1 && s.Depth == 0 })
		if _, _, ok := outboxRow(t, db, w.OutboxTable(), first.ID); ok {
			t.Fatal("the delivered entry is still in the table")
		}
	})
}

// A 4xx other than 429 is not retried: one attempt, counted as failed,
// and the entry leaves the table.
func TestStoreOutboxDoesNotRetry4xx(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		rcv := newReceiver(t, func(*delivery, int) int { return http.StatusBadRequest })
		store, _, _ := d.open(t)
		w, h := startStoreWebhooks(t, store, rcv, webhook.Config{Retries: []time.Duration{time.Millisecond}})
		h.OnJoin(t.Context(), joined("r", "c1"))
		h.OnJoin(t.Context(), joined("r", "c2")) // behind the first: delivered once the first is settled
		rcv.waitN(2)
		s := waitStat(t, w, "both refused", func(s webhook.Stats) bool { return s.Failed == 2 && s.Depth == 0 })
		if s.Retries != 0 || s.GaveUp != 0 {
			t.Fatalf("stats %+v", s)
		}
		if got := rcv.waitN(2); len(got) != 2 || got[0].ID == got[1].ID {
			t.Fatalf("received %d posts (%s), want each event once", len(got), types(got))
		}
	})
}

// After the last wait of the schedule the event is given up, counted,
// and leaves the table, letting its key's next event go.
func TestStoreOutboxGivesUpAfterSchedule(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		rcv := newReceiver(t, func(d *delivery, _ int) int {
			if d.Data["connectionId"] == "doomed" {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		})
		store, _, _ := d.open(t)
		w, h := startStoreWebhooks(t, store, rcv, webhook.Config{Retries: []time.Duration{time.Millisecond, 2 * time.Millisecond}})
		h.OnJoin(t.Context(), joined("r", "doomed"))
		h.OnJoin(t.Context(), joined("r", "next"))
		got := rcv.wait("the next event", func(ds []delivery) bool {
			return len(ds) > 0 && ds[len(ds)-1].Data["connectionId"] == "next"
		})
		if len(got) != 4 {
			t.Fatalf("received %d posts, want 3 attempts of the doomed event then the next", len(got))
		}
		for _, g := range got[1:3] {
			if g.ID != got[0].ID {
				t.Fatalf("attempt under webhook-id %q, first was %q", g.ID, got[0].ID)
			}
		}
		s := waitStat(t, w, "one given up, one delivered", func(s webhook.Stats) bool {
			return s.GaveUp == 1 && s.Delivered == 1 && s.Depth == 0
		})
		if s.Retries != 2 {
			t.Fatalf("stats %+v, want 2 retries", s)
		}
	})
}

// Two nodes' Webhooks on one database share the outbox: each event is
// delivered once, a key's events in the order they were added, whichever
// node added them, and never two of one key at once.
func TestStoreOutboxTwoClaimersKeepKeyOrder(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		const rooms, perRoom = 3, 20
		var mu sync.Mutex
		inFlight := map[any]int{}
		var overlap string
		// The receiver holds the first posts until every event is in the
		// table, so that the claimers have all of them to choose from.
		gate := make(chan struct{})
		rcv := newReceiver(t, func(d *delivery, _ int) int {
			<-gate
			room := d.Data["roomId"]
			mu.Lock()
			inFlight[room]++
			if inFlight[room] > 1 && overlap == "" {
				overlap = fmt.Sprintf("two events of room %v in flight at once (%v)", room, d.Data["connectionId"])
			}
			mu.Unlock()
			time.Sleep(time.Millisecond) // widens the window a second claim would fall into
			mu.Lock()
			inFlight[room]--
			mu.Unlock()
			return http.StatusNoContent
		})
		a, b, _ := d.open(t)
		wa, ha := startStoreWebhooks(t, a, rcv, webhook.Config{Workers: 4})
		wb, hb := startStoreWebhooks(t, b, rcv, webhook.Config{Workers: 4})
		for i := range perRoom {
			for r := range rooms {
				h := ha
				if (i+r)%2 == 1 {
					h = hb
				}
				h.OnJoin(t.Context(), joined(fmt.Sprint("r", r), strconv.Itoa(i)))
			}
		}
		close(gate)
		got := rcv.waitN(rooms * perRoom)
		mu.Lock()
		if overlap != "" {
			t.Error(overlap)
		}
		mu.Unlock()
		seen := map[string]bool{}
		for _, g := range got {
			if seen[g.ID] {
				t.Errorf("%s delivered twice", g.ID)
			}
			seen[g.ID] = true
		}
		checkRoomOrder(t, got, rooms, perRoom)
		waitStat(t, wa, "an empty outbox", func(s webhook.Stats) bool { return s.Depth == 0 })
		if da, db := wa.Stats().Delivered, wb.Stats().Delivered; da+db != rooms*perRoom {
			t.Fatalf("delivered %d + %d", da, db)
		}
	})
}

// outboxErrors reads livesync_webhook_outbox_errors_total by op, as a
// scrape of w would.
func outboxErrors(t *testing.T, w *webhook.Webhooks) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range series(t, w, "livesync_webhook_outbox_errors_total") {
		out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	return out
}

// series returns the series of w's metric name, as a scrape of w would.
func series(t *testing.T, w *webhook.Webhooks, name string) []*dto.Metric {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

// Each failed call on the outbox table is counted by operation: the
// table is renamed away under the sender (a database that lost it, or
// that cannot be reached, fails alike) and back.
func TestStoreOutboxCountsDatabaseErrors(t *testing.T) {
	forEachDB(t, func(t *testing.T, d outboxDB) {
		store, _, db := d.open(t)
		var table string
		rename := func(from, to string) {
			if _, err := db.Exec(`ALTER TABLE "` + from + `" RENAME TO "` + to + `"`); err != nil {
				t.Error(err)
			}
		}
		away := func() { rename(table, table+"_away") }
		back := func() { rename(table+"_away", table) }
		// The first attempt fails with the table away, so its Retry
		// fails; the second succeeds with the table away, so its Done
		// fails.
		rcv := newReceiver(t, func(_ *delivery, seen int) int {
			away()
			if seen == 0 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		})
		w, h := startStoreWebhooks(t, store, rcv, webhook.Config{Retries: []time.Duration{time.Millisecond}})
		table = w.OutboxTable()
		if got := outboxErrors(t, w); len(got) != 10 || got["claim"] != 0 {
			t.Fatalf("errors before any failure %v, want 10 ops at 0", got)
		}
		h.OnJoin(t.Context(), joined("r", "c1"))
		rcv.waitN(1)
		waitErrors := func(what, op string) {
			t.Helper()
			testsvc.WaitState(t, what, livesynctest.Timeout, func() (bool, any) {
				got := outboxErrors(t, w)
				return got[op] >= 1, got
			})
		}
		waitErrors("the retry to fail", "retry")
		waitErrors("a claim to fail", "claim") // the claimers poll the table
		h.OnJoin(t.Context(), joined("r", "c2"))
		if got := outboxErrors(t, w); got["add"] != 1 {
			t.Fatalf("errors %v after an event could not be added", got)
		}
		waitErrors("stats to fail", "stats") // the scrape itself reads the table
		// Back, with the failed Retry's lease ended, the entry goes again.
		back()
		if _, err := db.Exec(`UPDATE "` + table + `" SET lease_until = 0`); err != nil {
			t.Fatal(err)
		}
		rcv.waitN(2)
		waitErrors("done to fail", "done")
		if s := w.Stats(); s.OutboxErrors < 5 || s.Dropped != 1 {
			t.Fatalf("stats %+v", s)
		}
		back()
	})
}

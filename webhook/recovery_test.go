package webhook_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/webhook"
)

// These tests take a receiver down and bring it back: its backlog must
// arrive at once, in each room's order, while a receiver that stays down
// is probed without its events being given up.

// startFunc starts Webhooks posting to rcv as cfg says (URL, Secret and
// Logger filled in), closed when the test ends, and returns the hooks
// that emit its events.
type startFunc func(rcv *receiver, cfg webhook.Config) (*webhook.Webhooks, livesync.Hooks)

// forEachOutbox runs f as a subtest with a MemoryOutbox (db nil) and with
// a StoreOutbox in each database (db a handle on it).
func forEachOutbox(t *testing.T, f func(t *testing.T, start startFunc, db *sql.DB)) {
	t.Run("memory", func(t *testing.T) {
		f(t, func(rcv *receiver, cfg webhook.Config) (*webhook.Webhooks, livesync.Hooks) {
			return startMemoryWebhooks(t, rcv, cfg)
		}, nil)
	})
	forEachDB(t, func(t *testing.T, d outboxDB) {
		store, _, db := d.open(t)
		f(t, func(rcv *receiver, cfg webhook.Config) (*webhook.Webhooks, livesync.Hooks) {
			return startStoreWebhooks(t, store, rcv, cfg)
		}, db)
	})
}

// startMemoryWebhooks starts Webhooks on a MemoryOutbox, posting to rcv,
// closed when t ends without waiting for a receiver left down.
func startMemoryWebhooks(t *testing.T, rcv *receiver, cfg webhook.Config) (*webhook.Webhooks, livesync.Hooks) {
	t.Helper()
	cfg.DrainTimeout = 100 * time.Millisecond
	return startWebhooks(t, rcv, cfg)
}

// startWebhooks starts Webhooks configured by cfg, posting to rcv,
// closed when t ends.
func startWebhooks(t *testing.T, rcv *receiver, cfg webhook.Config) (*webhook.Webhooks, livesync.Hooks) {
	t.Helper()
	cfg.URL, cfg.Secret = rcv.srv.URL, mustSecret(t)
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	feed, err := w.Start(livesync.WebhookEnv{})
	if err != nil {
		t.Fatal(err)
	}
	return w, feed.Hooks
}

// probes reads livesync_webhook_probes_total by outcome, as a scrape of
// w would.
func probes(t *testing.T, w *webhook.Webhooks) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range series(t, w, "livesync_webhook_probes_total") {
		out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	return out
}

// flaky is a receiver that is down until up is set: it answers 503, or,
// with refuse, is not reached at all (the sender's client gets a refused
// connection). It records the deliveries it accepted.
type flaky struct {
	*receiver
	up atomic.Bool

	mu       sync.Mutex
	accepted []delivery
}

func newFlaky(t *testing.T) *flaky {
	f := &flaky{}
	f.receiver = newReceiver(t, func(d *delivery, _ int) int {
		if !f.up.Load() {
			return http.StatusServiceUnavailable
		}
		f.mu.Lock()
		f.accepted = append(f.accepted, *d)
		f.mu.Unlock()
		return http.StatusNoContent
	})
	return f
}

// client is an HTTP client whose connections to f are refused while f is
// down, as those to a stopped receiver are.
func (f *flaky) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !f.up.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return dial(ctx, network, addr)
	}
	tr.DisableKeepAlives = true // every attempt dials, as after a restart
	return &http.Client{Transport: tr}
}

// checkRoomOrder fails t unless got holds each room's events once, in
// the order joined numbered them.
func checkRoomOrder(t *testing.T, got []delivery, rooms, perRoom int) {
	t.Helper()
	next := map[any]int{}
	for _, g := range got {
		room, conn := g.Data["roomId"], g.Data["connectionId"]
		if conn != strconv.Itoa(next[room]) {
			t.Fatalf("room %v: delivered event %v, want %d", room, conn, next[room])
		}
		next[room]++
	}
	if len(got) != rooms*perRoom {
		t.Fatalf("accepted %d deliveries, want %d", len(got), rooms*perRoom)
	}
}

// A receiver that comes back gets its backlog at once, each room's
// events in order, though each room's first event failed and waits an
// hour for its retry: a probe finds the receiver back, and every retry
// is then due. None is given up.
func TestRecoveredReceiverGetsBacklogAtOnce(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		name := "503"
		if refuse {
			name = "refused"
		}
		t.Run(name, func(t *testing.T) {
			forEachOutbox(t, func(t *testing.T, start startFunc, _ *sql.DB) {
				webhook.SetProbeInterval(t, 20*time.Millisecond)
				rcv := newFlaky(t)
				cfg := webhook.Config{Retries: []time.Duration{time.Hour}}
				if refuse {
					cfg.Client = rcv.client()
				}
				w, h := start(rcv.receiver, cfg)
				const rooms, perRoom = 3, 4
				for i := range perRoom {
					for r := range rooms {
						h.OnJoin(t.Context(), joined(fmt.Sprint("r", r), strconv.Itoa(i)))
					}
				}
				// Each room's first event failed and waits its hour, the
				// others behind it.
				waitStat(t, w, "each room's first attempt failed", func(s webhook.Stats) bool { return s.Retries == rooms })
				rcv.up.Store(true)
				s := waitStat(t, w, "the backlog delivered", func(s webhook.Stats) bool {
					return s.Delivered == rooms*perRoom && s.Depth == 0
				})
				if s.GaveUp != 0 || s.Failed != 0 || s.Retries != rooms {
					t.Fatalf("stats %+v: want every event delivered, none given up, a retry per room", s)
				}
				rcv.mu.Lock()
				defer rcv.mu.Unlock()
				checkRoomOrder(t, rcv.accepted, rooms, perRoom)
				if p := probes(t, w); p["delivered"] < 1 {
					t.Fatalf("probes %v: the receiver's return was found by none", p)
				}
			})
		})
	}
}

// A receiver down for many probes: a probe that fails is no attempt, so
// the events keep their attempt count and due time, and none is given up
// though one retry is all the schedule allows.
func TestFailedProbesGiveNothingUp(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, start startFunc, db *sql.DB) {
		webhook.SetProbeInterval(t, 5*time.Millisecond)
		rcv := newFlaky(t)
		w, h := start(rcv.receiver, webhook.Config{Retries: []time.Duration{time.Hour}})
		h.OnJoin(t.Context(), joined("r", "0"))
		h.OnJoin(t.Context(), joined("r", "1"))
		first := rcv.waitN(1)[0]
		waitStat(t, w, "the first attempt failed", func(s webhook.Stats) bool { return s.Retries == 1 })
		var attempts int
		var due int64
		if db != nil {
			testsvc.WaitState(t, "the retry recorded", livesynctest.Timeout, func() (bool, any) {
				a, n, _ := outboxRow(t, db, w.OutboxTable(), first.ID)
				attempts, due = a, n
				return a == 1, a
			})
		}
		testsvc.WaitState(t, "20 failed probes", livesynctest.Timeout, func() (bool, any) {
			p := probes(t, w)
			return p["down"] >= 20, p
		})
		if s := w.Stats(); s.GaveUp != 0 || s.Retries != 1 || s.Depth != 2 {
			t.Fatalf("stats %+v after failed probes: want both events waiting, one retry made", s)
		}
		if db != nil {
			// A probe in flight holds a lease, not a new count or due time.
			if a, n, ok := outboxRow(t, db, w.OutboxTable(), first.ID); !ok || a != attempts || n != due {
				t.Fatalf("after the probes the entry has %d attempts, due %d (%v); want %d, due %d", a, n, ok, attempts, due)
			}
		}
		rcv.up.Store(true)
		s := waitStat(t, w, "both delivered", func(s webhook.Stats) bool { return s.Delivered == 2 && s.Depth == 0 })
		if s.GaveUp != 0 {
			t.Fatalf("stats %+v", s)
		}
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		checkRoomOrder(t, rcv.accepted, 1, 2)
	})
}

// A refusal (a 4xx but 429) is an answer, not a recovery: it does not
// bring the retries forward, while a success does. With one worker and
// no probe, the event waiting for its retry goes after the success, not
// after the refusal.
func TestRefusalIsNoRecovery(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, start startFunc, _ *sql.DB) {
		webhook.SetProbeInterval(t, time.Hour)
		rcv := newReceiver(t, func(d *delivery, seen int) int {
			switch d.Data["roomId"] {
			case "a":
				if seen == 0 {
					return http.StatusServiceUnavailable
				}
			case "b":
				return http.StatusBadRequest
			}
			return http.StatusNoContent
		})
		w, h := start(rcv, webhook.Config{Retries: []time.Duration{time.Hour}, Workers: 1})
		h.OnJoin(t.Context(), joined("a", "1"))
		waitStat(t, w, "a's first attempt failed", func(s webhook.Stats) bool { return s.Retries == 1 })
		h.OnJoin(t.Context(), joined("b", "1"))
		waitStat(t, w, "b's event refused", func(s webhook.Stats) bool { return s.Failed == 1 })
		h.OnJoin(t.Context(), joined("c", "1"))
		waitStat(t, w, "c's event and a's retry delivered", func(s webhook.Stats) bool { return s.Delivered == 2 && s.Depth == 0 })
		var rooms []any
		for _, g := range rcv.waitN(4) {
			rooms = append(rooms, g.Data["roomId"])
		}
		if fmt.Sprint(rooms) != "[a b c a]" {
			t.Fatalf("posted to rooms %v, want [a b c a]: a's retry brought forward by c's success, not b's refusal", rooms)
		}
		if p := probes(t, w); p["delivered"]+p["down"]+p["refused"] != 0 {
			t.Fatalf("probes %v, want none", p)
		}
	})
}

// A receiver that refuses one event with a 503 (or a 429) while it takes
// the others: each success brings that event's retry forward, and a try
// brought forward that fails is no attempt. The event keeps its schedule
// and its count, instead of being sent again at every success and given
// up within a second.
func TestEarlyRetryFailureSpendsNothing(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			forEachOutbox(t, func(t *testing.T, start startFunc, db *sql.DB) {
				webhook.SetProbeInterval(t, time.Hour)
				rcv := newReceiver(t, func(d *delivery, _ int) int {
					if d.Data["roomId"] == "stuck" {
						return status
					}
					return http.StatusNoContent
				})
				w, h := start(rcv, webhook.Config{Retries: []time.Duration{time.Hour, time.Hour}})
				h.OnJoin(t.Context(), joined("stuck", "0"))
				first := rcv.waitN(1)[0]
				waitStat(t, w, "stuck's first attempt failed", func(s webhook.Stats) bool { return s.Retries == 1 })
				const others = 8
				for i := range others {
					h.OnJoin(t.Context(), joined(fmt.Sprint("r", i), "0"))
					waitStat(t, w, "the other room's event delivered", func(s webhook.Stats) bool { return s.Delivered == int64(i+1) })
				}
				rcv.waitN(1 + others + 1) // stuck was tried early at least once
				s := w.Stats()
				if s.GaveUp != 0 || s.Retries != 1 || s.Depth != 1 {
					t.Fatalf("stats %+v: want stuck waiting with the one retry its first attempt made", s)
				}
				if db != nil {
					testsvc.WaitState(t, "stuck's entry as its first attempt left it", livesynctest.Timeout, func() (bool, any) {
						a, due, ok := outboxRow(t, db, w.OutboxTable(), first.ID)
						return ok && a == 1 && due > time.Now().Add(30*time.Minute).UnixMilli(), []any{a, due, ok}
					})
				}
			})
		})
	}
}

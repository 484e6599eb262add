package webhook_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/sqlite"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/webhook"
)

// An application observer that is slow never holds up the webhooks: they
// have a feed of their own. The app's OnJoin here waits for the
// receiver's member.joined, which it would never see were the two called
// one after the other.
func TestSlowAppObserverDoesNotDelayWebhooks(t *testing.T) {
	rcv := newReceiver(t, nil)
	sawWebhook := make(chan struct{})
	appSaw := make(chan bool, 4)
	opts := livesync.Options{Hooks: livesync.Hooks{
		ObserverTimeout: 2 * livesynctest.Timeout,
		OnJoin: func(ctx context.Context, e livesync.MemberEvent) {
			select {
			case <-sawWebhook:
				appSaw <- true
			case <-time.After(livesynctest.Timeout):
				appSaw <- false
			}
		},
	}}
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined}}, opts)
	n.dial(t, "ann").Join("r", nil)
	rcv.wait("member.joined while the app's OnJoin is still busy", func(d []delivery) bool { return len(d) >= 1 })
	close(sawWebhook)
	if !<-appSaw {
		t.Fatal("the app's OnJoin never heard of the webhook")
	}
}

// ...and a webhook feed that is slow (its outbox's database hanging)
// never holds up the application's observers.
func TestSlowWebhookFeedDoesNotDelayAppObservers(t *testing.T) {
	rcv := newReceiver(t, nil)
	hang := make(chan struct{})
	defer close(hang)
	joins := make(chan string, 4)
	opts := livesync.Options{Hooks: livesync.Hooks{
		OnJoin: func(_ context.Context, e livesync.MemberEvent) { joins <- e.RoomID },
	}}
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined}, Outbox: hangingOutbox{hang}}, opts)
	c := n.dial(t, "ann")
	c.Join("a", nil)
	c.Join("b", nil)
	for _, want := range []string{"a", "b"} {
		select {
		case got := <-joins:
			if got != want {
				t.Fatalf("app observed %q, want %q", got, want)
			}
		case <-time.After(livesynctest.Timeout):
			t.Fatalf("the app never observed the join of %q: the webhooks' outbox held it", want)
		}
	}
}

// hangingOutbox is an outbox whose Add waits for hang: a database that
// does not answer.
type hangingOutbox struct{ hang chan struct{} }

func (h hangingOutbox) Add(webhook.Event) error { <-h.hang; return nil }
func (h hangingOutbox) Claim(ctx context.Context) (webhook.Event, error) {
	<-ctx.Done()
	return webhook.Event{}, ctx.Err()
}
func (hangingOutbox) Done(webhook.Event)      {}
func (hangingOutbox) Retry(webhook.Event)     {}
func (hangingOutbox) Stats() (int, time.Time) { return 0, time.Time{} }

// orderedStore is a SQLite store that records whether the webhooks were
// closed (their claims' context cancelled) when the store is closed.
type orderedStore struct {
	*sqlite.Store
	claimCtx       atomic.Pointer[context.Context]
	closedAfterWH  atomic.Bool
	closedBeforeWH atomic.Bool
}

func (s *orderedStore) EnableOutbox(ctx context.Context, enc chat.OutboxEncoder) (chat.Outbox, error) {
	ob, err := s.Store.EnableOutbox(ctx, enc)
	return &ctxOutbox{Outbox: ob, s: s}, err
}

func (s *orderedStore) Close() error {
	if p := s.claimCtx.Load(); p != nil && (*p).Err() != nil {
		s.closedAfterWH.Store(true)
	} else {
		s.closedBeforeWH.Store(true)
	}
	return s.Store.Close()
}

type ctxOutbox struct {
	chat.Outbox
	s *orderedStore
}

func (o *ctxOutbox) Claim(ctx context.Context, lease time.Duration) (chat.OutboxEntry, bool, error) {
	o.s.claimCtx.Store(&ctx)
	return o.Outbox.Claim(ctx, lease)
}

// Options.Webhooks on a database store: the server picks the durable
// outbox by itself, exports the webhooks' metrics, and on Shutdown closes
// the webhooks before the store.
func TestOptionsWebhooksDurableMetricsAndShutdownOrder(t *testing.T) {
	rcv := newReceiver(t, nil)
	inner, err := sqlite.New(context.Background(), filepath.Join(t.TempDir(), "chat.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &orderedStore{Store: inner}
	wh, err := webhook.New(webhook.Config{URL: rcv.srv.URL, Secret: mustSecret(t), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := livesync.New(&livesync.Options{Store: store, Webhooks: wh, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if wh.OutboxTable() == "" {
		t.Fatal("the webhooks got an outbox in memory beside a database store")
	}
	ts := startHTTP(t, srv)
	c := livesynctest.Dial(t, ts)
	c.Join("r", nil)
	c.Send("send_chat", map[string]any{"message": "hi"})
	rcv.wait("room.occupied, member.joined and chat.message", func(d []delivery) bool {
		return types(d) == webhook.RoomOccupied+","+webhook.MemberJoined+","+webhook.ChatMessage
	})
	testsvc.WaitState(t, "the webhooks' metrics among the server's", livesynctest.Timeout, func() (bool, any) {
		got := scrape(t, srv)
		return strings.Contains(got, `livesync_webhook_deliveries_total{event="chat.message",outcome="delivered"} 1`), got
	})
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if store.closedBeforeWH.Load() || !store.closedAfterWH.Load() {
		t.Fatal("Shutdown closed the store while the webhooks were still claiming from it")
	}
	if _, err := wh.Start(livesync.WebhookEnv{}); err == nil {
		t.Fatal("the webhooks were not closed by Shutdown")
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startHTTP serves srv until t ends, returning its WebSocket URL. The
// test shuts srv down itself.
func startHTTP(t *testing.T, srv *livesync.Server) string {
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/live"
}

// scrape reads srv's /metrics.
func scrape(t *testing.T, srv *livesync.Server) string {
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/sqlite"
	"github.com/openlivesync/livesync/webhook"
)

// gatedStatsStore is a SQLite store whose outbox's Stats the test holds
// (a database that hangs) or fails (one that is gone); the rest of the
// outbox works.
type gatedStatsStore struct {
	*sqlite.Store
	mu       sync.Mutex
	hold     chan struct{} // while not nil, Stats waits for it (or its context)
	fail     error
	inFlight int // Stats calls held now
}

func (s *gatedStatsStore) EnableOutbox(ctx context.Context, encode chat.OutboxEncoder) (chat.Outbox, error) {
	ob, err := s.Store.EnableOutbox(ctx, encode)
	if err != nil {
		return nil, err
	}
	return gatedOutbox{ob, s}, nil
}

func (s *gatedStatsStore) set(hold chan struct{}, fail error) {
	s.mu.Lock()
	s.hold, s.fail = hold, fail
	s.mu.Unlock()
}

func (s *gatedStatsStore) held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

type gatedOutbox struct {
	chat.Outbox
	s *gatedStatsStore
}

func (o gatedOutbox) Stats(ctx context.Context) (int, time.Time, error) {
	o.s.mu.Lock()
	hold, fail := o.s.hold, o.s.fail
	if hold != nil {
		o.s.inFlight++
	}
	o.s.mu.Unlock()
	if hold != nil {
		defer func() {
			o.s.mu.Lock()
			o.s.inFlight--
			o.s.mu.Unlock()
		}()
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, time.Time{}, ctx.Err()
		}
	}
	if fail != nil {
		return 0, time.Time{}, fail
	}
	return o.Outbox.Stats(ctx)
}

// gauge reads w's gauge name, as a scrape would.
func gauge(t *testing.T, w *webhook.Webhooks, name string) float64 {
	t.Helper()
	return series(t, w, name)[0].GetGauge().GetValue()
}

// A scrape does not wait for a hung database, and neither a hung nor a
// dead one makes the outbox look empty: the last depth read is reported,
// its age still growing, and livesync_webhook_outbox_stale says so.
func TestStoreOutboxStatsStaleWhenDatabaseHangsOrFails(t *testing.T) {
	base, err := sqlite.New(context.Background(), filepath.Join(t.TempDir(), "chat.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	store := &gatedStatsStore{Store: base}
	// The receiver refuses, and the retry is far off: the event stays.
	rcv := newReceiver(t, func(*delivery, int) int { return http.StatusServiceUnavailable })
	w, h := startStoreWebhooks(t, store, rcv, webhook.Config{Retries: []time.Duration{time.Hour}})
	h.OnJoin(t.Context(), joined("r", "c1"))
	rcv.waitN(1)
	fresh := waitStat(t, w, "the event in the outbox", func(s webhook.Stats) bool { return s.Depth == 1 && s.Stale == nil })
	if got := gauge(t, w, "livesync_webhook_outbox_stale"); got != 0 {
		t.Fatalf("stale %v with the database answering", got)
	}
	age := gauge(t, w, "livesync_webhook_outbox_oldest_age_seconds")

	// Hung: the scrape answers while the database still holds the read.
	hold := make(chan struct{})
	defer close(hold)
	store.set(hold, nil)
	if got := gauge(t, w, "livesync_webhook_outbox_depth"); got != 1 {
		t.Fatalf("depth %v with the database hung, want the last known 1", got)
	}
	if store.held() != 1 {
		t.Fatalf("%d reads held after the scrape returned, want the one it left waiting", store.held())
	}
	if got := gauge(t, w, "livesync_webhook_outbox_stale"); got != 1 {
		t.Fatalf("stale %v with the database hung", got)
	}
	if got := gauge(t, w, "livesync_webhook_outbox_oldest_age_seconds"); got < age {
		t.Fatalf("age %v went back from %v", got, age)
	}
	if store.held() != 1 {
		t.Fatalf("%d reads held: scrapes started reads of their own", store.held())
	}
	s := w.Stats()
	if s.Depth != 1 || !s.Oldest.Equal(fresh.Oldest) || s.Stale == nil {
		t.Fatalf("stats with the database hung: %+v", s)
	}

	// Dead: the read fails at once.
	store.set(nil, errors.New("connection refused"))
	hold <- struct{}{} // lets the held read go: it fails
	s = waitStat(t, w, "a failed read", func(s webhook.Stats) bool { return s.Stale != nil && store.held() == 0 })
	if s.Depth != 1 || !s.Oldest.Equal(fresh.Oldest) {
		t.Fatalf("stats with the database gone: %+v, want the last known depth 1", s)
	}
	if got := gauge(t, w, "livesync_webhook_outbox_depth"); got != 1 {
		t.Fatalf("depth %v with the database gone", got)
	}
	if got := outboxErrors(t, w)["stats"]; got < 1 {
		t.Fatalf("stats errors %v", got)
	}

	// Back: current again.
	store.set(nil, nil)
	waitStat(t, w, "current figures", func(s webhook.Stats) bool { return s.Stale == nil && s.Depth == 1 })
}

// /readyz shows the last known outbox with why it is stale when the
// outbox's database cannot be read, not an empty outbox.
func TestReadyzOutboxStaleWhenDatabaseFails(t *testing.T) {
	base, err := sqlite.New(context.Background(), filepath.Join(t.TempDir(), "chat.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &gatedStatsStore{Store: base} // closed by the server
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	n := startNode(t, nil, webhook.Config{URL: down.URL, Events: []string{webhook.MemberJoined}, Retries: []time.Duration{time.Hour}},
		livesync.Options{Store: store})
	n.dial(t, "ann").Join("r", nil)
	waitStat(t, n.wh, "a failed attempt", func(s webhook.Stats) bool { return s.Retries == 1 && s.Depth == 1 })
	store.set(nil, errors.New("connection refused"))
	var st struct {
		Webhooks *struct {
			OutboxDepth int    `json:"outboxDepth"`
			Stale       string `json:"stale"`
		} `json:"webhooks"`
	}
	resp, err := http.Get(n.httpURL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &st); err != nil || st.Webhooks == nil {
		t.Fatalf("/readyz %s: %v", body, err)
	}
	if st.Webhooks.OutboxDepth != 1 || st.Webhooks.Stale == "" {
		t.Fatalf("/readyz webhooks %s, want the last known depth 1, stale", body)
	}
	if strings.Contains(string(body), "connection refused") {
		t.Fatalf("/readyz leaks the database's error: %s", body)
	}
}

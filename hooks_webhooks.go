package livesync

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/chat"
)

// WebhookSender sends the server's events to the application's backend:
// what Options.Webhooks takes. *webhook.Webhooks implements it; the
// interface lives here because that package builds on this one.
//
// The server feeds the sender's observers from a queue and a goroutine of
// their own, apart from Options.Hooks' observers, so that a slow
// application observer never delays or drops a webhook, nor a slow
// webhook outbox an application observer. If the sender is a
// prometheus.Collector, New registers it with the server's metrics.
type WebhookSender interface {
	// Start is called once, by New: the sender picks its outbox (durable
	// when env.Store can hold one) and starts delivering. It returns what
	// the server is to feed it.
	Start(env WebhookEnv) (WebhookFeed, error)
	// Backlog reports the events waiting for delivery and when the oldest
	// was created (zero when none), for /readyz.
	Backlog() (depth int, oldest time.Time)
	// Close stops the sender, delivering what it holds until ctx ends.
	// Shutdown calls it once the rooms are drained and their last
	// observations handed over, before it closes the store. It is also
	// the caller's to call when New fails.
	Close(ctx context.Context) error
}

// WebhookBacklogReporter is implemented by a WebhookSender whose backlog
// figures can be out of date, as those of an outbox in a database that
// fails or hangs (*webhook.Webhooks implements it). /readyz then shows
// the last figures with the reason they are stale, not an empty outbox.
type WebhookBacklogReporter interface {
	// BacklogStatus reports what Backlog does, promptly (well within a
	// second), and why the figures are not current: nil when they are.
	BacklogStatus() (depth int, oldest time.Time, stale error)
}

// WebhookEnv is what the server tells its WebhookSender at Start.
type WebhookEnv struct {
	// Store is the server's chat store (Options.Store).
	Store chat.Store
	// Cluster says that the server is a node of a cluster whose broker
	// counts members and connections (Options.Broker is a
	// broker.Counter, as broker/redis is): the broker finds dead nodes
	// and the server observes their members leaving, once, on the node
	// that found them. Without one, a sender that keeps a durable outbox
	// speaks for a dead node itself (see package webhook).
	Cluster bool
}

// WebhookFeed is what a WebhookSender observes.
type WebhookFeed struct {
	// Hooks holds the sender's observers, with their OfflineDelay,
	// DocUpdateDelay, ObserverTimeout and QueueSize; OnChat is ignored.
	// Where Options.Hooks sets OfflineDelay or DocUpdateDelay too, the
	// application's wins: the server times one delay for both.
	Hooks Hooks
	// ChatInStore says that the store writes each chat message's event
	// in the message's own transaction (a durable outbox). Each room's
	// chat commit then waits until the room's earlier joins and leaves
	// have been through Hooks, so that the outbox holds a member's
	// member.joined before its chat.message.
	ChatInStore bool
}

// startHooks starts the webhooks (Options.Webhooks) and the feeds of the
// observers. New calls it before anything can be observed.
func (s *Server) startHooks() error {
	h := &s.opts.Hooks
	names, hooks := []string{"hooks"}, []Hooks{*h}
	ordered := "" // the feed whose joins and leaves chat commits wait for
	if wh := s.opts.Webhooks; wh != nil {
		_, counted := s.broker.(broker.Counter)
		wf, err := wh.Start(WebhookEnv{Store: s.store, Cluster: counted})
		if err != nil {
			return fmt.Errorf("livesync: webhooks: %w", err)
		}
		wf.Hooks.OnChat = nil
		if h.OfflineDelay <= 0 {
			h.OfflineDelay = wf.Hooks.OfflineDelay
		}
		if h.DocUpdateDelay <= 0 {
			h.DocUpdateDelay = wf.Hooks.DocUpdateDelay
		}
		names, hooks = append(names, "webhooks"), append(hooks, wf.Hooks)
		if wf.ChatInStore {
			ordered = "webhooks"
		}
		if c, ok := wh.(prometheus.Collector); ok {
			if err := s.metrics.register(c); err != nil {
				return fmt.Errorf("livesync: webhook metrics: %w", err)
			}
		}
	}
	if h.DocUpdateDelay <= 0 {
		h.DocUpdateDelay = defaultDocUpdateDelay
	}
	s.hookStats = newHookStats()
	for _, hk := range hooks {
		if hk.observing() {
			s.observers = newObservers(s.hookContext(context.Background()), s.hookStats, s.log, names, hooks, ordered)
			break
		}
	}
	if s.observers != nil {
		s.webhookFeed = s.observers.feed("webhooks")
		s.counter, _ = s.broker.(broker.Counter)
		if s.observers.wants(obsUser) {
			s.users = newUsers(s, s.counter)
		}
	}
	if s.observers != nil || h.OnChat != nil {
		if err := s.metrics.register(s.hookStats); err != nil {
			panic(err) // a fresh registry: a clash is a bug here
		}
	}
	return nil
}

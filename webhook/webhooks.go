package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/chat"
)

// Webhooks sends a server's events to one receiver. Make it with New and
// give it to the server as livesync.Options.Webhooks: the server starts
// it (Start), feeds it, exports its metrics and closes it on Shutdown.
type Webhooks struct {
	cfg     Config
	enabled map[string]bool
	m       *metrics

	mu      sync.Mutex // guards started and, until Start, cfg.Outbox
	started bool
	// staging, with a StoreOutbox, holds the observed events until the
	// server's feed flushes them, a run at a time (see staging).
	staging *staging
	// ledger, with a StoreOutbox and no cluster broker, records whom
	// this node serves, to be spoken for should it die (see ledger.go).
	ledger *ledger

	// ownClient is cfg.Client when New made it (Config.Client was nil):
	// Close closes its idle connections, which no one else would.
	ownClient *http.Client

	// failing is set by a delivery attempt that failed and is retried,
	// cleared by one that succeeded: while it is set, the receiver is
	// probed every probeEvery (see recovery.go).
	failing    atomic.Bool
	probeEvery time.Duration

	closed atomic.Bool // Close began: no new event is accepted
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers
}

// New checks cfg. The outbox is chosen, and the workers started, by
// Start.
func New(cfg Config) (*Webhooks, error) {
	given := cfg.Client
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Webhooks{cfg: cfg, enabled: map[string]bool{}, m: newMetrics(), probeEvery: probeEvery}
	// Failing from the start: a StoreOutbox may hold retries from before
	// a restart, which the first success, or a probe, brings forward.
	w.failing.Store(true)
	if given == nil {
		w.ownClient = cfg.Client
	}
	for _, e := range cfg.Events {
		w.enabled[e] = true
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// Start implements livesync.WebhookSender: livesync.New calls it. The
// outbox is Config.Outbox, or a StoreOutbox in Config.Store or else in
// env.Store when it implements chat.OutboxStore, or else a MemoryOutbox.
// With a StoreOutbox whose store keeps a ledger and no cluster broker
// (env.Cluster false), the node is spoken for should it die (see
// ledger.go). It returns the observers that make the events. Tests
// without a server call it themselves, with a zero env.
func (w *Webhooks) Start(env livesync.WebhookEnv) (livesync.WebhookFeed, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return livesync.WebhookFeed{}, errors.New("webhook: already started: give one Webhooks to one server")
	}
	if w.closed.Load() {
		return livesync.WebhookFeed{}, errors.New("webhook: closed")
	}
	c := &w.cfg
	if c.Store == nil && c.Outbox == nil {
		c.Store, _ = env.Store.(chat.OutboxStore)
	}
	switch {
	case c.Store != nil:
		// The lease outlasts an attempt, so that no other node claims an
		// event still in flight.
		ob, err := newStoreOutbox(c.Store, w.enabled[ChatMessage], c.Timeout+30*time.Second, c.Logger, w.m.outboxErrs)
		if err != nil {
			return livesync.WebhookFeed{}, fmt.Errorf("webhook: outbox: %w", err)
		}
		c.Outbox = ob
	case c.Outbox == nil:
		c.Outbox = NewMemoryOutbox(c.OutboxSize)
	}
	w.started = true
	for range c.Workers {
		w.wg.Add(1)
		go w.work()
	}
	if r, ok := c.Outbox.(recoverer); ok {
		w.wg.Go(func() { w.probe(r) })
	}
	so, durable := c.Outbox.(*StoreOutbox)
	if durable && !env.Cluster {
		if lb, ok := so.ob.(chat.OutboxLedger); ok {
			w.ledger = newLedger(w, so, lb)
			w.wg.Go(func() { w.ledger.run(w.ctx) })
		}
	}
	feed := livesync.WebhookFeed{Hooks: w.hooks(durable), ChatInStore: durable && w.enabled[ChatMessage]}
	if durable {
		w.staging = &staging{}
		feed.Hooks.Flush = func(context.Context) {
			es, marks := w.staging.take()
			if len(es) == 0 && len(marks) == 0 {
				return
			}
			var err error
			if w.ledger != nil {
				err = w.ledger.write(es, marks)
			} else {
				err = so.AddBatch(es)
			}
			for _, e := range es {
				w.queued(err, e)
			}
		}
	}
	return feed, nil
}

// outbox is the outbox Start chose, nil before.
func (w *Webhooks) outbox() Outbox {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.started {
		return nil
	}
	return w.cfg.Outbox
}

// Backlog implements livesync.WebhookSender: the events in the outbox
// and when the oldest was created (for a StoreOutbox, every node's; the
// last figures read when its database fails or is slow, see
// BacklogStatus).
func (w *Webhooks) Backlog() (int, time.Time) {
	n, oldest, _ := w.BacklogStatus()
	return n, oldest
}

// BacklogStatus implements livesync.WebhookBacklogReporter: Backlog, and
// why its figures are not current (nil when they are). A StoreOutbox
// waits a short while at most for its database (half a second), then
// reports the last figures read and why: the table did not answer in
// time, or the read failed.
func (w *Webhooks) BacklogStatus() (int, time.Time, error) {
	switch o := w.outbox().(type) {
	case nil:
		return 0, time.Time{}, nil
	case *StoreOutbox:
		return o.status()
	default:
		n, oldest := o.Stats()
		return n, oldest, nil
	}
}

// emit queues e for delivery, unless its type is not wanted. A full
// outbox drops it, counted: the server's paths never wait for the
// receiver.
func (w *Webhooks) emit(e Event) {
	if !w.enabled[e.Type] || w.closed.Load() {
		return
	}
	if w.staging != nil {
		w.staging.add(e)
		return
	}
	w.queued(w.cfg.Outbox.Add(e), e)
}

// queued counts e dropped when err says it could not be queued.
func (w *Webhooks) queued(err error, e Event) {
	if err != nil {
		w.m.outcome(e.Type, outcomeDropped)
		if w.m.dropLogged.CompareAndSwap(false, true) {
			w.cfg.Logger.Warn("webhook events cannot be queued (outbox full, or its database away): they are dropped, counted, until one is queued again", "err", err)
		}
		return
	}
	w.m.dropLogged.Store(false)
}

// work delivers events until the outbox has no more or Close ends it.
func (w *Webhooks) work() {
	defer w.wg.Done()
	for {
		e, err := w.cfg.Outbox.Claim(w.ctx)
		if err != nil {
			return
		}
		w.attempt(e, false)
	}
}

// The outcomes of a delivery, as metric labels.
const (
	outcomeDelivered = "delivered"
	outcomeFailed    = "failed"  // refused by the receiver (4xx but 429, 3xx): not retried
	outcomeGaveUp    = "gave_up" // every retry failed
	outcomeDropped   = "dropped" // the outbox was full
)

// attempt makes one delivery attempt of e and tells the outbox what
// became of it. A probe, or a retry a success brought forward (see
// recovery.go), that fails and would be retried is no attempt: e goes
// back as it was.
func (w *Webhooks) attempt(e Event, probe bool) {
	hurried := !probe && e.Attempts > 0 && e.Due.After(time.Now())
	status, err := w.post(e)
	retry := false
	switch {
	case err != nil && w.ctx.Err() != nil:
		return // closing: the event stays in the outbox
	case err != nil:
		retry = true
		if !probe && !hurried {
			w.cfg.Logger.Warn("webhook delivery failed", "type", e.Type, "id", e.ID, "attempt", e.Attempts+1, "err", err)
		}
	case status >= 200 && status < 300:
		if probe {
			w.m.probes.WithLabelValues(probeDelivered).Inc()
		}
		w.m.outcome(e.Type, outcomeDelivered)
		w.m.latency.Observe(time.Since(e.Created).Seconds())
		w.cfg.Outbox.Done(e)
		w.recovered()
		return
	case status == http.StatusTooManyRequests || status >= 500:
		retry = true
	}
	if retry && hurried {
		// Not a sign the receiver is down (it just answered another
		// event, or this one would not have been hurried), and not
		// arming the failing state keeps the next success from
		// hurrying e again: one event the receiver keeps refusing with
		// a 5xx or 429 while others pass gets at most one early try per
		// retry of its schedule, and is given up no sooner.
		w.cfg.Logger.Debug("webhook retry brought forward failed; it waits for its time", "type", e.Type, "id", e.ID, "status", status, "err", err)
		w.cfg.Outbox.Retry(e)
		return
	}
	if retry {
		w.failing.Store(true)
	}
	if probe {
		if retry {
			w.m.probes.WithLabelValues(probeDown).Inc()
			w.cfg.Logger.Debug("webhook receiver probed, still failing", "type", e.Type, "id", e.ID, "status", status, "err", err)
			w.cfg.Outbox.Retry(e)
			return
		}
		w.m.probes.WithLabelValues(probeRefused).Inc()
	}
	e.Attempts++
	if !retry || e.Attempts > len(w.cfg.Retries) {
		outcome := outcomeFailed
		if retry {
			outcome = outcomeGaveUp
		}
		w.m.outcome(e.Type, outcome)
		w.cfg.Logger.Warn("webhook not delivered", "type", e.Type, "id", e.ID, "attempts", e.Attempts, "status", status, "outcome", outcome)
		w.cfg.Outbox.Done(e)
		return
	}
	w.m.retries.WithLabelValues(e.Type).Inc()
	e.Due = time.Now().Add(jitter(w.cfg.Retries[e.Attempts-1]))
	w.cfg.Outbox.Retry(e)
}

// jitter returns d stretched or shrunk by up to a quarter, at random.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

// post sends e once, signed for this attempt, and returns the answer's
// status.
func (w *Webhooks) post(e Event) (int, error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(e.Body))
	if err != nil {
		return 0, redactErr(err, w.cfg.URL)
	}
	w.cfg.Secret.setHeaders(req.Header, e.ID, e.Body)
	req.Header.Set("User-Agent", "openlivesync-webhooks")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return 0, redactErr(err, w.cfg.URL)
	}
	defer resp.Body.Close()
	// The status is the receiver's answer: a body cut short does not
	// undo a delivery it acknowledged; it is only logged in part.
	body, _, _ := readBody(resp)
	if resp.StatusCode >= 300 {
		w.cfg.Logger.Warn("webhook receiver answered", "type", e.Type, "id", e.ID, "status", resp.StatusCode, "body", snippet(body))
	}
	return resp.StatusCode, nil
}

// Close implements livesync.WebhookSender: it stops accepting events and
// waits for a MemoryOutbox to empty, until DrainTimeout has passed or ctx
// ends: then what is left is lost, logged and counted as dropped, and
// Close returns ctx's cause (context.Cause) if ctx ended. A StoreOutbox is not waited
// for: its events stay in the table, for the next start or another node.
// The server's Shutdown calls it after its last observations and before
// it closes the store. (The users waiting out the offline delay are the
// server's: its Shutdown sends their user.offline.)
func (w *Webhooks) Close(ctx context.Context) error {
	if w.closed.Swap(true) {
		return nil
	}
	o := w.outbox()
	defer func() {
		w.cancel()
		w.wg.Wait()
		if w.ownClient != nil {
			w.ownClient.CloseIdleConnections() // no keep-alive outlives Close
		}
		if m, ok := o.(*MemoryOutbox); ok {
			m.Close()
		}
		if w.ledger != nil {
			w.ledger.retire()
		}
	}()
	mem, ok := o.(*MemoryOutbox)
	if !ok {
		return nil
	}
	drain, cancel := context.WithTimeout(ctx, w.cfg.DrainTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, _ := mem.Stats(); n == 0 {
			return nil
		}
		select {
		case <-drain.Done():
			n := mem.abandon()
			for typ, k := range n {
				w.m.deliveries.WithLabelValues(typ, outcomeDropped).Add(float64(k))
			}
			w.cfg.Logger.Warn("webhook events lost at close: the receiver did not take them in time", "events", n, "waited", w.cfg.DrainTimeout)
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// OutboxTable names the table of a StoreOutbox, and is "" for an outbox
// in memory.
func (w *Webhooks) OutboxTable() string {
	if o, ok := w.outbox().(*StoreOutbox); ok {
		return o.Table()
	}
	return ""
}

// Events returns the event types sent.
func (w *Webhooks) Events() []string { return slices.Clone(w.cfg.Events) }

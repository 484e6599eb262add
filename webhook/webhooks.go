package webhook

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Webhooks sends a server's events to one receiver. Make it with New,
// install it in the server's options with Install, and Close it after the
// server's Shutdown.
type Webhooks struct {
	cfg     Config
	enabled map[string]bool
	m       *metrics

	closed atomic.Bool // Close began: no new event is accepted
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers
}

// New checks cfg and starts the delivery workers.
func New(cfg Config) (*Webhooks, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Webhooks{cfg: cfg, enabled: map[string]bool{}, m: newMetrics(cfg.Outbox)}
	for _, e := range cfg.Events {
		w.enabled[e] = true
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		w.wg.Add(1)
		go w.work()
	}
	return w, nil
}

// emit queues e for delivery, unless its type is not wanted. A full
// outbox drops it, counted: the server's paths never wait for the
// receiver.
func (w *Webhooks) emit(e Event) {
	if !w.enabled[e.Type] || w.closed.Load() {
		return
	}
	if err := w.cfg.Outbox.Add(e); err != nil {
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
		w.attempt(e)
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
// became of it.
func (w *Webhooks) attempt(e Event) {
	status, err := w.post(e)
	retry := false
	switch {
	case err != nil && w.ctx.Err() != nil:
		return // closing: the event stays in the outbox
	case err != nil:
		retry = true
		w.cfg.Logger.Warn("webhook delivery failed", "type", e.Type, "id", e.ID, "attempt", e.Attempts+1, "err", err)
	case status >= 200 && status < 300:
		w.m.outcome(e.Type, outcomeDelivered)
		w.m.latency.Observe(time.Since(e.Created).Seconds())
		w.cfg.Outbox.Done(e)
		return
	case status == http.StatusTooManyRequests || status >= 500:
		retry = true
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
		return 0, err
	}
	w.cfg.Secret.setHeaders(req.Header, e.ID, e.Body)
	req.Header.Set("User-Agent", "openlivesync-webhooks")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := readBody(resp)
	if resp.StatusCode >= 300 {
		w.cfg.Logger.Warn("webhook receiver answered", "type", e.Type, "id", e.ID, "status", resp.StatusCode, "body", snippet(body))
	}
	return resp.StatusCode, nil
}

// Close stops accepting events and waits for the outbox to empty until
// ctx ends: then what is left is abandoned (in a MemoryOutbox, lost) and
// ctx's error returned. A StoreOutbox is not waited for: its events stay
// in the table, for the next start or another node. Close it before the
// store. (The users waiting out the offline delay are the server's: its
// Shutdown sends their user.offline.)
func (w *Webhooks) Close(ctx context.Context) error {
	w.closed.Store(true)
	defer func() {
		w.cancel()
		w.wg.Wait()
		if m, ok := w.cfg.Outbox.(*MemoryOutbox); ok {
			m.Close()
		}
	}()
	if _, durable := w.cfg.Outbox.(*StoreOutbox); durable {
		return nil
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, _ := w.cfg.Outbox.Stats(); n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(errors.New("webhook: events left undelivered"), ctx.Err())
		case <-tick.C:
		}
	}
}

// OutboxTable names the table of a StoreOutbox, and is "" for an outbox
// in memory.
func (w *Webhooks) OutboxTable() string {
	if o, ok := w.cfg.Outbox.(*StoreOutbox); ok {
		return o.Table()
	}
	return ""
}

// Events returns the event types sent.
func (w *Webhooks) Events() []string { return slices.Clone(w.cfg.Events) }

package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// StoreOutbox is an Outbox kept in a table of the chat store's database
// (Config.Store): its events survive a crash or a restart, and a
// chat.message event is written by the store in the transaction that
// stores the message, so that a message is stored if and only if its
// webhook is (and is then delivered at least once). Nodes of a cluster
// sharing the database share the outbox: each event is leased to one of
// them at a time.
type StoreOutbox struct {
	ob    chat.Outbox
	lease time.Duration
	log   *slog.Logger
	more  chan struct{} // capacity 1: a claim succeeded, so others may too

	mu      sync.Mutex
	claimed map[string]int64 // the seq of each claimed event, by webhook-id

	errLogged atomic.Bool // an outbox error was logged since the last success
	// errs counts the calls on the table that failed, by operation: the
	// events stay safe in the table, but a database that keeps failing
	// delays them all, and the log says so only once per run of failures.
	errs *prometheus.CounterVec

	stats outboxStats // the last figures Stats read (outboxstats.go)
}

// The operations errs counts, as its "op" label.
const (
	opAdd   = "add"
	opClaim = "claim"
	opDone  = "done"
	opRetry = "retry"
	opStats = "stats"
	opHurry = "hurry"
	// The ledger's (see ledger.go).
	opMark   = "mark"
	opBeat   = "beat"
	opSweep  = "sweep"
	opRetire = "retire"
)

// outboxOps lists the operations errs counts.
var outboxOps = []string{opAdd, opClaim, opDone, opRetry, opStats, opHurry, opMark, opBeat, opSweep, opRetire}

// storeOutboxPoll is how often an idle claimer looks at the table: other
// nodes' entries and retries coming due wake no one in this process.
const storeOutboxPoll = time.Second

// storeOutboxCall bounds each statement run outside a claim (Done,
// Retry, Add, Stats; Stats' callers wait statsWait at most).
const storeOutboxCall = 10 * time.Second

// newStoreOutbox enables store's outbox; with chatToo, the store writes
// a chat.message event with each message it stores.
func newStoreOutbox(store chat.OutboxStore, chatToo bool, lease time.Duration, log *slog.Logger, errs *prometheus.CounterVec) (*StoreOutbox, error) {
	var encode chat.OutboxEncoder
	if chatToo {
		encode = func(m protocol.StoredChatMessage) (chat.OutboxEntry, bool) {
			return entryOf(chatEvent(m)), true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ob, err := store.EnableOutbox(ctx, encode)
	if err != nil {
		return nil, err
	}
	for _, op := range outboxOps {
		errs.WithLabelValues(op) // exported at 0 from the start
	}
	return &StoreOutbox{ob: ob, lease: lease, log: log, more: make(chan struct{}, 1), claimed: map[string]int64{}, errs: errs}, nil
}

// Table names the outbox table.
func (o *StoreOutbox) Table() string { return o.ob.Table() }

// entryOf is e as an outbox entry.
func entryOf(e Event) chat.OutboxEntry {
	return chat.OutboxEntry{ID: e.ID, Type: e.Type, Key: e.Key, Body: e.Body, Created: e.Created, Attempts: e.Attempts, Due: e.Due}
}

// failed counts a failed call, and logs err once per run of failures: a
// database that is away would otherwise log once a second per worker.
func (o *StoreOutbox) failed(op string, err error) {
	o.errs.WithLabelValues(op).Inc()
	if o.errLogged.CompareAndSwap(false, true) {
		o.log.Warn("webhook outbox: "+op+" failed; the event stays in the outbox (retried)", "err", err)
	}
}

// Add implements Outbox: the event is in the table when it returns nil.
func (o *StoreOutbox) Add(e Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	if err := o.ob.Add(ctx, entryOf(e)); err != nil {
		// Counted, not logged here: the sender logs the dropped event.
		o.errs.WithLabelValues(opAdd).Inc()
		return err
	}
	return nil
}

// batchAdder is implemented by the SQL stores' outboxes.
type batchAdder interface {
	AddBatch(ctx context.Context, es []chat.OutboxEntry) error
}

// AddBatch adds es, in order, in one transaction where the store can:
// they are all in the table when it returns nil.
func (o *StoreOutbox) AddBatch(es []Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	ba, ok := o.ob.(batchAdder)
	if !ok {
		for _, e := range es {
			if err := o.Add(e); err != nil {
				return err
			}
		}
		return nil
	}
	if err := ba.AddBatch(ctx, entriesOf(es)); err != nil {
		o.errs.WithLabelValues(opAdd).Inc()
		return err
	}
	return nil
}

// Claim implements Outbox. It polls the table while nothing is due, and
// keeps trying while the database is away.
func (o *StoreOutbox) Claim(ctx context.Context) (Event, error) {
	for {
		en, ok, err := o.ob.Claim(ctx, o.lease)
		if ctx.Err() != nil {
			return Event{}, ctx.Err()
		}
		if ok {
			select { // one claim may not be the last: let another worker look
			case o.more <- struct{}{}:
			default:
			}
			return o.claim(en), nil
		}
		if err != nil {
			o.failed(opClaim, err)
		}
		t := time.NewTimer(storeOutboxPoll)
		select {
		case <-o.ob.Wake():
		case <-o.more:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Event{}, ctx.Err()
		}
		t.Stop()
	}
}

// claim records en as claimed, for Done or Retry, and returns its event.
func (o *StoreOutbox) claim(en chat.OutboxEntry) Event {
	o.errLogged.Store(false)
	o.mu.Lock()
	o.claimed[en.ID] = en.Seq
	o.mu.Unlock()
	return Event{ID: en.ID, Type: en.Type, Key: en.Key, Body: en.Body, Created: en.Created, Attempts: en.Attempts, Due: en.Due}
}

// ClaimEarly claims, ahead of its time, the entry waiting for a retry
// that is due first, whichever node's it is, and reports false when none
// waits or the table cannot be read (counted as a failed claim). The
// sender probes a failing receiver with it (see ProbeInterval); a probe
// that fails puts it back with Retry as it was.
func (o *StoreOutbox) ClaimEarly(ctx context.Context) (Event, bool) {
	ctx, cancel := context.WithTimeout(ctx, storeOutboxCall)
	defer cancel()
	en, ok, err := o.ob.ClaimEarly(ctx, o.lease)
	switch {
	case err != nil && ctx.Err() == nil:
		o.failed(opClaim, err)
		return Event{}, false
	case !ok:
		return Event{}, false
	}
	return o.claim(en), true
}

// Hurry makes every entry waiting for a retry and not claimed due now,
// every node's, and returns how many: the receiver is back. Each key's
// later entries still wait for its head.
func (o *StoreOutbox) Hurry() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	n, err := o.ob.Hurry(ctx)
	if err != nil {
		o.failed(opHurry, err)
		return n, fmt.Errorf("webhook outbox: hurry: %w", err)
	}
	return n, nil
}

// take forgets claimed e and returns it with its seq.
func (o *StoreOutbox) take(e Event) (chat.OutboxEntry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	seq, ok := o.claimed[e.ID]
	delete(o.claimed, e.ID)
	en := entryOf(e)
	en.Seq = seq
	return en, ok
}

// Done implements Outbox. When the database is away the row stays, and
// is delivered again once its lease ends: at least once.
func (o *StoreOutbox) Done(e Event) {
	en, ok := o.take(e)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	if err := o.ob.Done(ctx, en); err != nil {
		o.failed(opDone, err)
	}
}

// Retry implements Outbox. When the database is away the row is claimed
// again once its lease ends, with its earlier attempt count.
func (o *StoreOutbox) Retry(e Event) {
	en, ok := o.take(e)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	if err := o.ob.Retry(ctx, en); err != nil {
		o.failed(opRetry, err)
	}
}

// Stats implements Outbox: the whole table, every node's events. It
// waits for the database for a short while at most (statsWait): while
// the database fails or is slow, it reports the last figures read (see
// outboxstats.go), never an empty outbox it does not know of.
func (o *StoreOutbox) Stats() (int, time.Time) {
	n, oldest, _ := o.status()
	return n, oldest
}

package chat

import (
	"context"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// OutboxEntry is one event waiting in a store's transactional outbox. The
// store keeps its bytes as given and never looks inside Body: what an
// event means is its sender's business (package webhook), which is why
// the entry is not the sender's own type.
type OutboxEntry struct {
	// Seq is the entry's order key, assigned by the store when it is
	// written; ignored by Add.
	Seq int64
	// ID is the event's stable id (a webhook's webhook-id), the same on
	// every attempt so that receivers can deduplicate.
	ID string
	// Type names the event ("chat.message").
	Type string
	// Key orders entries: Claim hands out an entry only once every older
	// entry of its key is done, so events with one key arrive in order.
	Key string
	// Body is the event as sent.
	Body []byte
	// Created is when the event happened, to the millisecond.
	Created time.Time
	// Attempts made so far, and Due, when the next may start: Retry
	// records them.
	Attempts int
	Due      time.Time
}

// OutboxEncoder builds the outbox entry written with a stored message, in
// the transaction that stores it; ok false writes none for that message.
// It runs inside the store's commit, so it must be quick and must not
// call the store.
type OutboxEncoder func(m protocol.StoredChatMessage) (e OutboxEntry, ok bool)

// OutboxStore is implemented by stores that keep a transactional outbox
// in their database (chat/postgres, chat/mysql, chat/sqlite), so that a
// message is stored if and only if its outbox entry is: a crash can lose
// neither one without the other.
type OutboxStore interface {
	// EnableOutbox creates the outbox table when it is missing and, when
	// encode is not nil, makes every later append write encode's entry
	// for each message in the message's own transaction. Call it before
	// the store is used; calling it again replaces encode.
	EnableOutbox(ctx context.Context, encode OutboxEncoder) (Outbox, error)
}

// Outbox is a store's outbox table. Several processes may share it (the
// nodes of a cluster on one database): Claim leases an entry, so that
// while the lease lasts no other claimer gets it, and an entry whose
// claimer died is claimed again once its lease ends.
type Outbox interface {
	// Table names the outbox table, for the operator's logs.
	Table() string
	// Add writes e, in a transaction of its own, behind the entries with
	// its key.
	Add(ctx context.Context, e OutboxEntry) error
	// Claim leases, for lease, the oldest due entry that heads its key
	// and is not leased, and reports ok false when there is none.
	Claim(ctx context.Context, lease time.Duration) (e OutboxEntry, ok bool, err error)
	// ClaimEarly leases, for lease, the entry waiting for a retry (one
	// attempted before and not due yet) that heads its key, is not
	// leased and is due first, and reports ok false when there is none.
	// e.Attempts and e.Due are the entry's, so that a Retry of e puts it
	// back as it was: the sender probes a failing receiver with it
	// without spending a retry.
	ClaimEarly(ctx context.Context, lease time.Duration) (e OutboxEntry, ok bool, err error)
	// Done deletes a claimed entry: delivered, refused or given up.
	Done(ctx context.Context, e OutboxEntry) error
	// Retry ends e's lease and records e.Attempts and e.Due: the entry
	// stays at the head of its key and is claimed again from e.Due.
	Retry(ctx context.Context, e OutboxEntry) error
	// Hurry makes every entry waiting for a retry and not leased due
	// now, whichever process wrote it, and returns how many it changed:
	// the receiver is back, so its backlog need not wait out its
	// backoff. Each key's order holds, as Claim still hands out a key's
	// head only. A hurried entry keeps its Due: claimed, it shows the
	// time its retry was due, so that the sender can tell a try ahead of
	// time and, should it fail, put the entry back as it was with Retry.
	Hurry(ctx context.Context) (int, error)
	// Stats reports the entries held and when the oldest was created
	// (zero when none).
	Stats(ctx context.Context) (depth int, oldest time.Time, err error)
	// Wake is signalled when this process wrote entries (a commit or an
	// Add), so that an idle claimer need not wait for its next poll.
	Wake() <-chan struct{}
}

// OutboxMark is a fact that a process writing outbox entries records
// beside them, so that, should the process die, another can write the
// entries it never will: the webhooks mark who is in which room
// (member.joined sets a mark, member.left clears it), and a live process
// turns the marks a dead one left into member.left events. The store
// keeps a mark's bytes as given and never looks inside Name or Value.
type OutboxMark struct {
	// Owner is the process holding the mark: one run of it, which beats
	// (OutboxLedger.Beat) while it lives.
	Owner string
	// Name identifies the mark among its owner's; several owners may
	// hold a mark of one name (two processes serving one user).
	Name string
	// Key is the key of the entries the mark stands for: a sweeper
	// writing entries for it locks the key as Add does, so that they
	// take their place in the key's order.
	Key string
	// Value is the mark's content; nil clears the mark.
	Value []byte
}

// OutboxLedger is implemented by outboxes that keep marks beside their
// entries (the SQL stores').
type OutboxLedger interface {
	// AddMarked writes es, in order, and applies marks, in order (a mark
	// with a nil Value clears that owner's mark of that name), in one
	// transaction.
	AddMarked(ctx context.Context, es []OutboxEntry, marks []OutboxMark) error
	// Beat records that owner lives, now, and reports whether its beat
	// was recorded already: false for its first beat, and for a beat
	// after it was swept as dead (its marks are gone then).
	Beat(ctx context.Context, owner string) (found bool, err error)
	// Sweep finds the owners other than self whose last beat is older
	// than ttl and, for each one, in one transaction: locks its marks'
	// keys, asks compensate for the entries to write for its marks (told
	// which of their names other owners hold too), writes them, and
	// deletes the owner's marks and beat. Each dead owner is swept once,
	// by one sweeper, and compensate's entries must have keys among the
	// marks'. It returns how many owners it swept.
	Sweep(ctx context.Context, self string, ttl time.Duration, compensate func(dead []OutboxMark, heldElsewhere map[string]bool) []OutboxEntry) (int, error)
	// Retire deletes owner's marks and beat: the process stops cleanly.
	Retire(ctx context.Context, owner string) error
}

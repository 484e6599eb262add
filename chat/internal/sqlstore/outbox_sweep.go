package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// Sweeping, the ledger's other half (see outbox_ledger.go): a live
// process writes the entries that dead owners' marks stand for, and
// deletes the marks.

// errNotDead rolls back the sweep of an owner that another sweeper swept
// first, or that beat again since it was found dead.
var errNotDead = errors.New("owner not dead")

// Sweep implements chat.OutboxLedger. The dead owners are listed outside
// any transaction, then each is swept in a transaction of its own, so
// that one failing (compensate's entries refused, say) leaves the others
// swept and itself whole, to be swept again.
func (b *outbox) Sweep(ctx context.Context, self string, ttl time.Duration,
	compensate func(dead []chat.OutboxMark, heldElsewhere map[string]bool) []chat.OutboxEntry) (int, error) {
	if b.core.closed.Load() {
		return 0, b.errorf("sweep", chat.ErrClosed)
	}
	cutoff := time.Now().Add(-ttl).UnixMilli()
	var dead []string
	err := b.sql.DB.Query(ctx, b.ledger.deadOwners, []any{cutoff, self}, func(rows Rows) error {
		for rows.Next() {
			var o string
			if err := rows.Scan(&o); err != nil {
				return err
			}
			dead = append(dead, o)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, b.errorf("sweep", err)
	}
	swept := 0
	var first error
	for _, owner := range dead {
		if ctx.Err() != nil && first != nil {
			break // every further owner would fail the same way
		}
		wrote := false
		err := b.sql.Tx(ctx, func(tx DB) (err error) {
			wrote, err = b.sweepOwner(ctx, tx, owner, cutoff, compensate)
			return err
		})
		switch {
		case errors.Is(err, errNotDead):
		case err != nil:
			if first == nil {
				first = b.errorf("sweep", fmt.Errorf("owner %q: %w", owner, err))
			}
		default:
			swept++
			if wrote {
				b.signal()
			}
		}
	}
	return swept, first
}

// sweepOwner sweeps owner, found dead before cutoff, in tx, and reports
// whether it wrote entries.
func (b *outbox) sweepOwner(ctx context.Context, tx DB, owner string, cutoff int64,
	compensate func([]chat.OutboxMark, map[string]bool) []chat.OutboxEntry) (bool, error) {
	n, err := tx.Exec(ctx, b.ledger.claimOwner, owner, cutoff)
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, errNotDead
	}
	marks, err := b.ownerMarks(ctx, tx, owner)
	if err != nil || len(marks) == 0 {
		return false, err // an owner with no marks: its beat is deleted
	}
	keys := make(map[string]bool, len(marks))
	for _, m := range marks {
		keys[m.Key] = true
	}
	if err := b.lock(ctx, tx, slices.Collect(maps.Keys(keys))); err != nil {
		return false, err
	}
	held, err := b.heldElsewhere(ctx, tx, owner, marks)
	if err != nil {
		return false, err
	}
	es := compensate(marks, held)
	for _, e := range es {
		if !keys[e.Key] {
			// The key was not locked: the entry could commit out of its
			// key's order.
			return false, fmt.Errorf("compensating entry %q has key %q, not one of the marks'", e.ID, e.Key)
		}
	}
	if err := b.insertEntries(ctx, tx, es); err != nil {
		return false, err
	}
	_, err = tx.Exec(ctx, b.ledger.dropMarks, owner)
	return len(es) > 0, err
}

// ownerMarks reads owner's marks in tx.
func (b *outbox) ownerMarks(ctx context.Context, tx DB, owner string) ([]chat.OutboxMark, error) {
	var marks []chat.OutboxMark
	err := tx.Query(ctx, b.ledger.ownerMarks, []any{owner}, func(rows Rows) error {
		for rows.Next() {
			m := chat.OutboxMark{Owner: owner}
			var value string
			if err := rows.Scan(&m.Name, &m.Key, &value); err != nil {
				return err
			}
			m.Value = []byte(value)
			marks = append(marks, m)
		}
		return rows.Err()
	})
	return marks, err
}

// heldElsewhere reports, in tx, which of the names of owner's marks
// other owners hold too.
func (b *outbox) heldElsewhere(ctx context.Context, tx DB, owner string, marks []chat.OutboxMark) (map[string]bool, error) {
	names := make(map[string]string, len(marks)) // by hash
	hashes := make([]string, 0, len(marks))
	for _, m := range marks {
		h := nameHash(m.Name)
		names[h] = m.Name
		hashes = append(hashes, h)
	}
	held := make(map[string]bool)
	for q, args := range b.inHashes(b.ledger.heldElsewhere, owner, hashes) {
		err := tx.Query(ctx, q, args, func(rows Rows) error {
			for rows.Next() {
				var h string
				if err := rows.Scan(&h); err != nil {
					return err
				}
				held[names[h]] = true
			}
			return rows.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	return held, nil
}

package sqlstore

import (
	"context"
	"strconv"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// An entry waiting for a retry is one attempted before (attempts > 0)
// whose next attempt is not due yet (next_at in the future). While the
// receiver is down the sender probes it with the one due first
// (ClaimEarly), and once it is back makes them all due (Hurry). A
// hurried entry's next_at is its due time negated: below every now, so
// Claim takes it, and read back as the time it was due (see
// chat.Outbox.Hurry).

// outboxHurryBatch bounds the seqs one of Hurry's UPDATEs names, below
// every dialect's parameter limit.
const outboxHurryBatch = 500

// prepareEarly builds ClaimEarly's and Hurry's statements on the quoted
// table t.
func (b *outbox) prepareEarly(t string) {
	b.earlySQL = b.rebind(outboxCandidateColumns + t + ` o
WHERE o.attempts > 0 AND o.next_at > ? AND o.lease_until <= ?
AND NOT EXISTS (SELECT 1 FROM ` + t + ` p WHERE p.event_key = o.event_key AND p.seq < o.seq)
ORDER BY o.next_at, o.seq LIMIT ` + strconv.Itoa(outboxCandidates))
	// The lease is taken only if the entry is still as read: nobody
	// leased it since, nor hurried, retried or delivered it. A failed
	// probe's Retry then puts back what was there.
	b.earlyLeaseSQL = b.rebind(`UPDATE ` + t + ` SET lease_until = ? WHERE seq = ? AND lease_until <= ? AND attempts = ? AND next_at = ?`)
	b.waitingSQL = b.rebind(`SELECT seq FROM ` + t + ` WHERE attempts > 0 AND next_at > ? AND lease_until <= ?`)
	b.hurrySQL = `UPDATE ` + t + ` SET next_at = -next_at WHERE attempts > 0 AND next_at > ? AND lease_until <= ? AND seq IN `
}

// ClaimEarly implements chat.Outbox. Like Claim, it never hands out the
// entry of a message this process holds in doubt.
func (b *outbox) ClaimEarly(ctx context.Context, lease time.Duration) (chat.OutboxEntry, bool, error) {
	now := time.Now().UnixMilli()
	until := now + lease.Milliseconds()
	return b.claimFirst(ctx, "claim early", b.earlySQL, []any{now, now}, func(e chat.OutboxEntry) (string, []any) {
		return b.earlyLeaseSQL, []any{until, e.Seq, now, e.Attempts, e.Due.UnixMilli()}
	})
}

// Hurry implements chat.Outbox. It reads the waiting entries' seqs
// first and updates them by seq, rather than in one UPDATE that scans
// the table: under InnoDB's REPEATABLE READ a scanning UPDATE locks
// every row and gap it reads, and would deadlock with a transaction
// adding entries. Each UPDATE checks again that its rows still wait and
// are not leased, so an entry claimed in between is left to its claimer.
func (b *outbox) Hurry(ctx context.Context) (int, error) {
	if b.core.closed.Load() {
		return 0, b.errorf("hurry", chat.ErrClosed)
	}
	now := time.Now().UnixMilli()
	var seqs []any
	err := b.sql.DB.Query(ctx, b.waitingSQL, []any{now, now}, func(rows Rows) error {
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, b.errorf("hurry", err)
	}
	total := 0
	for len(seqs) > 0 {
		n := min(len(seqs), outboxHurryBatch)
		args := append([]any{now, now}, seqs[:n]...)
		changed, err := b.sql.DB.Exec(ctx, b.rebind(b.hurrySQL+inList(n)), args...)
		if err != nil {
			return total, b.errorf("hurry", err)
		}
		total += int(changed)
		seqs = seqs[n:]
	}
	if total > 0 {
		b.signal() // this process's idle claimers need not wait for their poll
	}
	return total, nil
}

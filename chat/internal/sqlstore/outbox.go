package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// OutboxSQL is what a store tells the Core about its outbox table. The
// statements the Core runs on it are the same in every dialect but for
// quoting and placeholders, which keeps the claiming rules in one place.
type OutboxSQL struct {
	// Table is the outbox table's name, unquoted, and Quote quotes it.
	Table string
	Quote func(string) string
	// Dollar numbers placeholders $1, $2... (PostgreSQL) instead of ?.
	Dollar bool
	// Create lists the statements that create the table and its index
	// when they are missing (CREATE ... IF NOT EXISTS), run in order. The
	// table has the columns seq (increasing order key, assigned by the
	// database), event_id, event_key, event_type, body (text), created_at,
	// msg_seq (the chat row's seq, NULL for events of their own),
	// attempts, next_at and lease_until (Unix milliseconds; 0 is never).
	Create []string
	// DB runs the statements, outside any transaction.
	DB DB
	// Locks, when set, names the lock table (unquoted) that keeps each
	// key's entries committing in seq order (see outbox_order.go): its
	// column bucket holds 0 to OutboxLockBuckets-1, and Create makes it
	// and its rows. A dialect whose writers take turns (SQLite) needs
	// none.
	Locks string
	// Tx runs f in a transaction, committed when f returns nil and
	// rolled back otherwise: every write of the outbox that is more than
	// one statement (Add's lock and insert, AddMarked, Beat, Sweep,
	// Retire) runs in one, so that a crash leaves all of it or none.
	// With Locks set, locked rows must be read as last committed (READ
	// COMMITTED, or stronger where that holds).
	Tx func(ctx context.Context, f func(tx DB) error) error
	// Marks names the ledger's table of marks (chat.OutboxMark), which
	// Create makes too: the columns owner (VARCHAR(64)), name_hash (the
	// lowercase hex SHA-256 of name, CHAR(64), so that a long name keys
	// and indexes in fixed width), name, mkey (the mark's Key) and value
	// (text), with the primary key (owner, name_hash) and an index on
	// name_hash, which tells a sweeper who else holds a name.
	Marks string
	// Owners names the ledger's table of beats, which Create makes too:
	// owner (VARCHAR(64)) as its primary key and seen, its last beat in
	// Unix milliseconds.
	Owners string
}

// outboxState is an enabled outbox and what a commit writes into it.
type outboxState struct {
	box    *outbox
	encode chat.OutboxEncoder
}

// outboxRowsPerInsert keeps one INSERT's parameters (7 an entry, 5 a
// mark) below every dialect's limit.
const outboxRowsPerInsert = 100

// outboxCandidates is how many claimable entries Claim reads at once, so
// that claimers racing for the first can each lease another.
const outboxCandidates = 16

// outboxColumns is the INSERT's column list; outboxValues one row of it.
const (
	outboxColumns = "(event_id, event_key, event_type, body, created_at, msg_seq, attempts, next_at, lease_until)"
	outboxValues  = "(?,?,?,?,?,?,0,?,0)"
)

// outboxCandidateColumns begins the SELECT of entries to claim: the
// columns scanCandidates reads, from the table named next.
const outboxCandidateColumns = `SELECT seq, event_id, event_key, event_type, body, created_at, attempts, COALESCE(msg_seq, 0), next_at FROM `

// EnableOutbox creates the outbox table (see OutboxSQL.Create) and, with
// encode not nil, makes every later commit write encode's entries: a
// store's commit gets them from OutboxInserts. It is the body of a
// store's chat.OutboxStore method.
func (c *Core) EnableOutbox(ctx context.Context, o OutboxSQL, encode chat.OutboxEncoder) (chat.Outbox, error) {
	if c.closed.Load() {
		return nil, c.errorf("enable outbox", chat.ErrClosed)
	}
	for _, q := range o.Create {
		if _, err := o.DB.Exec(ctx, q); err != nil {
			return nil, c.errorf("create outbox table "+o.Table, err)
		}
	}
	t := o.Quote(o.Table)
	b := &outbox{core: c, sql: o, wake: make(chan struct{}, 1)}
	b.insertSQL = "INSERT INTO " + t + " " + outboxColumns + " VALUES "
	// An entry is claimable when it heads its key (no older entry of the
	// key remains, whatever its state: in flight, waiting for a retry),
	// is due, and its lease, if any, has ended.
	b.claimSQL = b.rebind(outboxCandidateColumns + t + ` o
WHERE o.next_at <= ? AND o.lease_until <= ?
AND NOT EXISTS (SELECT 1 FROM ` + t + ` p WHERE p.event_key = o.event_key AND p.seq < o.seq)
ORDER BY o.seq LIMIT ` + strconv.Itoa(outboxCandidates))
	// The lease is taken only if nobody took it since the SELECT: of two
	// claimers, one changes the row and the other changes nothing.
	b.leaseSQL = b.rebind(`UPDATE ` + t + ` SET lease_until = ? WHERE seq = ? AND lease_until <= ? AND next_at <= ?`)
	b.doneSQL = b.rebind(`DELETE FROM ` + t + ` WHERE seq = ?`)
	b.retrySQL = b.rebind(`UPDATE ` + t + ` SET attempts = ?, next_at = ?, lease_until = 0 WHERE seq = ?`)
	b.statsSQL = `SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM ` + t
	b.undoSQL = "DELETE FROM " + t + " WHERE msg_seq IN "
	b.prepareEarly(t)
	b.ledger = newLedgerSQL(o)
	c.outbox.Store(&outboxState{box: b, encode: encode})
	return b, nil
}

// Stmt is one SQL statement and its arguments.
type Stmt struct {
	Query string
	Args  []any
}

// OutboxInserts returns the statements a commit runs, in its
// transaction, to write the outbox entries of stored (as the commit
// returns them, ids being their seq): none when no outbox is enabled.
func (c *Core) OutboxInserts(stored []protocol.StoredChatMessage) ([]Stmt, error) {
	st := c.outbox.Load()
	if st == nil || st.encode == nil {
		return nil, nil
	}
	var out []Stmt
	var q strings.Builder
	var args []any
	var keys []string
	n := 0
	flush := func() {
		if n > 0 {
			out = append(out, Stmt{Query: st.box.rebind(q.String()), Args: args})
		}
		q.Reset()
		args, n = nil, 0
	}
	for _, m := range stored {
		e, ok := st.encode(m)
		if !ok {
			continue
		}
		seq, err := strconv.ParseInt(m.ID, 10, 64)
		if err != nil { // new ids are their seq in every SQL store
			return nil, fmt.Errorf("outbox: message id %q is not its seq", m.ID)
		}
		if n == 0 {
			q.WriteString(st.box.insertSQL)
		} else {
			q.WriteByte(',')
		}
		q.WriteString(outboxValues)
		keys = append(keys, e.Key)
		args = append(args, e.ID, e.Key, e.Type, string(e.Body), e.Created.UnixMilli(), seq, e.Created.UnixMilli())
		if n++; n == outboxRowsPerInsert {
			flush()
		}
	}
	flush()
	// The keys are locked first, before any entry takes its seq.
	if lock, ok := st.box.lockStmt(keys); ok {
		out = slices.Insert(out, 0, lock)
	}
	return out, nil
}

// wakeOutbox tells an idle claimer that a commit wrote entries.
func (c *Core) wakeOutbox() {
	if st := c.outbox.Load(); st != nil && st.encode != nil {
		st.box.signal()
	}
}

// undoWithOutbox is the undo of a Doubt: the store's own, then the
// deletion of the rows' outbox entries, so that a message that is not
// stored has no webhook either. The chat rows go first because the
// store's undo waits, where it must, for the doubtful transaction to
// end; an error in either retries both, and both are idempotent.
func (c *Core) undoWithOutbox(ctx context.Context, d Doubt) error {
	if err := c.undo(ctx, d); err != nil {
		return err
	}
	st := c.outbox.Load()
	if st == nil {
		return nil
	}
	args := make([]any, len(d.Seqs))
	for i, s := range d.Seqs {
		args[i] = s
	}
	q := st.box.undoSQL + inList(len(d.Seqs))
	_, err := st.box.sql.DB.Exec(ctx, st.box.rebind(q), args...)
	return err
}

// outbox is chat.Outbox on a store's table.
type outbox struct {
	core *Core
	sql  OutboxSQL
	wake chan struct{} // capacity 1

	insertSQL, claimSQL, leaseSQL, doneSQL, retrySQL, statsSQL, undoSQL string
	// ClaimEarly's and Hurry's (outbox_early.go).
	earlySQL, earlyLeaseSQL, waitingSQL, hurrySQL string
	ledger                                        ledgerSQL
}

// rebind rewrites q's ? placeholders for the dialect.
func (b *outbox) rebind(q string) string { return Rebind(q, b.sql.Dollar) }

func (b *outbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *outbox) errorf(op string, err error) error {
	return b.core.errorf("outbox "+op, err)
}

// Table implements chat.Outbox.
func (b *outbox) Table() string { return b.sql.Table }

// Wake implements chat.Outbox.
func (b *outbox) Wake() <-chan struct{} { return b.wake }

// Add implements chat.Outbox.
func (b *outbox) Add(ctx context.Context, e chat.OutboxEntry) error {
	return b.write(ctx, "add", []chat.OutboxEntry{e}, nil)
}

// Claim implements chat.Outbox. It never hands out the entry of a message
// this process holds in doubt (see Core.Doubt): that entry is about to be
// deleted with its message.
func (b *outbox) Claim(ctx context.Context, lease time.Duration) (chat.OutboxEntry, bool, error) {
	now := time.Now().UnixMilli()
	until := now + lease.Milliseconds()
	return b.claimFirst(ctx, "claim", b.claimSQL, []any{now, now}, func(e chat.OutboxEntry) (string, []any) {
		return b.leaseSQL, []any{until, e.Seq, now, now}
	})
}

// claimFirst reads the candidates query returns (its columns
// outboxCandidateColumns) and leases the first whose message is not in
// doubt and that lease's statement changes: of two claimers, one changes
// the row and the other changes nothing, and tries the next.
func (b *outbox) claimFirst(ctx context.Context, op, query string, args []any, lease func(chat.OutboxEntry) (string, []any)) (chat.OutboxEntry, bool, error) {
	if b.core.closed.Load() {
		return chat.OutboxEntry{}, false, b.errorf(op, chat.ErrClosed)
	}
	var cands []chat.OutboxEntry
	var msgSeqs []int64
	err := b.sql.DB.Query(ctx, query, args, func(rows Rows) error {
		for rows.Next() {
			var e chat.OutboxEntry
			var body string
			var created, msgSeq, due int64
			if err := rows.Scan(&e.Seq, &e.ID, &e.Key, &e.Type, &body, &created, &e.Attempts, &msgSeq, &due); err != nil {
				return err
			}
			if due < 0 {
				due = -due // hurried: the time it was due (see Hurry)
			}
			e.Body, e.Created, e.Due = []byte(body), time.UnixMilli(created), time.UnixMilli(due)
			cands = append(cands, e)
			msgSeqs = append(msgSeqs, msgSeq)
		}
		return rows.Err()
	})
	if err != nil {
		return chat.OutboxEntry{}, false, b.errorf(op, err)
	}
	for i, e := range cands {
		if msgSeqs[i] != 0 && b.core.doubtful(strconv.FormatInt(msgSeqs[i], 10)) {
			continue
		}
		q, largs := lease(e)
		n, err := b.sql.DB.Exec(ctx, q, largs...)
		if err != nil {
			return chat.OutboxEntry{}, false, b.errorf(op, err)
		}
		if n == 1 {
			return e, true, nil
		}
	}
	return chat.OutboxEntry{}, false, nil
}

// Done implements chat.Outbox.
func (b *outbox) Done(ctx context.Context, e chat.OutboxEntry) error {
	if _, err := b.sql.DB.Exec(ctx, b.doneSQL, e.Seq); err != nil {
		return b.errorf("done", err)
	}
	return nil
}

// Retry implements chat.Outbox.
func (b *outbox) Retry(ctx context.Context, e chat.OutboxEntry) error {
	if _, err := b.sql.DB.Exec(ctx, b.retrySQL, e.Attempts, e.Due.UnixMilli(), e.Seq); err != nil {
		return b.errorf("retry", err)
	}
	return nil
}

// Stats implements chat.Outbox.
func (b *outbox) Stats(ctx context.Context) (int, time.Time, error) {
	var depth, oldest int64
	err := b.sql.DB.Query(ctx, b.statsSQL, nil, func(rows Rows) error {
		if !rows.Next() {
			return errors.New("no row")
		}
		if err := rows.Scan(&depth, &oldest); err != nil {
			return err
		}
		return rows.Err()
	})
	if err != nil {
		return 0, time.Time{}, b.errorf("stats", err)
	}
	if depth == 0 {
		return 0, time.Time{}, nil
	}
	return int(depth), time.UnixMilli(oldest), nil
}

// OutboxTableName is the outbox table of the chat table table:
// table+"_outbox", shortened with a hash of table when it would exceed
// maxLen (the dialect's identifier length), so that two chat tables never
// share an outbox.
func OutboxTableName(table string, maxLen int) string {
	return derivedTableName(table, "_outbox", maxLen)
}

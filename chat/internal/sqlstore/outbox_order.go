package sqlstore

import (
	"context"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/openlivesync/livesync/chat"
)

// Why the outbox's writers lock their keys.
//
// Claim hands out an entry when no entry of its key has a lower seq, and
// seq is assigned when the row is inserted, not when it commits. Two
// transactions writing entries of one key can therefore commit out of
// seq order: T1 inserts seq 11 and has not committed when T2 inserts seq
// 12 and commits. A claimer then sees 12 heading its key and delivers it;
// once T1 commits, 11 heads the key too and goes out while 12 is still in
// flight. The room's webhooks arrive out of order, two at a time.
//
// The server's room chat lock does not prevent it. A room's messages are
// stored one batch at a time per node (its chat mutex) and, in a cluster,
// under the room's cluster-wide chat lock, so two chat commits of one room
// do interleave only when that lock is not held: Redis unreachable, the
// lock not had within its wait, or its TTL run out under a slow commit.
// But the other events of a room (member.joined, room.vacated...) and a
// user's (user.online, user.offline) are added by Outbox.Add, outside any
// lock, from whichever node saw them, so an Add routinely races a chat
// commit of its room, or another node's Add.
//
// So every transaction that writes outbox entries first locks a row per
// key, in the lock table (OutboxSQL.Locks), before its inserts: a second
// writer of the key waits there until the first has committed or rolled
// back, and only then takes its seq. Within a key, seq order is then
// commit order, and an entry is visible only once every lower-seq entry
// of its key is. The rows are buckets of a hash of the key, a fixed
// number of them created with the table: the table never grows, and two
// keys sharing a bucket only wait for each other. Buckets are locked in
// ascending order, so two writers of several keys never deadlock.

// OutboxLockBuckets is how many rows the lock table holds, numbered from
// 0 in its column bucket.
const OutboxLockBuckets = 1024

// OutboxLockRows lists the lock table's rows as VALUES rows, "(0),(1),…",
// for the dialect's INSERT that creates them.
func OutboxLockRows() string {
	var b strings.Builder
	for i := range OutboxLockBuckets {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(" + strconv.Itoa(i) + ")")
	}
	return b.String()
}

// bucketOf is key's row in the lock table.
func bucketOf(key string) int64 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int64(h.Sum32() % OutboxLockBuckets)
}

// lockStmt returns the statement that locks keys' buckets in the
// transaction it runs in, or false when the outbox has no lock table
// (its writers take turns anyway).
func (b *outbox) lockStmt(keys []string) (Stmt, bool) {
	if b.sql.Locks == "" || len(keys) == 0 {
		return Stmt{}, false
	}
	buckets := make([]int64, len(keys))
	for i, k := range keys {
		buckets[i] = bucketOf(k)
	}
	slices.Sort(buckets)
	buckets = slices.Compact(buckets)
	args := make([]any, len(buckets))
	for i, n := range buckets {
		args[i] = n
	}
	q := "SELECT bucket FROM " + b.sql.Quote(b.sql.Locks) + " WHERE bucket IN " + inList(len(buckets)) + " ORDER BY bucket FOR UPDATE"
	return Stmt{Query: b.rebind(q), Args: args}, true
}

// lock locks keys' buckets in tx, until it ends, when the outbox has a
// lock table: see above.
func (b *outbox) lock(ctx context.Context, tx DB, keys []string) error {
	lock, ok := b.lockStmt(keys)
	if !ok {
		return nil
	}
	return tx.Query(ctx, lock.Query, lock.Args, func(rows Rows) error {
		for rows.Next() {
		}
		return rows.Err()
	})
}

// AddBatch writes es, in their order, as Add writes one: after locking
// their keys' buckets, in one transaction. A writer of many events (the
// webhooks persisting a run of joins and leaves) then commits once
// rather than once each.
func (b *outbox) AddBatch(ctx context.Context, es []chat.OutboxEntry) error {
	return b.write(ctx, "add", es, nil)
}

// write is Add, AddBatch and AddMarked: in one transaction, it locks the
// buckets of every key written (the entries' and the marks', so that a
// sweeper writing entries for the marks waits for it), inserts es behind
// the entries of their keys, and applies marks. op names the caller in
// errors.
func (b *outbox) write(ctx context.Context, op string, es []chat.OutboxEntry, marks []chat.OutboxMark) error {
	if len(es) == 0 && len(marks) == 0 {
		return nil
	}
	if b.core.closed.Load() {
		return b.errorf(op, chat.ErrClosed)
	}
	keys := make([]string, 0, len(es)+len(marks))
	for _, e := range es {
		keys = append(keys, e.Key)
	}
	for _, m := range marks {
		keys = append(keys, m.Key)
	}
	err := b.sql.Tx(ctx, func(tx DB) error {
		if err := b.lock(ctx, tx, keys); err != nil {
			return err
		}
		if err := b.insertEntries(ctx, tx, es); err != nil {
			return err
		}
		return b.applyMarks(ctx, tx, marks)
	})
	if err != nil {
		return b.errorf(op, err)
	}
	if len(es) > 0 {
		b.signal()
	}
	return nil
}

// insertEntries inserts es in tx, in their order, as events of their own
// (msg_seq NULL).
func (b *outbox) insertEntries(ctx context.Context, tx DB, es []chat.OutboxEntry) error {
	rows := make([][]any, len(es))
	for i, e := range es {
		rows[i] = []any{e.ID, e.Key, e.Type, string(e.Body), e.Created.UnixMilli(), nil, e.Created.UnixMilli()}
	}
	return b.insertRows(ctx, tx, b.insertSQL, outboxValues, rows)
}

// insertRows runs, in tx, the INSERT prefix followed by a values tuple
// (its placeholders) per row, outboxRowsPerInsert rows a statement: a
// batch costs few round trips, and no statement has too many parameters.
func (b *outbox) insertRows(ctx context.Context, tx DB, prefix, values string, rows [][]any) error {
	for chunk := range slices.Chunk(rows, outboxRowsPerInsert) {
		q := prefix + values + strings.Repeat(","+values, len(chunk)-1)
		args := make([]any, 0, len(chunk)*len(chunk[0]))
		for _, r := range chunk {
			args = append(args, r...)
		}
		if _, err := tx.Exec(ctx, b.rebind(q), args...); err != nil {
			return err
		}
	}
	return nil
}

// OutboxLocksTableName is the lock table of the chat table table's
// outbox: table+"_outbox_locks", shortened with a hash of table when it
// would exceed maxLen.
func OutboxLocksTableName(table string, maxLen int) string {
	return derivedTableName(table, "_outbox_locks", maxLen)
}

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
	q := "SELECT bucket FROM " + b.sql.Quote(b.sql.Locks) + " WHERE bucket IN (?" + strings.Repeat(",?", len(buckets)-1) +
		") ORDER BY bucket FOR UPDATE"
	return Stmt{Query: b.rebind(q), Args: args}, true
}

// addLocked runs insert, the INSERT of one entry of key, in a
// transaction of its own after locking key's bucket.
func (b *outbox) addLocked(ctx context.Context, key string, insert Stmt) error {
	lock, ok := b.lockStmt([]string{key})
	if !ok {
		_, err := b.sql.DB.Exec(ctx, insert.Query, insert.Args...)
		return err
	}
	return b.sql.Tx(ctx, func(tx DB) error {
		if err := tx.Query(ctx, lock.Query, lock.Args, func(rows Rows) error {
			for rows.Next() {
			}
			return rows.Err()
		}); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, insert.Query, insert.Args...)
		return err
	})
}

// AddBatch writes es, in their order, as Add writes one: after locking
// their keys' buckets, in one transaction where the dialect locks (one
// statement per outboxRowsPerInsert entries otherwise, its writers
// taking turns). A writer of many events (the webhooks persisting a run
// of joins and leaves) then commits once rather than once each.
func (b *outbox) AddBatch(ctx context.Context, es []chat.OutboxEntry) error {
	if len(es) == 0 {
		return nil
	}
	if b.core.closed.Load() {
		return b.errorf("add", chat.ErrClosed)
	}
	var inserts []Stmt
	keys := make([]string, 0, len(es))
	for chunk := range slices.Chunk(es, outboxRowsPerInsert) {
		q := b.insertSQL + outboxValues + strings.Repeat(","+outboxValues, len(chunk)-1)
		args := make([]any, 0, 7*len(chunk))
		for _, e := range chunk {
			keys = append(keys, e.Key)
			args = append(args, e.ID, e.Key, e.Type, string(e.Body), e.Created.UnixMilli(), nil, e.Created.UnixMilli())
		}
		inserts = append(inserts, Stmt{Query: b.rebind(q), Args: args})
	}
	var err error
	if lock, ok := b.lockStmt(keys); ok {
		err = b.sql.Tx(ctx, func(tx DB) error {
			if err := tx.Query(ctx, lock.Query, lock.Args, func(rows Rows) error {
				for rows.Next() {
				}
				return rows.Err()
			}); err != nil {
				return err
			}
			for _, in := range inserts {
				if _, err := tx.Exec(ctx, in.Query, in.Args...); err != nil {
					return err
				}
			}
			return nil
		})
	} else {
		for _, in := range inserts {
			if _, err = b.sql.DB.Exec(ctx, in.Query, in.Args...); err != nil {
				break
			}
		}
	}
	if err != nil {
		return b.errorf("add", err)
	}
	b.signal()
	return nil
}

// OutboxLocksTableName is the lock table of the chat table table's
// outbox: table+"_outbox_locks", shortened with a hash of table when it
// would exceed maxLen.
func OutboxLocksTableName(table string, maxLen int) string {
	return derivedTableName(table, "_outbox_locks", maxLen)
}

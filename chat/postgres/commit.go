package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/groupcommit"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/protocol"
)

// insertSQL stores a whole batch with one statement. $1 is the seq
// sequence and $2 the batch size; $3..$7 are parallel arrays of room,
// connection, user ("" for NULL), message and metadata ("" for NULL); $8
// is created_at. It returns the rows' seq before COMMIT, so that a
// transaction whose COMMIT goes unanswered can be undone (see commitOnce).
//
// The batch's seq values are drawn first and numbered in increasing
// order; the i-th message of the arrays (WITH ORDINALITY) gets the i-th
// smallest, so order keys follow the batch order whatever order the
// database evaluates rows in.
func insertSQL(table, metadataCast string) string {
	return fmt.Sprintf(`WITH drawn AS (SELECT nextval($1::regclass) AS seq FROM generate_series(1, $2::int)),
numbered AS (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM drawn)
INSERT INTO %s (seq, id, room_id, connection_id, user_id, message, metadata, created_at)
SELECT n.seq, n.seq::text, x.r, x.c, NULLIF(x.u, ''), x.m, NULLIF(x.md, '')%s, $8
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS x(r, c, u, m, md, rn)
JOIN numbered n ON n.rn = x.rn
RETURNING seq`, quote(table), metadataCast)
}

func historySQL(table string) string {
	return fmt.Sprintf(`SELECT id, room_id, COALESCE(connection_id, ''), COALESCE(user_id, ''), COALESCE(message, ''),
	COALESCE(metadata::text, ''), COALESCE(created_at, 0)
FROM %s WHERE room_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3`, quote(table))
}

// beforeSQL reads, newest first, up to $4 messages of room $1 older than
// the message whose id is $2. The cursor's seq is looked up by id (the
// id's unique index) rather than parsed from it: a row migrated from the
// Node.js package may have a numeric id that is not its seq. A deleted
// message's is looked up in the table of deleted ids, and a cursor in
// neither (deleted before that table existed) is its own seq, $3.
func beforeSQL(table, deleted string) string {
	return fmt.Sprintf(`SELECT id, room_id, COALESCE(connection_id, ''), COALESCE(user_id, ''), COALESCE(message, ''),
	COALESCE(metadata::text, ''), COALESCE(created_at, 0)
FROM %[1]s WHERE room_id = $1
AND seq < COALESCE((SELECT seq FROM %[1]s WHERE id = $2), (SELECT seq FROM %[2]s WHERE id = $2), $3)
ORDER BY seq DESC LIMIT $4`, quote(table), quote(deleted))
}

// cursorSQL tells whether $1 is the id of a message, stored or deleted.
func cursorSQL(table, deleted string) string {
	return fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE id = $1) OR EXISTS (SELECT 1 FROM %s WHERE id = $1)`,
		quote(table), quote(deleted))
}

// deleteOneSQL removes the message $1 of room $2 and records its id and
// seq in the table of deleted ids, in one statement, and counts the rows
// it removed.
func deleteOneSQL(table, deleted string) string {
	return fmt.Sprintf(`WITH gone AS (DELETE FROM %s WHERE id = $1 AND room_id = $2 RETURNING id, seq),
recorded AS (INSERT INTO %s (id, seq) SELECT id, seq FROM gone ON CONFLICT (id) DO NOTHING)
SELECT count(*) FROM gone`, quote(table), quote(deleted))
}

// commit is the groupcommit.CommitFunc: it stores msgs in one
// transaction. When the attempt failed before anything reached the
// server (a connection found dead while writing to it), nothing can have
// been stored, so it tries once more on a fresh connection. Connections
// already known dead never get the statement: acquire discards them.
func (s *Store) commit(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	for attempt := 0; ; attempt++ {
		out, err := s.commitOnce(ctx, msgs)
		if err != nil && attempt == 0 && pgconn.SafeToRetry(err) && ctx.Err() == nil {
			continue
		}
		return out, err
	}
}

// commitOnce stores msgs in an explicit transaction, in two round trips:
// BEGIN, the transaction's id and the INSERT, which returns the rows'
// seq, go together; then COMMIT. Every failure before COMMIT was sent
// leaves nothing stored, provided the transaction is rolled back or its
// connection closed, which the server then rolls back: such errors are
// marked groupcommit.RolledBack. ctx ending makes pgx close the
// connection, so a hung server cannot hold the append past ctx.
//
// If ctx ends, or the connection breaks, after COMMIT was sent and before
// its answer, the transaction may have committed: its rows are handed to
// the Core as doubtful (hidden from reads, then deleted by undo), and the
// error tells the callers they are not stored.
func (s *Store) commitOnce(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	conn, err := s.acquire(ctx)
	if err != nil {
		return nil, groupcommit.RolledBack(err)
	}
	n := len(msgs)
	rooms, conns, users, texts, metas := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, m := range msgs {
		rooms[i], conns[i], users[i], texts[i], metas[i] = m.RoomID, m.ConnectionID, m.UserID, m.Message, string(m.Metadata)
	}
	now := time.Now().UnixMilli()

	var xid string
	var seqs []int64
	batch := &pgx.Batch{}
	batch.Queue("BEGIN")
	batch.Queue("SELECT txid_current()::text").QueryRow(func(row pgx.Row) error { return row.Scan(&xid) })
	batch.Queue(s.insertSQL, s.sequence, n, rooms, conns, users, texts, metas, now).Query(func(rows pgx.Rows) error {
		var err error
		seqs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		s.abort(ctx, conn)
		return nil, groupcommit.RolledBack(err)
	}
	if len(seqs) != n {
		s.abort(ctx, conn)
		return nil, groupcommit.RolledBack(fmt.Errorf("stored %d of %d messages", len(seqs), n))
	}
	slices.Sort(seqs)
	out := make([]protocol.StoredChatMessage, n)
	for i, m := range msgs {
		out[i] = sqlstore.Stored(m, strconv.FormatInt(seqs[i], 10), now)
	}
	// The outbox entries of the messages, when it is enabled, commit or
	// roll back with them: one more round trip, only then.
	stmts, err := s.core.OutboxInserts(out)
	if err != nil {
		s.abort(ctx, conn)
		return nil, groupcommit.RolledBack(err)
	}
	for _, st := range stmts {
		if _, err := conn.Exec(ctx, st.Query, st.Args...); err != nil {
			s.abort(ctx, conn)
			return nil, groupcommit.RolledBack(err)
		}
	}

	if s.beforeCommit != nil {
		s.beforeCommit()
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		if pgconn.SafeToRetry(err) || isStatementError(err) {
			// COMMIT never left (ctx had ended, the connection was found
			// dead), or the server answered it with an error, which means
			// it rolled back.
			s.abort(ctx, conn)
			return nil, groupcommit.RolledBack(err)
		}
		discard(conn)
		s.core.Doubt(sqlstore.Doubt{Seqs: seqs, Tx: xid})
		return nil, fmt.Errorf("%w: %w", errCommitUnknown, err)
	}
	conn.Release()
	return out, nil
}

// errCommitUnknown prefixes the error of a COMMIT whose answer never
// came.
var errCommitUnknown = errors.New("not stored: the answer to COMMIT was lost, so the messages, if committed, are being deleted")

// abort ends a transaction that did not reach COMMIT: ROLLBACK on a
// connection that is still usable, else the connection is closed, which
// makes the server roll back. A connection is never returned to the
// pool inside a transaction.
func (s *Store) abort(ctx context.Context, conn *pgxpool.Conn) {
	if ctx.Err() == nil && !conn.Conn().IsClosed() {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err == nil && conn.Conn().PgConn().TxStatus() == 'I' {
			conn.Release()
			return
		}
	}
	discard(conn)
}

// undo is the store's sqlstore.UndoFunc. A transaction whose COMMIT went
// unanswered may still be running on the server (COMMIT in flight, or
// the server not yet aware the connection is gone), and a DELETE does
// not wait for rows another transaction has not committed: so undo first
// asks txid_status, and deletes only once the transaction has ended.
func (s *Store) undo(ctx context.Context, d sqlstore.Doubt) error {
	return s.read(ctx, func(conn *pgxpool.Conn) error {
		if d.Tx != "" {
			var status *string
			if err := conn.QueryRow(ctx, "SELECT txid_status($1::bigint)", d.Tx).Scan(&status); err != nil {
				return err
			}
			switch {
			case status == nil: // too old to tell: delete anyway
			case *status == "aborted":
				return nil
			case *status == "in progress":
				return fmt.Errorf("transaction %s is still in progress", d.Tx)
			}
		}
		_, err := conn.Exec(ctx, s.deleteSQL, d.Seqs)
		return err
	})
}

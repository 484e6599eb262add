package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/groupcommit"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/protocol"
)

// insertSQL stores a whole batch with one statement, which PostgreSQL
// runs as one transaction: one round trip and one commit per batch. $1 is
// the seq sequence and $2 the batch size; $3..$7 are parallel arrays of
// room, connection, user ("" for NULL), message and metadata ("" for
// NULL); $8 is created_at.
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

// beforeSQL reads, newest first, up to $3 messages of room $1 older than
// the message whose id is $2. The cursor's seq is looked up by id (the
// id's unique index) rather than parsed from it: a row migrated from the
// Node.js package may have a numeric id that is not its seq.
func beforeSQL(table string) string {
	return fmt.Sprintf(`SELECT id, room_id, COALESCE(connection_id, ''), COALESCE(user_id, ''), COALESCE(message, ''),
	COALESCE(metadata::text, ''), COALESCE(created_at, 0)
FROM %[1]s WHERE room_id = $1 AND seq < (SELECT seq FROM %[1]s WHERE id = $2) ORDER BY seq DESC LIMIT $3`, quote(table))
}

// cursorSQL tells whether $1 is the id of a message.
func cursorSQL(table string) string {
	return fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE id = $1)`, quote(table))
}

// commit is the groupcommit.CommitFunc: it stores msgs with one
// statement. When the statement failed before any of it reached the
// server (a connection found dead while writing it), nothing can have
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

func (s *Store) commitOnce(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	conn, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()

	n := len(msgs)
	rooms, conns, users, texts, metas := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, m := range msgs {
		rooms[i], conns[i], users[i], texts[i], metas[i] = m.RoomID, m.ConnectionID, m.UserID, m.Message, string(m.Metadata)
	}
	now := time.Now().UnixMilli()
	rows, err := conn.Query(ctx, s.insertSQL, s.sequence, n, rooms, conns, users, texts, metas, now)
	if err != nil {
		return nil, rolledBackIf(err)
	}
	// Reading to the end waits for the statement's commit.
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, rolledBackIf(err)
	}
	if len(seqs) != n {
		return nil, fmt.Errorf("stored %d of %d messages", len(seqs), n)
	}
	slices.Sort(seqs)
	out := make([]protocol.StoredChatMessage, n)
	for i, m := range msgs {
		out[i] = sqlstore.Stored(m, strconv.FormatInt(seqs[i], 10), now)
	}
	return out, nil
}

// rolledBackIf marks err as certainly not committed when the server
// rejected the statement, so the committer can retry each caller's
// messages on their own and fail only the one with bad data. Any other
// error (a connection lost mid-statement) leaves the outcome unknown.
func rolledBackIf(err error) error {
	if isStatementError(err) {
		return groupcommit.RolledBack(err)
	}
	return err
}

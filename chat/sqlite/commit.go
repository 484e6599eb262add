package sqlite

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/groupcommit"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/protocol"
)

// rowsPerInsert keeps one INSERT's parameters (8 a row) far below
// SQLite's limit on host parameters.
const rowsPerInsert = 100

// commit is the groupcommit.CommitFunc: it stores msgs in one
// transaction. Every wait, for the file's lock under the busy timeout
// too, ends with ctx (modernc's busy handler watches it), so a database
// another connection holds locked fails the append by its deadline. BEGIN IMMEDIATE takes the write lock first, so the next
// seq, read from sqlite_sequence and the table, cannot be taken by anyone
// else, even another process, before this transaction commits; the
// batch gets the values from there on, in its order.
func (s *Store) commit(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	now := time.Now().UnixMilli()
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, groupcommit.RolledBack(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var last int64
	if err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT max(
		COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?), 0),
		COALESCE((SELECT max(seq) FROM %s), 0))`, quote(s.table)), s.table).Scan(&last); err != nil {
		return nil, groupcommit.RolledBack(err)
	}
	out := make([]protocol.StoredChatMessage, len(msgs))
	for start := 0; start < len(msgs); start += rowsPerInsert {
		chunk := msgs[start:min(len(msgs), start+rowsPerInsert)]
		var q strings.Builder
		q.WriteString("INSERT INTO ")
		q.WriteString(quote(s.table))
		q.WriteString(" (seq, id, room_id, connection_id, user_id, message, metadata, created_at) VALUES ")
		args := make([]any, 0, 8*len(chunk))
		for i, m := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?,?,?,?)")
			seq := last + int64(start+i) + 1
			id := strconv.FormatInt(seq, 10)
			var user, meta any
			if m.UserID != "" {
				user = m.UserID
			}
			if len(m.Metadata) > 0 {
				meta = string(m.Metadata)
			}
			args = append(args, seq, id, m.RoomID, m.ConnectionID, user, m.Message, meta, now)
			out[start+i] = sqlstore.Stored(m, id, now)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			// Nothing is committed before COMMIT: the caller may retry.
			return nil, groupcommit.RolledBack(err)
		}
	}
	// The outbox entries of the messages, when it is enabled, commit or
	// roll back with them.
	stmts, err := s.core.OutboxInserts(out)
	if err != nil {
		return nil, groupcommit.RolledBack(err)
	}
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st.Query, st.Args...); err != nil {
			return nil, groupcommit.RolledBack(err)
		}
	}
	// SQLite runs in this process: a COMMIT that returned an error did
	// not commit (database/sql returns ctx's error without committing
	// once ctx has ended), so the outcome is never unknown.
	if err := tx.Commit(); err != nil {
		return nil, groupcommit.RolledBack(err)
	}
	return out, nil
}

// undo is the store's sqlstore.UndoFunc, for messages a commit stored
// just after their callers gave up.
func (s *Store) undo(ctx context.Context, d sqlstore.Doubt) error {
	return sqlstore.DeleteSeqs(ctx, s.writer, quote(s.table), d.Seqs)
}

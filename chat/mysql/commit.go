package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/groupcommit"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/protocol"
)

// commit is the groupcommit.CommitFunc: it stores msgs in one
// transaction. When the connection turns out to be dead (e.g. the server
// restarted) before COMMIT was sent, nothing can have been stored, so it
// tries once more on a fresh connection.
func (s *Store) commit(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	for attempt := 0; ; attempt++ {
		out, retry, err := s.commitOnce(ctx, msgs)
		if err != nil && retry && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return out, err
	}
}

// commitOnce inserts the batch with one multi-row INSERT. The rows carry
// temporary IDs unique to this batch; the AUTO_INCREMENT values of one
// such INSERT are consecutive and in row order, so once LAST_INSERT_ID
// gives the first, an UPDATE over that seq range sets each ID to its seq.
// The UPDATE touching exactly the batch's rows proves the range right.
// retry reports an error before COMMIT on a connection that broke.
//
// The transaction is driven by statements on a connection of its own
// rather than database/sql's Tx, whose Commit the driver does not let a
// context interrupt: every statement, COMMIT included, is cut short when
// ctx ends (the driver then closes the connection). Any failure before
// COMMIT was sent leaves nothing stored (ROLLBACK, or the connection
// discarded, which the server rolls back) and is marked
// groupcommit.RolledBack. A COMMIT sent but unanswered leaves the outcome
// unknown: the rows' seq, known from LAST_INSERT_ID, go to the Core as
// doubtful, hidden from reads and deleted in the background.
func (s *Store) commitOnce(ctx context.Context, msgs []chat.Message) (_ []protocol.StoredChatMessage, retry bool, err error) {
	var tag [6]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return nil, false, err
	}
	prefix := "~" + hex.EncodeToString(tag[:]) + "."
	n := len(msgs)
	now := time.Now().UnixMilli()

	var q strings.Builder
	q.Grow(128 + 16*n)
	q.WriteString("INSERT INTO ")
	q.WriteString(quote(s.table))
	q.WriteString(" (id, room_id, connection_id, user_id, message, metadata, created_at) VALUES ")
	args := make([]any, 0, 7*n)
	for i, m := range msgs {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?)")
		var user, meta any
		if m.UserID != "" {
			user = m.UserID
		}
		if len(m.Metadata) > 0 {
			meta = string(m.Metadata)
		}
		args = append(args, prefix+strconv.Itoa(i), m.RoomID, m.ConnectionID, user, m.Message, meta, now)
	}

	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, isBrokenConn(err), groupcommit.RolledBack(err)
	}
	ended := false // COMMIT answered, or ROLLBACK done: the connection may be reused
	defer func() {
		if !ended {
			abort(ctx, conn)
		}
		conn.Close() // back to the pool, or discarded by abort
	}()
	if _, err := conn.ExecContext(ctx, "START TRANSACTION"); err != nil {
		return nil, isBrokenConn(err), groupcommit.RolledBack(err)
	}
	res, err := conn.ExecContext(ctx, q.String(), args...)
	if err != nil {
		return nil, isBrokenConn(err), groupcommit.RolledBack(err)
	}
	first, err := res.LastInsertId()
	if err != nil {
		return nil, false, groupcommit.RolledBack(fmt.Errorf("read the first AUTO_INCREMENT value: %w", err))
	}
	seqs := make([]int64, n)
	for i := range seqs {
		seqs[i] = first + int64(i)*s.autoIncStep
	}
	res, err = conn.ExecContext(ctx, "UPDATE "+quote(s.table)+" SET id = CAST(seq AS CHAR) WHERE seq BETWEEN ? AND ? AND id LIKE ?",
		first, seqs[n-1], prefix+"%")
	if err != nil {
		return nil, isBrokenConn(err), groupcommit.RolledBack(err)
	}
	changed, err := res.RowsAffected()
	if err != nil {
		return nil, false, groupcommit.RolledBack(fmt.Errorf("count the rows given IDs: %w", err))
	}
	if changed != int64(n) {
		return nil, false, groupcommit.RolledBack(fmt.Errorf(
			"the batch's %d AUTO_INCREMENT values were not consecutive from %d (innodb_autoinc_lock_mode 2 with a concurrent bulk insert?)", n, first))
	}
	out := make([]protocol.StoredChatMessage, n)
	for i, m := range msgs {
		out[i] = sqlstore.Stored(m, strconv.FormatInt(seqs[i], 10), now)
	}
	// The outbox entries of the messages, when it is enabled, commit or
	// roll back with them.
	stmts, err := s.core.OutboxInserts(out)
	if err != nil {
		return nil, false, groupcommit.RolledBack(err)
	}
	for _, st := range stmts {
		if _, err := conn.ExecContext(ctx, st.Query, st.Args...); err != nil {
			return nil, isBrokenConn(err), groupcommit.RolledBack(err)
		}
	}
	if s.beforeCommit != nil {
		s.beforeCommit()
	}
	if err := ctx.Err(); err != nil {
		return nil, false, groupcommit.RolledBack(err) // COMMIT not sent
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		if isStatementError(err) {
			return nil, false, groupcommit.RolledBack(err) // the server refused it: rolled back
		}
		// Sent, or maybe sent: the answer never came.
		s.core.Doubt(sqlstore.Doubt{Seqs: seqs})
		return nil, false, fmt.Errorf("%w: %w", errCommitUnknown, err)
	}
	ended = true
	return out, false, nil
}

// errCommitUnknown prefixes the error of a COMMIT whose answer never
// came.
var errCommitUnknown = errors.New("not stored: the answer to COMMIT was lost, so the messages, if committed, are being deleted")

// abort ends a transaction that did not commit: ROLLBACK while ctx
// allows, else, or when that fails, the connection is discarded, which
// makes the server roll back. A connection never goes back to the pool
// inside a transaction.
func abort(ctx context.Context, conn *sql.Conn) {
	if ctx.Err() == nil {
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err == nil {
			return
		}
	}
	// Returning driver.ErrBadConn from Raw makes database/sql close the
	// connection instead of pooling it.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// undo is the store's sqlstore.UndoFunc. InnoDB's DELETE waits for the
// row locks of a transaction that inserted the rows and has not ended
// (COMMIT still in flight), so once it succeeds the rows are gone for
// good; while it waits past ctx, it fails and is retried later.
func (s *Store) undo(ctx context.Context, d sqlstore.Doubt) error {
	return sqlstore.DeleteSeqs(ctx, s.db, quote(s.table), d.Seqs)
}

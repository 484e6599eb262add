package mysql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, isBrokenConn(err), err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.ExecContext(ctx, q.String(), args...)
	if err != nil {
		return nil, isBrokenConn(err), rolledBackIf(err)
	}
	first, err := res.LastInsertId()
	if err != nil {
		return nil, false, groupcommit.RolledBack(fmt.Errorf("read the first AUTO_INCREMENT value: %w", err))
	}
	last := first + int64(n-1)*s.autoIncStep
	res, err = tx.ExecContext(ctx, "UPDATE "+quote(s.table)+" SET id = CAST(seq AS CHAR) WHERE seq BETWEEN ? AND ? AND id LIKE ?",
		first, last, prefix+"%")
	if err != nil {
		return nil, isBrokenConn(err), rolledBackIf(err)
	}
	changed, err := res.RowsAffected()
	if err != nil {
		return nil, false, groupcommit.RolledBack(fmt.Errorf("count the rows given IDs: %w", err))
	}
	if changed != int64(n) {
		return nil, false, groupcommit.RolledBack(fmt.Errorf(
			"the batch's %d AUTO_INCREMENT values were not consecutive from %d (innodb_autoinc_lock_mode 2 with a concurrent bulk insert?)", n, first))
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err // the outcome is unknown if the connection broke during COMMIT
	}
	out := make([]protocol.StoredChatMessage, n)
	for i, m := range msgs {
		out[i] = sqlstore.Stored(m, strconv.FormatInt(first+int64(i)*s.autoIncStep, 10), now)
	}
	return out, false, nil
}

// rolledBackIf marks err as certainly not committed when the server
// rejected the statement, so the committer can retry each caller's
// messages on their own and fail only the one with bad data.
func rolledBackIf(err error) error {
	if isStatementError(err) {
		return groupcommit.RolledBack(err)
	}
	return err
}

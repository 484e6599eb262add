// Package sqlstore is what the SQL chat stores (chat/postgres, chat/mysql,
// chat/sqlite) share above their SQL: the table-name rule, reading rows
// into messages, and Core, which turns a store's three dialect queries
// into the chat.Store and chat.Pager contract (defaults, paging, cursor
// errors, oldest-first order) and runs appends through the group
// committer. It builds no SQL for the chat table: each store keeps its
// dialect's statements, connection handling and schema migration, so a
// fix to the contract is made once while the dialects stay free to
// differ. The tables beside it, the outbox (EnableOutbox) and the
// documents (EnableDocs), are simple enough that their statements are
// built here, from each store's quoting, placeholders, hints and
// transactions.
package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// tableNameRE is the table-name rule of every SQL store: 63 characters is
// PostgreSQL's identifier limit (MySQL's is 64), and letters, digits and
// underscores need no quoting rules of their own, so a name valid for one
// store is valid for all and a deployment can move between databases
// without renaming its table.
var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// CheckTableName refuses a table name the stores cannot quote safely into
// their SQL. The stores check it before connecting, so a typo in a
// configuration fails at once rather than after a connection timeout.
func CheckTableName(name string) error {
	if !tableNameRE.MatchString(name) {
		return fmt.Errorf("invalid table name %q: want ^[A-Za-z_][A-Za-z0-9_]{0,62}$", name)
	}
	return nil
}

// Rows is what ScanMessages needs of a result set; pgx.Rows and *sql.Rows
// both have it. Closing the rows stays with the caller, since the two
// Close methods differ. Scan must copy into a *[]byte, as both do, since
// the messages outlive the rows.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanMessages reads every row of rows into messages, in the order read.
// The query must select, in this order: id, room_id, connection_id,
// user_id, message, metadata, created_at, each as text or integer with
// NULL replaced (by the empty string in text columns, by 0 in
// created_at), so a migrated row with NULLs still scans. capHint is the
// most rows expected; the result is never nil, so it encodes as a JSON
// array.
func ScanMessages(rows Rows, capHint int) ([]protocol.StoredChatMessage, error) {
	out := make([]protocol.StoredChatMessage, 0, max(min(capHint, 256), 0))
	var buf bytes.Buffer
	for rows.Next() {
		var m protocol.StoredChatMessage
		var meta []byte
		if err := rows.Scan(&m.ID, &m.RoomID, &m.ConnectionID, &m.UserID, &m.Message, &meta, &m.CreatedAt); err != nil {
			return nil, fmt.Errorf("read row: %w", err)
		}
		m.Metadata = normalizeMetadata(meta, &buf)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rows: %w", err)
	}
	return out, nil
}

// normalizeMetadata turns a metadata column's text into what clients
// receive: nil when empty, otherwise compact JSON. Compacting undoes the
// spacing that PostgreSQL's JSONB output and rows written by the Node.js
// package add, so every store returns the same bytes. Text that is not
// JSON at all (a row another program wrote into a TEXT column) is
// dropped: passed on as a json.RawMessage it would make encoding the
// whole history page fail. buf is scratch space reused across rows.
func normalizeMetadata(text []byte, buf *bytes.Buffer) json.RawMessage {
	if len(text) == 0 {
		return nil
	}
	buf.Reset()
	if err := json.Compact(buf, text); err != nil {
		return nil
	}
	if buf.Len() == len(text) {
		return text // already compact: keep the scanned copy
	}
	return bytes.Clone(buf.Bytes())
}

// Stored is msg as stored with the id and created_at its commit gave it.
// Every store's commit builds its result with it, so that none can drop
// a field of chat.Message on the way back to the caller.
func Stored(msg chat.Message, id string, createdAt int64) protocol.StoredChatMessage {
	return protocol.StoredChatMessage{
		ID:           id,
		RoomID:       msg.RoomID,
		ConnectionID: msg.ConnectionID,
		UserID:       msg.UserID,
		Message:      msg.Message,
		Metadata:     msg.Metadata,
		CreatedAt:    createdAt,
		Name:         msg.Name,
	}
}

// Querier is the part of *sql.DB, *sql.Conn and *sql.Tx QueryMessages
// uses.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// QueryMessages runs query, which selects the columns ScanMessages reads,
// on a database/sql handle and returns the messages in the order read.
func QueryMessages(ctx context.Context, db Querier, capHint int, query string, args ...any) ([]protocol.StoredChatMessage, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanMessages(rows, capHint)
}

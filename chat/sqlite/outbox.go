package sqlite

import (
	"context"
	"fmt"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

var _ chat.OutboxStore = (*Store)(nil)

// EnableOutbox implements chat.OutboxStore. The outbox is the table
// <TableName>_outbox in the same file, created here when missing; its
// entries are written in the commit that stores their message. SQLite is
// one writer at a time, so an entry's seq follows commit order and
// entries of one key are claimed in the order they were written. Beside
// it, <TableName>_outbox_marks and <TableName>_outbox_owners hold the
// ledger (chat.OutboxLedger): the owners' marks and their beats.
func (s *Store) EnableOutbox(ctx context.Context, encode chat.OutboxEncoder) (chat.Outbox, error) {
	table := sqlstore.OutboxTableName(s.table, 63)
	marks := sqlstore.OutboxMarksTableName(s.table, 63)
	owners := sqlstore.OutboxOwnersTableName(s.table, 63)
	t := quote(table)
	return s.core.EnableOutbox(ctx, sqlstore.OutboxSQL{
		Table: table,
		Quote: quote,
		Create: []string{
			// AUTOINCREMENT: a seq is never given twice, even once the
			// table has been emptied, so order keys only grow.
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id TEXT NOT NULL,
	event_key TEXT NOT NULL,
	event_type TEXT NOT NULL,
	body TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	msg_seq INTEGER,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at INTEGER NOT NULL,
	lease_until INTEGER NOT NULL DEFAULT 0
)`, t),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (event_key, seq)`, quote(table+"_key_seq"), t),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (msg_seq)`, quote(table+"_msg_seq"), t),
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	owner TEXT NOT NULL,
	name_hash TEXT NOT NULL,
	name TEXT NOT NULL,
	mkey TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (owner, name_hash)
)`, quote(marks)),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (name_hash)`, quote(marks+"_name_hash"), quote(marks)),
			`CREATE TABLE IF NOT EXISTS ` + quote(owners) + ` (owner TEXT PRIMARY KEY, seen INTEGER NOT NULL)`,
		},
		// The writer connection: the outbox's reads are followed by
		// writes, and SQLite has one writer anyway.
		DB:     sqlstore.SQLDB{DB: s.writer},
		Tx:     s.writerTx,
		Marks:  marks,
		Owners: owners,
	}, encode)
}

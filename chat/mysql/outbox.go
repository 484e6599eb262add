package mysql

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

var _ chat.OutboxStore = (*Store)(nil)

// maxIdentLen is MySQL's and MariaDB's identifier length.
const maxIdentLen = 64

// EnableOutbox implements chat.OutboxStore. The outbox is the table
// <TableName>_outbox (shortened with a hash past 64 characters), created
// here when missing; its entries are written in the transaction that
// stores their message. Nodes sharing the database claim entries with a
// conditional UPDATE of the lease, so each is delivered by one node at a
// time. Beside it, <TableName>_outbox_locks holds the rows its writers
// lock so that each key's entries commit in seq order, and
// <TableName>_outbox_marks and <TableName>_outbox_owners hold the ledger
// (chat.OutboxLedger): the owners' marks and their beats.
func (s *Store) EnableOutbox(ctx context.Context, encode chat.OutboxEncoder) (chat.Outbox, error) {
	table := sqlstore.OutboxTableName(s.table, maxIdentLen)
	locks := sqlstore.OutboxLocksTableName(s.table, maxIdentLen)
	marks := sqlstore.OutboxMarksTableName(s.table, maxIdentLen)
	owners := sqlstore.OutboxOwnersTableName(s.table, maxIdentLen)
	return s.core.EnableOutbox(ctx, sqlstore.OutboxSQL{
		Table: table,
		Quote: quote,
		Create: []string{
			// Keys are TEXT, as room ids are, with a prefix index; the
			// binary collation compares them byte for byte, as the server
			// does.
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n"+`	seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	event_id VARCHAR(64) NOT NULL,
	event_key TEXT NOT NULL,
	event_type VARCHAR(64) NOT NULL,
	body LONGTEXT NOT NULL,
	created_at BIGINT NOT NULL,
	msg_seq BIGINT NULL,
	attempts INT NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL,
	lease_until BIGINT NOT NULL DEFAULT 0,
	INDEX key_seq (event_key(191), seq),
	INDEX msg_seq (msg_seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`, quote(table)),
			"CREATE TABLE IF NOT EXISTS " + quote(locks) + " (bucket INT NOT NULL PRIMARY KEY) ENGINE=InnoDB",
			"INSERT IGNORE INTO " + quote(locks) + " (bucket) VALUES " + sqlstore.OutboxLockRows(),
			// Names and owners compare byte for byte too; a hash is hex.
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n"+`	owner VARCHAR(64) NOT NULL,
	name_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	name TEXT NOT NULL,
	mkey TEXT NOT NULL,
	value LONGTEXT NOT NULL,
	PRIMARY KEY (owner, name_hash),
	INDEX name_hash (name_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`, quote(marks)),
			"CREATE TABLE IF NOT EXISTS " + quote(owners) + " (owner VARCHAR(64) NOT NULL PRIMARY KEY, seen BIGINT NOT NULL)" +
				" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
		},
		DB:     sqlstore.SQLDB{DB: s.db},
		Locks:  locks,
		Tx:     s.outboxTx,
		Marks:  marks,
		Owners: owners,
	}, encode)
}

// outboxTx runs f in a READ COMMITTED transaction. Its SELECT ... FOR
// UPDATE reads the last committed rows whatever the isolation, but
// REPEATABLE READ, InnoDB's default, takes gap locks where a DELETE finds
// no row: two owners' AddMarked, each deleting a mark it does not hold
// yet and inserting it into the same gap, would deadlock. (A server
// logging its binlog as STATEMENT, the default of neither MySQL nor
// MariaDB, refuses READ COMMITTED writes.)
func (s *Store) outboxTx(ctx context.Context, f func(sqlstore.DB) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, does nothing
	if err := f(sqlstore.SQLDB{DB: tx}); err != nil {
		return err
	}
	return tx.Commit()
}

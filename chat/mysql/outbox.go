package mysql

import (
	"context"
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
// time.
func (s *Store) EnableOutbox(ctx context.Context, encode chat.OutboxEncoder) (chat.Outbox, error) {
	table := sqlstore.OutboxTableName(s.table, maxIdentLen)
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
		},
		DB: sqlstore.SQLDB{DB: s.db},
	}, encode)
}

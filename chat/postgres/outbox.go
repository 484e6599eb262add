package postgres

import (
	"context"
	"fmt"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

var _ chat.OutboxStore = (*Store)(nil)

// EnableOutbox implements chat.OutboxStore. The outbox is the table
// <TableName>_outbox (shortened with a hash past 63 characters), created
// here when missing, under an advisory lock so that nodes starting
// together do not race; its entries are written in the transaction that
// stores their message. Nodes sharing the database claim entries with a
// conditional UPDATE of the lease, so each is delivered by one node at a
// time.
func (s *Store) EnableOutbox(ctx context.Context, encode chat.OutboxEncoder) (chat.Outbox, error) {
	table := sqlstore.OutboxTableName(s.table, maxIdentLen)
	t := quote(table)
	// One string of several statements: pgx sends it with the simple
	// protocol, which runs them in one implicit transaction, so the
	// advisory lock covers them all.
	create := fmt.Sprintf(`SELECT pg_advisory_xact_lock(hashtext('openlivesync chat outbox ' || %s));
CREATE TABLE IF NOT EXISTS %s (
	seq BIGSERIAL PRIMARY KEY,
	event_id TEXT NOT NULL,
	event_key TEXT NOT NULL,
	event_type TEXT NOT NULL,
	body TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	msg_seq BIGINT,
	attempts INT NOT NULL DEFAULT 0,
	next_at BIGINT NOT NULL,
	lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS %s ON %s (event_key, seq);
CREATE INDEX IF NOT EXISTS %s ON %s (msg_seq)`,
		literal(table), t, quote(derivedName(table, "_key_seq")), t, quote(derivedName(table, "_msg_seq")), t)
	return s.core.EnableOutbox(ctx, sqlstore.OutboxSQL{
		Table:  table,
		Quote:  quote,
		Dollar: true,
		Create: []string{create},
		DB:     pgxDB{s.pool},
	}, encode)
}

// literal quotes a validated identifier as an SQL string.
func literal(name string) string { return "'" + name + "'" }

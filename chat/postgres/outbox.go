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
// time. Beside it, <TableName>_outbox_locks holds the rows its writers
// lock so that each key's entries commit in seq order, and
// <TableName>_outbox_marks and <TableName>_outbox_owners hold the ledger
// (chat.OutboxLedger): the owners' marks and their beats.
func (s *Store) EnableOutbox(ctx context.Context, encode chat.OutboxEncoder) (chat.Outbox, error) {
	table := sqlstore.OutboxTableName(s.table, maxIdentLen)
	locks := sqlstore.OutboxLocksTableName(s.table, maxIdentLen)
	marks := sqlstore.OutboxMarksTableName(s.table, maxIdentLen)
	owners := sqlstore.OutboxOwnersTableName(s.table, maxIdentLen)
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
CREATE INDEX IF NOT EXISTS %s ON %s (msg_seq);
CREATE TABLE IF NOT EXISTS %s (bucket INT PRIMARY KEY);
INSERT INTO %s (bucket) VALUES %s ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS %s (
	owner VARCHAR(64) NOT NULL,
	name_hash CHAR(64) NOT NULL,
	name TEXT NOT NULL,
	mkey TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (owner, name_hash)
);
CREATE INDEX IF NOT EXISTS %s ON %s (name_hash);
CREATE TABLE IF NOT EXISTS %s (owner VARCHAR(64) PRIMARY KEY, seen BIGINT NOT NULL)`,
		literal(table), t, quote(derivedName(table, "_key_seq")), t, quote(derivedName(table, "_msg_seq")), t,
		quote(locks), quote(locks), sqlstore.OutboxLockRows(),
		quote(marks), quote(derivedName(marks, "_name_hash")), quote(marks), quote(owners))
	return s.core.EnableOutbox(ctx, sqlstore.OutboxSQL{
		Table:  table,
		Quote:  quote,
		Dollar: true,
		Create: []string{create},
		DB:     pgxDB{s.pool},
		Locks:  locks,
		Tx:     s.outboxTx,
		Marks:  marks,
		Owners: owners,
	}, encode)
}

// outboxTx runs f in a READ COMMITTED transaction, the default, in which
// a row locked FOR UPDATE is read as last committed once its lock is had.
func (s *Store) outboxTx(ctx context.Context, f func(sqlstore.DB) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) // after Commit, does nothing
	if err := f(pgxDB{tx}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// literal quotes a validated identifier as an SQL string.
func literal(name string) string { return "'" + name + "'" }

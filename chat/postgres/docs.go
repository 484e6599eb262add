package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

var _ chat.DocStore = (*Store)(nil)

// EnableDocs implements chat.DocStore. The documents are the table
// <TableName>_docs (shortened with a hash past 63 characters), created
// here when missing, under an advisory lock so that nodes starting
// together do not race.
//
// Its transactions run at REPEATABLE READ, for compaction: at READ
// COMMITTED each statement takes a new snapshot, and since a row's seq
// is drawn from the sequence when it is inserted, before it commits, a
// DELETE of the seq range read could remove an update another node
// committed after the SELECT, one merge never saw. At REPEATABLE READ the
// DELETE sees the SELECT's snapshot: it removes the rows read and no
// other, and fails (could not serialize access) rather than proceed when
// another node deleted or compacted them meanwhile, leaving everything
// as it was. Appends are never made to wait.
func (s *Store) EnableDocs(ctx context.Context) (chat.Docs, error) {
	table := sqlstore.DocsTableName(s.table, maxIdentLen)
	t := quote(table)
	// One string of several statements, run in one implicit transaction
	// (see EnableOutbox), so the advisory lock covers them all.
	create := fmt.Sprintf(`SELECT pg_advisory_xact_lock(hashtext('openlivesync chat docs ' || %s));
CREATE TABLE IF NOT EXISTS %s (
	seq BIGSERIAL PRIMARY KEY,
	room_id TEXT NOT NULL,
	data BYTEA NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS %s ON %s (room_id, seq)`,
		literal(table), t, quote(derivedName(table, "_room_seq")), t)
	return s.core.EnableDocs(ctx, sqlstore.DocsSQL{
		Table:  table,
		Quote:  quote,
		Dollar: true,
		Create: []string{create},
		DB:     docsDB{s},
	})
}

// docsDB is sqlstore.DocsDB on the store's pool. Statements outside a
// transaction go through read, which repeats one on a broken connection:
// reading a document, deleting one, creating the table are all safe to
// repeat.
type docsDB struct{ s *Store }

func (d docsDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := d.s.read(ctx, func(conn *pgxpool.Conn) error {
		var err error
		n, err = pgxDB{conn}.Exec(ctx, q, args...)
		return err
	})
	return n, err
}

func (d docsDB) Query(ctx context.Context, q string, args []any, each func(sqlstore.Rows) error) error {
	return d.s.read(ctx, func(conn *pgxpool.Conn) error {
		return pgxDB{conn}.Query(ctx, q, args, each)
	})
}

// Tx runs f in a REPEATABLE READ transaction (see EnableDocs) on a
// connection of its own. A transaction that does not reach COMMIT, f
// having failed or panicked or ctx having ended, is rolled back, or its
// connection closed, which the server rolls back. A COMMIT that the
// server answered with an error, or that never left, rolled back too; one
// sent and never answered may have committed.
func (d docsDB) Tx(ctx context.Context, f func(sqlstore.DB) error) error {
	conn, err := d.s.acquire(ctx)
	if err != nil {
		return err
	}
	ended := false
	defer func() {
		if !ended {
			d.s.abort(ctx, conn)
		}
	}()
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return err
	}
	if err := f(pgxDB{conn}); err != nil {
		return err
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	switch {
	case err == nil && tag.String() == "ROLLBACK":
		// The transaction had failed: the server rolled it back.
		return errors.New("the transaction was rolled back")
	case err == nil:
		ended = true
		conn.Release()
		return nil
	case pgconn.SafeToRetry(err) || isStatementError(err):
		return err
	}
	ended = true
	discard(conn)
	return fmt.Errorf("%w: %w", sqlstore.ErrCommitUnknown, err)
}

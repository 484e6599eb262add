package mysql

import (
	"context"
	"fmt"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

var _ chat.DocStore = (*Store)(nil)

// EnableDocs implements chat.DocStore. The documents are the table
// <TableName>_docs (shortened with a hash past 64 characters), created
// here when missing. Room ids are VARBINARY, so they compare byte for
// byte with no padding: "room" and "room " are different documents.
//
// A compaction reads the room's rows with SELECT ... FOR UPDATE, under
// REPEATABLE READ, through the (room_id, seq) index. InnoDB's DELETE
// reads the latest committed rows, not the transaction's snapshot, so a
// plain SELECT would not do: an update another node committed after it,
// with a seq in the range read (AUTO_INCREMENT values are taken at
// insert, before commit), would be deleted unmerged. The locking read
// waits for such an insert to commit and reads it, and its next-key locks
// cover the room's whole index range: until the compaction commits, an
// append to the room (or to a room id sorting just after it, up to the
// next one stored) waits, and the DELETE finds exactly the rows read.
func (s *Store) EnableDocs(ctx context.Context) (chat.Docs, error) {
	table := sqlstore.DocsTableName(s.table, maxIdentLen)
	return s.core.EnableDocs(ctx, sqlstore.DocsSQL{
		Table: table,
		Quote: quote,
		Create: []string{
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n"+`	seq BIGINT NOT NULL AUTO_INCREMENT,
	room_id VARBINARY(1024) NOT NULL,
	data LONGBLOB NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (seq),
	KEY room_seq (room_id, seq)
) ENGINE=InnoDB`, quote(table)),
		},
		// Every statement on a room's rows goes through (room_id, seq).
		// Left to itself the optimizer may scan the primary key for a
		// room holding most rows, and lock every room's rows; or, for the
		// DELETE of a seq range, lock the primary key's next record, which
		// may be the row of an append waiting for the compaction's locks:
		// a deadlock.
		IndexHint: " FORCE INDEX (room_seq)",
		LockRead:  " FOR UPDATE",
		DB:        docsDB{s},
	})
}

// docsDB is sqlstore.DocsDB on the store's pool.
type docsDB struct{ s *Store }

func (d docsDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return sqlstore.SQLDB{DB: d.s.db}.Exec(ctx, q, args...)
}

func (d docsDB) Query(ctx context.Context, q string, args []any, each func(sqlstore.Rows) error) error {
	return sqlstore.SQLDB{DB: d.s.db}.Query(ctx, q, args, each)
}

// Tx runs f in a REPEATABLE READ transaction, whatever the session's
// default (READ COMMITTED takes no gap locks, which compaction needs),
// driven by statements on a connection of its own, as commitOnce does
// and for the same reason: every statement, COMMIT included, ends with
// ctx. A transaction that does not reach COMMIT, f having failed or
// panicked or ctx having ended, is rolled back or its connection
// discarded; a COMMIT sent and never answered may have committed.
func (d docsDB) Tx(ctx context.Context, f func(sqlstore.DB) error) error {
	conn, err := d.s.db.Conn(ctx)
	if err != nil {
		return err
	}
	ended := false
	defer func() {
		if !ended {
			abort(ctx, conn)
		}
		conn.Close() // back to the pool, or discarded by abort
	}()
	for _, q := range []string{"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "START TRANSACTION"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if err := f(sqlstore.SQLDB{DB: conn}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // COMMIT not sent
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		if isStatementError(err) {
			return err // the server refused it: rolled back
		}
		return fmt.Errorf("%w: %w", sqlstore.ErrCommitUnknown, err)
	}
	ended = true
	return nil
}

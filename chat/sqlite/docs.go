package sqlite

import (
	"context"
	"fmt"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

var _ chat.DocStore = (*Store)(nil)

// EnableDocs implements chat.DocStore. The documents are the table
// <TableName>_docs in the same file, created here when missing. Every
// transaction on it runs on the writer connection, which begins with
// BEGIN IMMEDIATE: holding the file's write lock from the start, a
// compaction's read, delete and insert see no other writer, in this
// process or another, so it deletes exactly the rows it read. The lock
// is held while merge runs, which makes chat appends and other processes'
// writes to the file wait that long.
func (s *Store) EnableDocs(ctx context.Context) (chat.Docs, error) {
	table := sqlstore.DocsTableName(s.table, 63)
	t := quote(table)
	return s.core.EnableDocs(ctx, sqlstore.DocsSQL{
		Table: table,
		Quote: quote,
		Create: []string{
			// AUTOINCREMENT: a seq is never given twice, even once the
			// room's newest rows are deleted, so a later append always
			// sorts after a compaction's snapshot.
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	room_id TEXT NOT NULL,
	data BLOB NOT NULL,
	created_at INTEGER NOT NULL
)`, t),
			fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (room_id, seq)`, quote(table+"_room_seq"), t),
		},
		DB: docsDB{s},
	})
}

// docsDB is sqlstore.DocsDB on the store's connections: reads on the
// read-only pool, writes on the writer.
type docsDB struct{ s *Store }

func (d docsDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return sqlstore.SQLDB{DB: d.s.writer}.Exec(ctx, q, args...)
}

func (d docsDB) Query(ctx context.Context, q string, args []any, each func(sqlstore.Rows) error) error {
	return sqlstore.SQLDB{DB: d.s.reader}.Query(ctx, q, args, each)
}

// Tx runs f in a transaction of the writer connection (see writerTx).
func (d docsDB) Tx(ctx context.Context, f func(sqlstore.DB) error) error {
	return d.s.writerTx(ctx, f)
}

// writerTx runs f in a transaction of the writer connection (BEGIN
// IMMEDIATE, see New): the file's writers take turns, in this process or
// another. SQLite runs in this process: a COMMIT that returned an error
// did not commit, so the outcome is never unknown.
func (s *Store) writerTx(ctx context.Context, f func(sqlstore.DB) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := f(sqlstore.SQLDB{DB: tx}); err != nil {
		return err
	}
	return tx.Commit()
}

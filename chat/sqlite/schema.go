package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

func createTableSQL(table string) string {
	return fmt.Sprintf(`CREATE TABLE %s (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	id TEXT NOT NULL UNIQUE,
	room_id TEXT NOT NULL,
	connection_id TEXT NOT NULL,
	user_id TEXT,
	message TEXT NOT NULL,
	metadata TEXT,
	created_at INTEGER NOT NULL
)`, quote(table))
}

// ensureSchema creates the table, its index and the table of deleted ids
// when missing and rebuilds a table of the Node.js package, in one write
// transaction, so two processes opening the file together do not race.
func (s *Store) ensureSchema(ctx context.Context) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	cols, err := columns(ctx, tx, s.table)
	if err != nil {
		return err
	}
	switch {
	case len(cols) == 0:
		if _, err := tx.ExecContext(ctx, createTableSQL(s.table)); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
	case !cols["seq"]:
		for _, c := range []string{"id", "room_id", "connection_id", "user_id", "message", "metadata", "created_at"} {
			if !cols[c] {
				return fmt.Errorf("table %s exists but has no %s column; it is not a chat table", s.table, c)
			}
		}
		if err := migrate(ctx, tx, s.table); err != nil {
			return fmt.Errorf("migrate table %s: %w", s.table, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (room_id, seq)`,
		quote(s.table+"_room_seq_idx"), quote(s.table))); err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	// The table of deleted ids (see sqlstore.DeletedTableName), new to
	// tables of earlier versions too. TEXT keys compare byte for byte.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (id TEXT PRIMARY KEY, seq INTEGER NOT NULL)`,
		quote(s.deleted))); err != nil {
		return fmt.Errorf("create table of deleted ids: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit schema: %w", err)
	}
	return nil
}

// columns returns the set of the table's column names; empty when it does
// not exist.
func columns(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT lower(name) FROM pragma_table_info(?)`, table)
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	defer rows.Close()
	cols := make(map[string]bool)
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("read columns: %w", err)
		}
		cols[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	return cols, nil
}

// migrate rebuilds a table of the Node.js package with seq: SQLite cannot
// add a primary key to an existing table.
func migrate(ctx context.Context, tx *sql.Tx, table string) error {
	t, tmp := quote(table), quote(table+"_openlivesync_new")
	steps := []string{
		createTableSQL(table + "_openlivesync_new"),
		fmt.Sprintf(`INSERT INTO %s (seq, id, room_id, connection_id, user_id, message, metadata, created_at)
			SELECT row_number() OVER (ORDER BY created_at, id), id, room_id, COALESCE(connection_id, ''), user_id,
				COALESCE(message, ''), metadata, COALESCE(created_at, 0)
			FROM %s`, tmp, t),
		fmt.Sprintf(`DROP TABLE %s`, t),
		fmt.Sprintf(`ALTER TABLE %s RENAME TO %s`, tmp, t),
		// Continue numbering past numeric old IDs too, so a new ID (seq as
		// text) cannot collide with an old one.
		fmt.Sprintf(`INSERT INTO sqlite_sequence (name, seq)
			SELECT '%s', max(COALESCE((SELECT max(seq) FROM %[2]s), 0),
				COALESCE((SELECT max(CAST(id AS INTEGER)) FROM %[2]s
					WHERE length(id) BETWEEN 1 AND 18 AND id NOT GLOB '*[^0-9]*'), 0))`, table, t),
	}
	for _, q := range steps {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	// The rename carried the copy's sqlite_sequence row over; keep only
	// the highest.
	_, err := tx.ExecContext(ctx, `DELETE FROM sqlite_sequence WHERE name = ?
		OR (name = ? AND seq < (SELECT max(seq) FROM sqlite_sequence WHERE name = ?))`, table+"_openlivesync_new", table, table)
	return err
}

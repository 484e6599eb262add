package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

// maxIdentLen is PostgreSQL's identifier length; longer names are
// silently truncated, which could make two derived names collide.
const maxIdentLen = 63

// quote quotes a validated identifier.
func quote(name string) string { return `"` + name + `"` }

// derivedName is table+suffix, shortened with a hash of table when it
// would exceed maxIdentLen, so index and sequence names stay distinct.
func derivedName(table, suffix string) string {
	if len(table)+len(suffix) <= maxIdentLen {
		return table + suffix
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	tag := fmt.Sprintf("_%08x", h.Sum32())
	return table[:maxIdentLen-len(suffix)-len(tag)] + tag + suffix
}

// schemaInfo is what the statements need to know about the table as
// found (or created).
type schemaInfo struct {
	sequence     string // the seq column's sequence, as regclass text
	metadataCast string // cast from text to the metadata column's type
}

// ensureSchema creates the table, its index and the table of deleted ids
// when missing and migrates a table of the Node.js package, all in one transaction under an advisory
// lock, so nodes starting together do not race.
func (s *Store) ensureSchema(ctx context.Context, table string) (schemaInfo, error) {
	conn, err := s.acquire(ctx)
	if err != nil {
		return schemaInfo{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Release()
	var info schemaInfo
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('openlivesync chat schema ' || $1))`, table); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, quote(table)).Scan(&exists); err != nil {
			return fmt.Errorf("look up table: %w", err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, createTableSQL(table)); err != nil {
				return fmt.Errorf("create table: %w", err)
			}
		}
		cols, err := columnTypes(ctx, tx, table)
		if err != nil {
			return err
		}
		if _, ok := cols["seq"]; !ok {
			if err := migrate(ctx, tx, table); err != nil {
				return fmt.Errorf("migrate table %s: %w", table, err)
			}
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (room_id, seq)`,
			quote(derivedName(table, "_room_seq_idx")), quote(table))); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		// The table of deleted ids (see sqlstore.DeletedTableName), new to
		// tables of earlier versions too.
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (id TEXT PRIMARY KEY, seq BIGINT NOT NULL)`,
			quote(sqlstore.DeletedTableName(table, maxIdentLen)))); err != nil {
			return fmt.Errorf("create table of deleted ids: %w", err)
		}
		if cols["metadata"] == "jsonb" {
			if err := jsonbToJSON(ctx, tx, table); err != nil {
				return fmt.Errorf("migrate table %s: %w", table, err)
			}
			cols["metadata"] = "json"
		}
		switch cols["metadata"] {
		case "json":
			info.metadataCast = "::json"
		case "":
			return fmt.Errorf("table %s has no metadata column", table)
		}
		var seq *string
		if err := tx.QueryRow(ctx, `SELECT pg_get_serial_sequence($1, 'seq')`, quote(table)).Scan(&seq); err != nil {
			return fmt.Errorf("find seq sequence: %w", err)
		}
		if seq == nil {
			return fmt.Errorf("column %s.seq has no sequence", table)
		}
		info.sequence = *seq
		return nil
	})
	return info, err
}

func createTableSQL(table string) string {
	return fmt.Sprintf(`CREATE TABLE %s (
	seq BIGSERIAL PRIMARY KEY,
	id TEXT NOT NULL UNIQUE,
	room_id TEXT NOT NULL,
	connection_id TEXT NOT NULL,
	user_id TEXT,
	message TEXT NOT NULL,
	metadata JSON,
	created_at BIGINT NOT NULL
)`, quote(table))
}

// columnTypes maps the table's column names to their types.
func columnTypes(ctx context.Context, tx pgx.Tx, table string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, quote(table))
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	cols := make(map[string]string)
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("read columns: %w", err)
		}
		cols[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	for _, c := range []string{"id", "room_id", "connection_id", "user_id", "message", "metadata", "created_at"} {
		if _, ok := cols[c]; !ok {
			return nil, errors.New("table " + table + " exists but has no " + c + " column; it is not a chat table")
		}
	}
	return cols, nil
}

// jsonbToJSON changes a JSONB metadata column, which earlier versions
// created, to JSON. JSONB stores a parsed form: it prints numbers with
// every digit (1e131071 comes back as 131,072 digits), sorts keys and
// drops duplicates, and refuses the escape \u0000; JSON keeps the text
// as sent, after checking it is JSON. Rows already stored keep the form
// JSONB gave them. It rewrites the table, once: the column's type is
// checked first, so a migrated table is left alone.
func jsonbToJSON(ctx context.Context, tx pgx.Tx, table string) error {
	_, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN metadata TYPE json USING metadata::text::json`, quote(table)))
	return err
}

// migrate adds seq to a table of the Node.js package: existing rows are
// numbered in created_at order, and the sequence continues past both
// those numbers and any numeric old ID, so new IDs (seq as text) cannot
// collide with old ones.
func migrate(ctx context.Context, tx pgx.Tx, table string) error {
	t := quote(table)
	seqName := quote(derivedName(table, "_seq_seq"))
	steps := []string{
		fmt.Sprintf(`ALTER TABLE %s ADD COLUMN seq BIGINT`, t),
		fmt.Sprintf(`UPDATE %[1]s SET seq = o.rn FROM (
			SELECT ctid AS row_ctid, row_number() OVER (ORDER BY created_at, id) AS rn FROM %[1]s
		) o WHERE %[1]s.ctid = o.row_ctid`, t),
		fmt.Sprintf(`CREATE SEQUENCE %s OWNED BY %s.seq`, seqName, t),
		fmt.Sprintf(`ALTER TABLE %s ALTER COLUMN seq SET DEFAULT nextval('%s'), ALTER COLUMN seq SET NOT NULL`, t, seqName),
		fmt.Sprintf(`CREATE UNIQUE INDEX %s ON %s (seq)`, quote(derivedName(table, "_seq_key")), t),
		fmt.Sprintf(`SELECT setval('%s', COALESCE(GREATEST(
			(SELECT max(seq) FROM %[2]s),
			(SELECT max(id::bigint) FROM %[2]s WHERE id ~ '^[0-9]{1,18}$')
		), 0) + 1, false)`, seqName, t),
	}
	for _, q := range steps {
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

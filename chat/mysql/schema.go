package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/openlivesync/livesync/chat/internal/sqlstore"
)

func createTableSQL(table string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	seq BIGINT NOT NULL AUTO_INCREMENT,
	id VARCHAR(64) NOT NULL,
	room_id VARCHAR(256) NOT NULL,
	connection_id TEXT NOT NULL,
	user_id TEXT NULL,
	message MEDIUMTEXT NOT NULL,
	metadata LONGTEXT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (seq),
	UNIQUE KEY id_unique (id),
	KEY room_seq (room_id, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`, quote(table))
}

// column is what the schema check needs to know about a column.
type column struct {
	dataType string // e.g. "varchar", "text"
	extra    string // e.g. "auto_increment"
}

// ensureSchema creates the table and the table of deleted ids when
// missing and migrates a table of the Node.js package, under a named lock so nodes starting together do not
// race. It runs on one connection: GET_LOCK and user variables belong to
// the session.
func (s *Store) ensureSchema(ctx context.Context, dbName string) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()

	h := fnv.New64a()
	h.Write([]byte(dbName + "." + s.table))
	lock := fmt.Sprintf("openlivesync_chat_%016x", h.Sum64())
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 30)", lock).Scan(&got); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}
	if got.Int64 != 1 {
		return errors.New("lock schema: another node held the schema lock for 30 s")
	}
	defer func() {
		// Not under ctx, which may have ended: the lock must go even when
		// the schema work failed. Bounded, so a dead connection cannot hang
		// New; the server releases the lock with the session anyway.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(rctx, "SELECT RELEASE_LOCK(?)", lock)
	}()

	cols, err := s.columns(ctx, conn)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		if _, err := conn.ExecContext(ctx, createTableSQL(s.table)); err != nil {
			return fmt.Errorf("create table: %w", err)
		}
		if cols, err = s.columns(ctx, conn); err != nil {
			return err
		}
	}
	for _, c := range []string{"id", "room_id", "connection_id", "user_id", "message", "metadata", "created_at"} {
		if _, ok := cols[c]; !ok {
			return fmt.Errorf("table %s exists but has no %s column; it is not a chat table", s.table, c)
		}
	}
	if !strings.Contains(cols["seq"].extra, "auto_increment") {
		if err := s.migrate(ctx, conn, cols); err != nil {
			return fmt.Errorf("migrate table %s: %w", s.table, err)
		}
	}
	if err := s.ensureRoomIndex(ctx, conn, cols["room_id"]); err != nil {
		return err
	}
	// The table of deleted ids (see sqlstore.DeletedTableName), new to
	// tables of earlier versions too. VARBINARY compares byte for byte,
	// trailing spaces included, and holds any VARCHAR(255) id in utf8mb4.
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (id VARBINARY(1020) NOT NULL PRIMARY KEY, seq BIGINT NOT NULL) ENGINE=InnoDB",
		quote(sqlstore.DeletedTableName(s.table, maxIdentLen)))); err != nil {
		return fmt.Errorf("create table of deleted ids: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT @@auto_increment_increment").Scan(&s.autoIncStep); err != nil {
		return fmt.Errorf("read auto_increment_increment: %w", err)
	}
	s.autoIncStep = max(s.autoIncStep, 1)
	return nil
}

// columns returns the table's columns by name; none when it does not
// exist.
func (s *Store) columns(ctx context.Context, conn *sql.Conn) (map[string]column, error) {
	rows, err := conn.QueryContext(ctx, `SELECT TABLE_NAME, LOWER(COLUMN_NAME), LOWER(DATA_TYPE), LOWER(EXTRA)
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`, s.table)
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	defer rows.Close()
	cols := make(map[string]column)
	for rows.Next() {
		var table, name string
		var c column
		if err := rows.Scan(&table, &name, &c.dataType, &c.extra); err != nil {
			return nil, fmt.Errorf("read columns: %w", err)
		}
		if table == s.table { // information_schema may compare names case-insensitively
			cols[name] = c
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	return cols, nil
}

func (s *Store) indexExists(ctx context.Context, conn *sql.Conn, name string) (bool, error) {
	var n int
	err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ?`, s.table, name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read indexes: %w", err)
	}
	return n > 0, nil
}

// ensureRoomIndex adds the (room_id, seq) index History reads by, on a
// prefix of room_id when the column is a TEXT type, which MySQL can only
// index by prefix.
func (s *Store) ensureRoomIndex(ctx context.Context, conn *sql.Conn, room column) error {
	ok, err := s.indexExists(ctx, conn, "room_seq")
	if err != nil || ok {
		return err
	}
	key := "room_id"
	if strings.HasSuffix(room.dataType, "text") || strings.HasSuffix(room.dataType, "blob") {
		key = "room_id(191)"
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD KEY room_seq (%s, seq)", quote(s.table), key)); err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	return nil
}

// migrate turns a table of the Node.js package into the current schema.
// Each step can be repeated, so a migration interrupted by a crash
// resumes from the start on the next open.
func (s *Store) migrate(ctx context.Context, conn *sql.Conn, cols map[string]column) error {
	t := quote(s.table)
	if _, ok := cols["seq"]; !ok {
		if _, err := conn.ExecContext(ctx, "ALTER TABLE "+t+" ADD COLUMN seq BIGINT NULL"); err != nil {
			return fmt.Errorf("add seq: %w", err)
		}
	}
	// Number every row in created_at order. A plain UPDATE with a session
	// variable is the portable way: window functions cannot feed an
	// UPDATE of the same table in MySQL.
	if _, err := conn.ExecContext(ctx, "SET @openlivesync_seq := 0"); err != nil {
		return fmt.Errorf("number rows: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "UPDATE "+t+" SET seq = (@openlivesync_seq := @openlivesync_seq + 1) ORDER BY created_at, id"); err != nil {
		return fmt.Errorf("number rows: %w", err)
	}
	hasKey, err := s.indexExists(ctx, conn, "seq_unique")
	if err != nil {
		return err
	}
	alter := "ALTER TABLE " + t + " MODIFY seq BIGINT NOT NULL AUTO_INCREMENT"
	if !hasKey {
		alter += ", ADD UNIQUE KEY seq_unique (seq)"
	}
	if _, err := conn.ExecContext(ctx, alter); err != nil {
		return fmt.Errorf("make seq AUTO_INCREMENT: %w", err)
	}
	// Continue past numeric old IDs too, so a new ID (seq as text) cannot
	// collide with an old one.
	var next int64
	if err := conn.QueryRowContext(ctx, "SELECT GREATEST(COALESCE(MAX(seq), 0), COALESCE(MAX(CASE WHEN id REGEXP '^[0-9]{1,18}$' THEN CAST(id AS UNSIGNED) END), 0)) + 1 FROM "+t).Scan(&next); err != nil {
		return fmt.Errorf("find next seq: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s AUTO_INCREMENT = %d", t, next)); err != nil {
		return fmt.Errorf("set AUTO_INCREMENT: %w", err)
	}
	return nil
}

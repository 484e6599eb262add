package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/protocol"
)

// DefaultTableName is the table the Node.js package used, so a Go server
// pointed at the same file picks up the existing history.
const DefaultTableName = "openlivesync_chat"

// Options configures a Store. A nil *Options, and every zero field, means
// the default.
type Options struct {
	// TableName is the table chat is kept in, so several deployments can
	// share a file. It must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$; SQLite
	// compares table names case-insensitively. Default DefaultTableName.
	TableName string
	// HistoryLimit is how many messages History and HistoryBefore return
	// when called with limit <= 0. Default chat.DefaultHistoryLimit.
	HistoryLimit int
	// MaxReaders caps the read-only connections History and Ping use, on
	// top of the one writer connection. Default 4.
	MaxReaders int
}

// busyTimeoutMS is how long a connection waits for another process's
// lock on the file before failing.
const busyTimeoutMS = "10000"

// Store is a chat.Store, chat.BatchAppender, chat.Pinger, chat.Pager and chat.Deleter
// backed by a SQLite file. It is safe for concurrent use.
type Store struct {
	writer, reader *sql.DB
	table          string
	core           *sqlstore.Core
	historySQL     string
	beforeSQL      string
	cursorSQL      string
	deleted        string // the table of deleted ids, unquoted
	delete         sqlstore.DeleteFunc
}

var (
	_ chat.Store         = (*Store)(nil)
	_ chat.BatchAppender = (*Store)(nil)
	_ chat.Pinger        = (*Store)(nil)
	_ chat.Pager         = (*Store)(nil)
	_ chat.Deleter       = (*Store)(nil)
)

// New opens (creating it if needed) the SQLite database at path, a file
// name or a "file:" URI, creates or migrates the table (see the package
// documentation), and returns the store. In-memory databases are refused:
// the writer and the readers would each get a different one; use
// chat.NewMemoryStore instead.
func New(ctx context.Context, path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TableName == "" {
		o.TableName = DefaultTableName
	}
	if err := sqlstore.CheckTableName(o.TableName); err != nil {
		return nil, fmt.Errorf("sqlite chat store: %w", err)
	}
	if o.MaxReaders <= 0 {
		o.MaxReaders = 4
	}
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("sqlite chat store: %w", err)
	}

	writer, err := sql.Open("sqlite", withParams(path, url.Values{
		"_busy_timeout": {busyTimeoutMS},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite chat store: open: %w", err)
	}
	// One writer connection: SQLite allows one writer at a time anyway,
	// and the committer is its only user after the schema is set up.
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	s := &Store{writer: writer, table: o.TableName, deleted: sqlstore.DeletedTableName(o.TableName, 63)}
	if err := s.ensureSchema(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite chat store: %w", err)
	}

	reader, err := sql.Open("sqlite", withParams(path, url.Values{
		"_busy_timeout": {busyTimeoutMS},
		"_query_only":   {"1"},
	}))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite chat store: open readers: %w", err)
	}
	reader.SetMaxOpenConns(o.MaxReaders)
	reader.SetMaxIdleConns(o.MaxReaders)
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("sqlite chat store: open readers: %w", err)
	}
	s.reader = reader
	const columns = `SELECT id, room_id, COALESCE(connection_id, ''), COALESCE(user_id, ''), COALESCE(message, ''),
	COALESCE(metadata, ''), COALESCE(created_at, 0)`
	t := quote(o.TableName)
	s.historySQL = fmt.Sprintf(columns+` FROM %s WHERE room_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?`, t)
	// The cursor's seq is looked up by id (its unique index) rather than
	// parsed from it: a row migrated from the Node.js package may have a
	// numeric id that is not its seq. A deleted message's is looked up in
	// the table of deleted ids, and a cursor in neither (deleted before
	// that table existed) is its own seq, as every id this store gives is.
	s.beforeSQL = fmt.Sprintf(columns+` FROM %[1]s WHERE room_id = ?
	AND seq < COALESCE((SELECT seq FROM %[1]s WHERE id = ?), (SELECT seq FROM %[2]s WHERE id = ?), ?)
	ORDER BY seq DESC LIMIT ?`, t, quote(s.deleted))
	s.cursorSQL = fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE id = ?) OR EXISTS (SELECT 1 FROM %s WHERE id = ?)`, t, quote(s.deleted))
	s.delete = sqlstore.RecordedDelete(sqlstore.SQLDB{DB: s.writer},
		fmt.Sprintf(`INSERT INTO %s (id, seq) SELECT id, seq FROM %s WHERE id = ? AND room_id = ? ON CONFLICT (id) DO NOTHING`, quote(s.deleted), t),
		fmt.Sprintf(`DELETE FROM %s WHERE id = ? AND room_id = ?`, t),
		func(roomID, id string) []any { return []any{id, roomID} })
	s.core = sqlstore.NewCore("sqlite chat store", o.HistoryLimit,
		sqlstore.Reads{Newest: s.newest, Before: s.before, Exists: s.exists}, s.commit, s.undo)
	return s, nil
}

// checkPath refuses paths that cannot work with separate writer and
// reader connections.
func checkPath(path string) error {
	if path == "" {
		return errors.New("empty database path")
	}
	lower := strings.ToLower(path)
	if lower == ":memory:" || strings.HasPrefix(lower, "file::memory:") || strings.Contains(lower, "mode=memory") {
		return errors.New("in-memory SQLite databases are not supported (the writer and readers would not share one); use the memory store")
	}
	return nil
}

// withParams adds the driver's connection parameters to path.
func withParams(path string, params url.Values) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + params.Encode()
}

// quote quotes a validated identifier.
func quote(name string) string { return `"` + name + `"` }

// Append implements chat.Store. It returns once the transaction holding
// msg, possibly with other goroutines' messages, has committed.
func (s *Store) Append(ctx context.Context, msg chat.Message) (protocol.StoredChatMessage, error) {
	return s.core.Append(ctx, msg)
}

// AppendBatch implements chat.BatchAppender: msgs are stored in one
// transaction, in order, or not at all.
func (s *Store) AppendBatch(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	return s.core.AppendBatch(ctx, msgs)
}

// History implements chat.Store.
func (s *Store) History(ctx context.Context, roomID string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	return s.core.History(ctx, roomID, limit, offset)
}

// HistoryBefore implements chat.Pager. beforeID is looked up by id, in
// the table and in the table of deleted ids, so the IDs of rows migrated
// from the Node.js package page like new ones, deleted or not; one that
// names no message gets an error wrapping chat.ErrBadCursor.
func (s *Store) HistoryBefore(ctx context.Context, roomID, beforeID string, limit int) ([]protocol.StoredChatMessage, bool, error) {
	return s.core.HistoryBefore(ctx, roomID, beforeID, limit)
}

// newest, before and exists are the store's sqlstore.Reads, on the
// read-only connections.
func (s *Store) newest(ctx context.Context, roomID string, n, offset int) ([]protocol.StoredChatMessage, error) {
	return sqlstore.QueryMessages(ctx, s.reader, n, s.historySQL, roomID, n, offset)
}

func (s *Store) before(ctx context.Context, roomID, beforeID string, n int) ([]protocol.StoredChatMessage, error) {
	return sqlstore.QueryMessages(ctx, s.reader, n, s.beforeSQL, roomID, beforeID, beforeID, sqlstore.CursorSeq(beforeID), n)
}

func (s *Store) exists(ctx context.Context, id string) (bool, error) {
	var known bool
	err := s.reader.QueryRowContext(ctx, s.cursorSQL, id, id).Scan(&known)
	return known, err
}

// Delete implements chat.Deleter, on the writer connection: it waits
// behind a group commit in progress, so a message being stored is either
// found or not yet visible to the caller. The message's id and seq go to
// the table of deleted ids first, so the id still pages HistoryBefore.
func (s *Store) Delete(ctx context.Context, roomID, id string) (bool, error) {
	return s.core.Delete(ctx, roomID, id, s.delete)
}

// Ping implements chat.Pinger: it reads the schema, which fails when the
// file has become unreadable.
func (s *Store) Ping(ctx context.Context) error {
	return s.core.Ping(ctx, func(ctx context.Context) error {
		var n int
		return s.reader.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n)
	})
}

// Close implements chat.Store: it refuses new calls, waits for the
// appends already queued to commit, then closes the connections. Calling
// it again does nothing.
func (s *Store) Close() error {
	return s.core.Close(func() error {
		return errors.Join(s.reader.Close(), s.writer.Close())
	})
}

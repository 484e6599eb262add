package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/protocol"
)

// DefaultTableName is the table the Node.js package used, so a Go server
// pointed at the same database picks up the existing history.
const DefaultTableName = "openlivesync_chat"

// Options configures a Store. A nil *Options, and every zero field, means
// the default.
type Options struct {
	// TableName is the table chat is kept in, so several deployments can
	// share a database. It must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$.
	// Default DefaultTableName.
	TableName string
	// HistoryLimit is how many messages History and HistoryBefore return
	// when called with limit <= 0. Default chat.DefaultHistoryLimit.
	HistoryLimit int
	// MaxConns caps the connections the store opens, for History, Ping
	// and the one committer together, so that many nodes fit the
	// server's max_connections. Default 8.
	MaxConns int
}

// Store is a chat.Store, chat.BatchAppender, chat.Pinger, chat.Pager and chat.Deleter
// backed by MySQL or MariaDB. It is safe for concurrent use.
type Store struct {
	db          *sql.DB
	table       string
	autoIncStep int64
	core        *sqlstore.Core
	historySQL  string
	beforeSQL   string
	cursorSQL   string
	delete      sqlstore.DeleteFunc

	// beforeCommit, when set (by tests), runs just before COMMIT is sent.
	beforeCommit func()
}

var (
	_ chat.Store         = (*Store)(nil)
	_ chat.BatchAppender = (*Store)(nil)
	_ chat.Deleter       = (*Store)(nil)
	_ chat.Pinger        = (*Store)(nil)
	_ chat.Pager         = (*Store)(nil)
)

// New connects to the database at dsn (go-sql-driver/mysql's format),
// creates or migrates the table (see the package documentation), and
// returns the store. It fails, without leaving connections open, when the
// database is unreachable within ctx.
func New(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql chat store: parse DSN: %w", err)
	}
	return NewFromConfig(ctx, cfg, opts)
}

// NewFromConfig is New for callers that build the driver configuration in
// code, e.g. from a mysql:// URL, whose password may hold characters the
// DSN syntax cannot carry. cfg is not modified.
func NewFromConfig(ctx context.Context, cfg *mysql.Config, opts *Options) (*Store, error) {
	if cfg == nil {
		return nil, errors.New("mysql chat store: nil config")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TableName == "" {
		o.TableName = DefaultTableName
	}
	if err := sqlstore.CheckTableName(o.TableName); err != nil {
		return nil, fmt.Errorf("mysql chat store: %w", err)
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	cfg = cfg.Clone()
	if isDriverDefaultLogger(cfg.Logger) {
		cfg.Logger = slogDriverLogger{} // see log.go
	}
	cfg.InterpolateParams = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		cfg.InterpolateParams = false // an unsafe collation: fall back to prepared statements
		if connector, err = mysql.NewConnector(cfg); err != nil {
			return nil, fmt.Errorf("mysql chat store: driver config: %w", err)
		}
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(o.MaxConns)
	db.SetMaxIdleConns(o.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute) // well inside the server's wait_timeout
	s := &Store{db: db, table: o.TableName}
	if err := s.ensureSchema(ctx, cfg.DBName); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql chat store: %w", err)
	}
	const columns = "SELECT id, room_id, COALESCE(connection_id, ''), COALESCE(user_id, ''), COALESCE(message, '')," +
		" COALESCE(metadata, ''), COALESCE(created_at, 0)"
	t := quote(o.TableName)
	s.historySQL = fmt.Sprintf(columns+" FROM %s"+
		" WHERE room_id = ? AND CAST(room_id AS BINARY) = CAST(? AS BINARY) ORDER BY seq DESC LIMIT ? OFFSET ?", t)
	// The cursor's seq is looked up by id (its unique index) rather than
	// parsed from it: a row migrated from the Node.js package may have a
	// numeric id that is not its seq. IDs, like room IDs, are compared
	// byte for byte: a Node.js table's id column may have a
	// case-insensitive, space-padding collation. FORCE INDEX makes the
	// seq bound a range on (room_id, seq): left to itself, MariaDB may
	// prefer ref access on room_id, reading every newer message of the
	// room before the page it wants, which costs a deep scroll-back dearly.
	// ensureRoomIndex gives every table, new or migrated, that index.
	// A deleted message's seq is looked up in the table of deleted ids,
	// whose VARBINARY id compares byte for byte by itself, and a cursor
	// in neither (deleted before that table existed) is its own seq.
	const cursor = "SELECT seq FROM %[1]s WHERE id = ? AND CAST(id AS BINARY) = CAST(? AS BINARY)"
	const deletedCursor = "SELECT seq FROM %[2]s WHERE id = CAST(? AS BINARY)"
	d := quote(sqlstore.DeletedTableName(o.TableName, maxIdentLen))
	s.beforeSQL = fmt.Sprintf(columns+" FROM %[1]s FORCE INDEX (room_seq)"+
		" WHERE room_id = ? AND CAST(room_id AS BINARY) = CAST(? AS BINARY)"+
		" AND seq < COALESCE(("+cursor+"), ("+deletedCursor+"), ?) ORDER BY seq DESC LIMIT ?", t, d)
	s.cursorSQL = fmt.Sprintf("SELECT EXISTS ("+cursor+") OR EXISTS ("+deletedCursor+")", t, d)
	// The row's id is recorded as utf8mb4 bytes, as cursors arrive,
	// whatever the charset of a migrated table's id column.
	const match = " WHERE id = ? AND CAST(id AS BINARY) = CAST(? AS BINARY) AND CAST(room_id AS BINARY) = CAST(? AS BINARY)"
	s.delete = sqlstore.RecordedDelete(sqlstore.SQLDB{DB: s.db},
		fmt.Sprintf("INSERT INTO %[1]s (id, seq) SELECT CAST(CONVERT(id USING utf8mb4) AS BINARY), seq FROM %[2]s"+match+
			" ON DUPLICATE KEY UPDATE %[1]s.id = %[1]s.id", d, t),
		fmt.Sprintf("DELETE FROM %s"+match, t),
		func(roomID, id string) []any { return []any{id, id, roomID} })
	s.core = sqlstore.NewCore("mysql chat store", o.HistoryLimit,
		sqlstore.Reads{Newest: s.newest, Before: s.before, Exists: s.exists}, s.commit, s.undo)
	return s, nil
}

// quote quotes a validated identifier.
func quote(name string) string { return "`" + name + "`" }

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

// newest, before and exists are the store's sqlstore.Reads. Room IDs and
// cursors are passed twice: the statements compare them byte for byte
// after an indexable comparison in the column's collation.
func (s *Store) newest(ctx context.Context, roomID string, n, offset int) ([]protocol.StoredChatMessage, error) {
	return sqlstore.QueryMessages(ctx, s.db, n, s.historySQL, roomID, roomID, n, offset)
}

func (s *Store) before(ctx context.Context, roomID, beforeID string, n int) ([]protocol.StoredChatMessage, error) {
	return sqlstore.QueryMessages(ctx, s.db, n, s.beforeSQL, roomID, roomID, beforeID, beforeID, beforeID, sqlstore.CursorSeq(beforeID), n)
}

func (s *Store) exists(ctx context.Context, id string) (bool, error) {
	var known bool
	err := s.db.QueryRowContext(ctx, s.cursorSQL, id, id, id).Scan(&known)
	return known, err
}

// Delete implements chat.Deleter. The id and room are compared byte for
// byte, as reads compare them, so that a case-insensitive collation of a
// migrated table cannot delete another room's or another id's message.
// The message's id and seq go to the table of deleted ids first, so the
// id still pages HistoryBefore.
func (s *Store) Delete(ctx context.Context, roomID, id string) (bool, error) {
	return s.core.Delete(ctx, roomID, id, s.delete)
}

// Ping implements chat.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	return s.core.Ping(ctx, s.db.PingContext)
}

// Close implements chat.Store: it refuses new calls, waits for the
// appends already queued to commit, then closes the connections. Calling
// it again does nothing.
func (s *Store) Close() error {
	return s.core.Close(s.db.Close)
}

// isStatementError reports whether the server rejected a statement: the
// transaction is then rolled back, nothing of it committed.
func isStatementError(err error) bool {
	var myErr *mysql.MySQLError
	return errors.As(err, &myErr)
}

// isBrokenConn reports whether err means the connection died.
func isBrokenConn(err error) bool {
	return errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn)
}

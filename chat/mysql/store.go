package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/groupcommit"
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

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// maxPageLimit caps a page so that limit+1, the rows HistoryBefore reads
// to learn whether more remain, cannot overflow.
const maxPageLimit = math.MaxInt32 - 1

// Store is a chat.Store, chat.BatchAppender, chat.Pinger and chat.Pager
// backed by MySQL or MariaDB. It is safe for concurrent use.
type Store struct {
	db           *sql.DB
	table        string
	historyLimit int
	autoIncStep  int64
	committer    *groupcommit.Committer
	historySQL   string
	beforeSQL    string
	cursorSQL    string

	closed    atomic.Bool
	closeOnce sync.Once
}

var (
	_ chat.Store         = (*Store)(nil)
	_ chat.BatchAppender = (*Store)(nil)
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
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TableName == "" {
		o.TableName = DefaultTableName
	}
	if !tableNameRE.MatchString(o.TableName) {
		return nil, fmt.Errorf("mysql chat store: invalid table name %q: want ^[A-Za-z_][A-Za-z0-9_]{0,62}$", o.TableName)
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = chat.DefaultHistoryLimit
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
			return nil, fmt.Errorf("mysql chat store: DSN: %w", err)
		}
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(o.MaxConns)
	db.SetMaxIdleConns(o.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute) // well inside the server's wait_timeout
	s := &Store{db: db, table: o.TableName, historyLimit: o.HistoryLimit}
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
	const cursor = "SELECT seq FROM %[1]s WHERE id = ? AND CAST(id AS BINARY) = CAST(? AS BINARY)"
	s.beforeSQL = fmt.Sprintf(columns+" FROM %[1]s FORCE INDEX (room_seq)"+
		" WHERE room_id = ? AND CAST(room_id AS BINARY) = CAST(? AS BINARY) AND seq < ("+cursor+") ORDER BY seq DESC LIMIT ?", t)
	s.cursorSQL = fmt.Sprintf("SELECT EXISTS ("+cursor+")", t)
	s.committer = groupcommit.New(s.commit, groupcommit.Options{})
	return s, nil
}

// quote quotes a validated identifier.
func quote(name string) string { return "`" + name + "`" }

// Append implements chat.Store. It returns once the transaction holding
// msg, possibly with other goroutines' messages, has committed.
func (s *Store) Append(ctx context.Context, msg chat.Message) (protocol.StoredChatMessage, error) {
	out, err := s.appendBatch(ctx, "append", []chat.Message{msg})
	if err != nil {
		return protocol.StoredChatMessage{}, err
	}
	return out[0], nil
}

// AppendBatch implements chat.BatchAppender: msgs are stored in one
// transaction, in order, or not at all.
func (s *Store) AppendBatch(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	return s.appendBatch(ctx, "append batch", msgs)
}

func (s *Store) appendBatch(ctx context.Context, op string, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("mysql chat store: %s: %w", op, chat.ErrClosed)
	}
	for _, m := range msgs {
		if len(m.Metadata) > 0 && !json.Valid(m.Metadata) {
			return nil, fmt.Errorf("mysql chat store: %s: metadata is not valid JSON", op)
		}
	}
	out, err := s.committer.Append(ctx, msgs)
	if err != nil {
		return nil, fmt.Errorf("mysql chat store: %s: %w", op, err)
	}
	return out, nil
}

// History implements chat.Store.
func (s *Store) History(ctx context.Context, roomID string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	if err := s.readable(ctx); err != nil {
		return nil, fmt.Errorf("mysql chat store: history: %w", err)
	}
	if limit <= 0 {
		limit = s.historyLimit
	}
	offset = max(offset, 0)
	out, err := s.query(ctx, limit, s.historySQL, roomID, roomID, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("mysql chat store: history: %w", s.closedOr(err))
	}
	// The query reads newest first so LIMIT/OFFSET count from the newest;
	// History returns oldest first.
	reverse(out)
	return out, nil
}

// HistoryBefore implements chat.Pager. beforeID is looked up by id, so
// the IDs of rows migrated from the Node.js package page like new ones;
// one that names no row gets an error wrapping chat.ErrBadCursor.
func (s *Store) HistoryBefore(ctx context.Context, roomID, beforeID string, limit int) ([]protocol.StoredChatMessage, bool, error) {
	if err := s.readable(ctx); err != nil {
		return nil, false, fmt.Errorf("mysql chat store: history before: %w", err)
	}
	if limit <= 0 {
		limit = s.historyLimit
	}
	limit = min(limit, maxPageLimit)
	var out []protocol.StoredChatMessage
	var err error
	if beforeID == "" {
		out, err = s.query(ctx, limit+1, s.historySQL, roomID, roomID, limit+1, 0)
	} else {
		out, err = s.query(ctx, limit+1, s.beforeSQL, roomID, roomID, beforeID, beforeID, limit+1)
		if err == nil && len(out) == 0 {
			// No older message, or no such cursor: only the latter is an error.
			var known bool
			if err = s.db.QueryRowContext(ctx, s.cursorSQL, beforeID, beforeID).Scan(&known); err == nil && !known {
				err = fmt.Errorf("before %q: %w", beforeID, chat.ErrBadCursor)
			}
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("mysql chat store: history before: %w", s.closedOr(err))
	}
	// Read newest first, one more than limit to learn whether more remain.
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	reverse(out)
	return out, more, nil
}

// readable is the check before a read: the store is open and ctx alive.
func (s *Store) readable(ctx context.Context) error {
	if s.closed.Load() {
		return chat.ErrClosed
	}
	return ctx.Err()
}

// closedOr returns chat.ErrClosed for a read that failed because Close
// closed the connections under it, else err.
func (s *Store) closedOr(err error) error {
	if s.closed.Load() {
		return chat.ErrClosed
	}
	return err
}

// query runs a query of historySQL's or beforeSQL's columns and returns
// the messages in the order read.
func (s *Store) query(ctx context.Context, capHint int, query string, args ...any) ([]protocol.StoredChatMessage, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]protocol.StoredChatMessage, 0, min(capHint, 256))
	for rows.Next() {
		var m protocol.StoredChatMessage
		var meta []byte
		if err := rows.Scan(&m.ID, &m.RoomID, &m.ConnectionID, &m.UserID, &m.Message, &meta, &m.CreatedAt); err != nil {
			return nil, err
		}
		if len(meta) > 0 {
			m.Metadata = meta
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func reverse(ms []protocol.StoredChatMessage) {
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
}

// Ping implements chat.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("mysql chat store: ping: %w", chat.ErrClosed)
	}
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("mysql chat store: ping: %w", err)
	}
	return nil
}

// Close implements chat.Store: it refuses new calls, waits for the
// appends already queued to commit, then closes the connections. Calling
// it again does nothing.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.committer.Close()
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("mysql chat store: close: %w", cerr)
		}
	})
	return err
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

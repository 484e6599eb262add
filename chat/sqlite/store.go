package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/groupcommit"
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

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// maxPageLimit caps a page so that limit+1, the rows HistoryBefore reads
// to learn whether more remain, cannot overflow.
const maxPageLimit = math.MaxInt32 - 1

// busyTimeoutMS is how long a connection waits for another process's
// lock on the file before failing.
const busyTimeoutMS = "10000"

// Store is a chat.Store, chat.BatchAppender, chat.Pinger and chat.Pager
// backed by a SQLite file. It is safe for concurrent use.
type Store struct {
	writer, reader *sql.DB
	table          string
	historyLimit   int
	committer      *groupcommit.Committer
	historySQL     string
	beforeSQL      string
	cursorSQL      string

	closed    atomic.Bool
	closeOnce sync.Once
}

var (
	_ chat.Store         = (*Store)(nil)
	_ chat.BatchAppender = (*Store)(nil)
	_ chat.Pinger        = (*Store)(nil)
	_ chat.Pager         = (*Store)(nil)
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
	if !tableNameRE.MatchString(o.TableName) {
		return nil, fmt.Errorf("sqlite chat store: invalid table name %q: want ^[A-Za-z_][A-Za-z0-9_]{0,62}$", o.TableName)
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = chat.DefaultHistoryLimit
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

	s := &Store{writer: writer, table: o.TableName, historyLimit: o.HistoryLimit}
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
	// numeric id that is not its seq.
	s.beforeSQL = fmt.Sprintf(columns+` FROM %[1]s WHERE room_id = ? AND seq < (SELECT seq FROM %[1]s WHERE id = ?)
	ORDER BY seq DESC LIMIT ?`, t)
	s.cursorSQL = fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE id = ?)`, t)
	s.committer = groupcommit.New(s.commit, groupcommit.Options{})
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
		return nil, fmt.Errorf("sqlite chat store: %s: %w", op, chat.ErrClosed)
	}
	for _, m := range msgs {
		if len(m.Metadata) > 0 && !json.Valid(m.Metadata) {
			return nil, fmt.Errorf("sqlite chat store: %s: metadata is not valid JSON", op)
		}
	}
	out, err := s.committer.Append(ctx, msgs)
	if err != nil {
		return nil, fmt.Errorf("sqlite chat store: %s: %w", op, err)
	}
	return out, nil
}

// History implements chat.Store.
func (s *Store) History(ctx context.Context, roomID string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	if err := s.readable(ctx); err != nil {
		return nil, fmt.Errorf("sqlite chat store: history: %w", err)
	}
	if limit <= 0 {
		limit = s.historyLimit
	}
	offset = max(offset, 0)
	out, err := s.query(ctx, limit, s.historySQL, roomID, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("sqlite chat store: history: %w", s.closedOr(err))
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
		return nil, false, fmt.Errorf("sqlite chat store: history before: %w", err)
	}
	if limit <= 0 {
		limit = s.historyLimit
	}
	limit = min(limit, maxPageLimit)
	var out []protocol.StoredChatMessage
	var err error
	if beforeID == "" {
		out, err = s.query(ctx, limit+1, s.historySQL, roomID, limit+1, 0)
	} else {
		out, err = s.query(ctx, limit+1, s.beforeSQL, roomID, beforeID, limit+1)
		if err == nil && len(out) == 0 {
			// No older message, or no such cursor: only the latter is an error.
			var known bool
			if err = s.reader.QueryRowContext(ctx, s.cursorSQL, beforeID).Scan(&known); err == nil && !known {
				err = fmt.Errorf("before %q: %w", beforeID, chat.ErrBadCursor)
			}
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("sqlite chat store: history before: %w", s.closedOr(err))
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

// query runs a query of historySQL's or beforeSQL's columns on a reader
// connection and returns the messages in the order read.
func (s *Store) query(ctx context.Context, capHint int, query string, args ...any) ([]protocol.StoredChatMessage, error) {
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]protocol.StoredChatMessage, 0, min(capHint, 256))
	for rows.Next() {
		var m protocol.StoredChatMessage
		var meta string
		if err := rows.Scan(&m.ID, &m.RoomID, &m.ConnectionID, &m.UserID, &m.Message, &meta, &m.CreatedAt); err != nil {
			return nil, err
		}
		if meta != "" {
			m.Metadata = json.RawMessage(meta)
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

// Ping implements chat.Pinger: it reads the schema, which fails when the
// file has become unreadable.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("sqlite chat store: ping: %w", chat.ErrClosed)
	}
	var n int
	if err := s.reader.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return fmt.Errorf("sqlite chat store: ping: %w", err)
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
		err = errors.Join(s.reader.Close(), s.writer.Close())
		if err != nil {
			err = fmt.Errorf("sqlite chat store: close: %w", err)
		}
	})
	return err
}

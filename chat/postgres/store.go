package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

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
	// share a database. It must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$ and
	// is used exactly (quoted, so case-sensitive). Default
	// DefaultTableName.
	TableName string
	// HistoryLimit is how many messages History returns when called with
	// limit <= 0. Default chat.DefaultHistoryLimit.
	HistoryLimit int
	// MaxConns caps the connections the store opens, for History, Ping
	// and the one committer together, so that many nodes fit the
	// server's max_connections. Default 8.
	MaxConns int
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Store is a chat.Store, chat.BatchAppender and chat.Pinger backed by
// PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool         *connPool
	table        string
	historyLimit int
	committer    *groupcommit.Committer

	sequence   string // regclass text of the seq column's sequence
	insertSQL  string
	historySQL string

	closed    atomic.Bool
	closeOnce sync.Once
}

var (
	_ chat.Store         = (*Store)(nil)
	_ chat.BatchAppender = (*Store)(nil)
	_ chat.Pinger        = (*Store)(nil)
)

// New connects to the database at dsn (a postgres:// URL or key=value
// pairs, as pgx.ParseConfig takes), creates or migrates the table (see
// the package documentation), and returns the store. It fails, without
// leaving connections open, when the database is unreachable within ctx.
func New(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TableName == "" {
		o.TableName = DefaultTableName
	}
	if !tableNameRE.MatchString(o.TableName) {
		return nil, fmt.Errorf("postgres chat store: invalid table name %q: want ^[A-Za-z_][A-Za-z0-9_]{0,62}$", o.TableName)
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = chat.DefaultHistoryLimit
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	config, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres chat store: parse DSN: %w", err)
	}
	if config.RuntimeParams["application_name"] == "" {
		config.RuntimeParams["application_name"] = "openlivesync chat"
	}
	s := &Store{pool: newConnPool(config, o.MaxConns), table: o.TableName, historyLimit: o.HistoryLimit}
	schema, err := s.ensureSchema(ctx, o.TableName)
	if err != nil {
		s.pool.close()
		return nil, fmt.Errorf("postgres chat store: %w", err)
	}
	s.sequence = schema.sequence
	s.insertSQL = insertSQL(o.TableName, schema.metadataCast)
	s.historySQL = historySQL(o.TableName)
	s.committer = groupcommit.New(s.commit, groupcommit.Options{})
	return s, nil
}

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
		return nil, fmt.Errorf("postgres chat store: %s: %w", op, chat.ErrClosed)
	}
	for _, m := range msgs {
		if len(m.Metadata) > 0 && !json.Valid(m.Metadata) {
			return nil, fmt.Errorf("postgres chat store: %s: metadata is not valid JSON", op)
		}
	}
	out, err := s.committer.Append(ctx, msgs)
	if err != nil {
		return nil, fmt.Errorf("postgres chat store: %s: %w", op, err)
	}
	return out, nil
}

// History implements chat.Store.
func (s *Store) History(ctx context.Context, roomID string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("postgres chat store: history: %w", chat.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("postgres chat store: history: %w", err)
	}
	if limit <= 0 {
		limit = s.historyLimit
	}
	offset = max(offset, 0)
	for attempt := 0; ; attempt++ {
		out, broken, err := s.history(ctx, roomID, limit, offset)
		if err != nil && broken && attempt == 0 && ctx.Err() == nil {
			continue // a pooled connection died (e.g. a server restart); a read is safe to repeat
		}
		if err != nil {
			return nil, fmt.Errorf("postgres chat store: history: %w", err)
		}
		return out, nil
	}
}

// history runs the query once; broken reports that the connection failed
// under it.
func (s *Store) history(ctx context.Context, roomID string, limit, offset int) (_ []protocol.StoredChatMessage, broken bool, err error) {
	conn, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		broken = conn.IsClosed()
		s.pool.release(conn)
	}()
	rows, err := conn.Query(ctx, s.historySQL, roomID, limit, offset)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	out := make([]protocol.StoredChatMessage, 0, min(limit, 256))
	for rows.Next() {
		var m protocol.StoredChatMessage
		var meta string
		if err := rows.Scan(&m.ID, &m.RoomID, &m.ConnectionID, &m.UserID, &m.Message, &meta, &m.CreatedAt); err != nil {
			return nil, false, err
		}
		m.Metadata = compactJSON(meta)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	// The query reads newest first so LIMIT/OFFSET count from the newest;
	// History returns oldest first.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, false, nil
}

// compactJSON undoes JSONB's output spacing, which clients would otherwise
// receive in every message.
func compactJSON(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return json.RawMessage(s)
	}
	return b.Bytes()
}

// Ping implements chat.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("postgres chat store: ping: %w", chat.ErrClosed)
	}
	conn, err := s.pool.acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres chat store: ping: %w", err)
	}
	defer s.pool.release(conn)
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("postgres chat store: ping: %w", err)
	}
	return nil
}

// Close implements chat.Store: it refuses new calls, waits for the
// appends already queued to commit, then closes the connections. Calling
// it again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.committer.Close()
		s.pool.close()
	})
	return nil
}

// isStatementError reports whether the server rejected a statement, which
// aborts the transaction: nothing of it is committed.
func isStatementError(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr)
}

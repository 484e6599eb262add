package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/protocol"
)

// DefaultTableName is the table the Node.js package used, so a Go server
// pointed at the same database picks up the existing history.
const DefaultTableName = "openlivesync_chat"

// Pool settings New uses where neither Options nor the DSN sets them.
const (
	// defaultMaxConns fits many nodes into the server's max_connections.
	defaultMaxConns = 8
	// defaultMaxConnIdleTime, with the health check every
	// defaultHealthCheckPeriod, closes an idle connection within 2.5
	// minutes: before the idle timeouts of common load balancers and NAT
	// gateways (Azure 4 min, AWS NLB 350 s) silently cut it.
	defaultMaxConnIdleTime   = 2 * time.Minute
	defaultHealthCheckPeriod = 30 * time.Second
	// defaultPingTimeout bounds pgxpool's ping of a connection idle for
	// over a second, so one that a network silently dropped is replaced
	// instead of holding the append until the commit timeout.
	defaultPingTimeout = 5 * time.Second
	// defaultConnectTimeout bounds one connection attempt. pgxpool lets an
	// attempt run on after the Acquire that started it gave up, holding a
	// slot of the pool (2 minutes by default); while the database is
	// unreachable that would keep the store from reconnecting soon after
	// it is back.
	defaultConnectTimeout = 10 * time.Second
)

// Options configures a Store. A nil *Options, and every zero field, means
// the default.
type Options struct {
	// TableName is the table chat is kept in, so several deployments can
	// share a database. It must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$ and
	// is used exactly (quoted, so case-sensitive). Default
	// DefaultTableName.
	TableName string
	// HistoryLimit is how many messages History and HistoryBefore return
	// when called with limit <= 0. Default chat.DefaultHistoryLimit.
	HistoryLimit int
	// MaxConns caps the connections of the pool New creates, for History,
	// Ping and the one committer together, so that many nodes fit the
	// server's max_connections. Default: the DSN's pool_max_conns, else
	// 8. NewFromPool ignores it: the caller's pool has its own cap.
	MaxConns int
}

// Store is a chat.Store, chat.BatchAppender, chat.Pinger, chat.Pager and chat.Deleter
// backed by PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool // New made the pool, so Close closes it
	// acquireAttempts is how many connections acquire may find dead
	// before it gives up: every pooled one, plus a new one.
	acquireAttempts int
	core            *sqlstore.Core
	table           string // the chat table, unquoted

	sequence   string // regclass text of the seq column's sequence
	insertSQL  string
	historySQL string
	beforeSQL  string
	cursorSQL  string
	deleteSQL  string
	// deleteOneSQL removes one message by id and room, recording it in
	// the table of deleted ids (chat.Deleter).
	deleteOneSQL string

	// beforeCommit, when set (by tests), runs just before COMMIT is sent.
	beforeCommit func()
}

var (
	_ chat.Store         = (*Store)(nil)
	_ chat.BatchAppender = (*Store)(nil)
	_ chat.Pinger        = (*Store)(nil)
	_ chat.Pager         = (*Store)(nil)
	_ chat.Deleter       = (*Store)(nil)
)

// New connects to the database at dsn, creates or migrates the table (see
// the package documentation), and returns the store. dsn is anything
// pgxpool.ParseConfig takes: a postgres:// URL or key=value pairs,
// including its pool_* settings. It fails, without leaving connections
// open, when the database is unreachable within ctx.
//
// The store keeps its connections in a pgxpool.Pool of its own, which
// Close closes. Where neither opts nor the DSN says otherwise, the pool
// has at most 8 connections, closes connections idle for 2 minutes
// (checked every 30 s), gives a connection attempt 10 s (connect_timeout)
// and a health-check ping 5 s, and connects with application_name
// "openlivesync chat".
func New(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	o, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	config, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres chat store: parse DSN: %w", err)
	}
	if err := applyPoolDefaults(config, dsn, o.MaxConns); err != nil {
		return nil, fmt.Errorf("postgres chat store: parse DSN: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("postgres chat store: create pool: %w", err)
	}
	s, err := newStore(ctx, pool, true, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// NewFromPool is New for a caller that already has a pgxpool.Pool: the
// store uses pool's connections (its size, timeouts and health checks)
// alongside the caller's other work. It creates or migrates the table
// like New.
//
// The caller keeps ownership of pool: the store's Close waits for the
// appends already queued and stops using pool but does not close it.
// Close the store before closing pool, or the store's pending appends
// fail.
func NewFromPool(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("postgres chat store: nil pool")
	}
	o, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	return newStore(ctx, pool, false, o)
}

func withDefaults(opts *Options) (Options, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TableName == "" {
		o.TableName = DefaultTableName
	}
	if err := sqlstore.CheckTableName(o.TableName); err != nil {
		return o, fmt.Errorf("postgres chat store: %w", err)
	}
	return o, nil
}

// applyPoolDefaults gives config the store's pool settings except those
// the DSN sets: pgxpool.ParseConfig has already read its pool_* keys,
// and replaced the ones missing by pgxpool's own defaults, so the DSN is
// parsed again to tell which were given.
func applyPoolDefaults(config *pgxpool.Config, dsn string, maxConns int) error {
	raw, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return err
	}
	given := func(key string) bool {
		_, ok := raw.RuntimeParams[key]
		return ok
	}
	switch {
	case maxConns > 0:
		config.MaxConns = int32(min(maxConns, math.MaxInt32))
	case !given("pool_max_conns"):
		config.MaxConns = defaultMaxConns
	}
	if !given("pool_max_conn_idle_time") {
		config.MaxConnIdleTime = defaultMaxConnIdleTime
	}
	if !given("pool_health_check_period") {
		config.HealthCheckPeriod = defaultHealthCheckPeriod
	}
	if !given("pool_ping_timeout") {
		config.PingTimeout = defaultPingTimeout
	}
	if config.ConnConfig.ConnectTimeout == 0 {
		config.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if config.ConnConfig.RuntimeParams["application_name"] == "" {
		config.ConnConfig.RuntimeParams["application_name"] = "openlivesync chat"
	}
	return nil
}

func newStore(ctx context.Context, pool *pgxpool.Pool, owns bool, o Options) (*Store, error) {
	s := &Store{
		pool:            pool,
		ownsPool:        owns,
		acquireAttempts: int(pool.Config().MaxConns) + 1,
	}
	schema, err := s.ensureSchema(ctx, o.TableName)
	if err != nil {
		return nil, fmt.Errorf("postgres chat store: %w", err)
	}
	s.sequence = schema.sequence
	s.table = o.TableName
	s.insertSQL = insertSQL(o.TableName, schema.metadataCast)
	s.historySQL = historySQL(o.TableName)
	deleted := sqlstore.DeletedTableName(o.TableName, maxIdentLen)
	s.beforeSQL = beforeSQL(o.TableName, deleted)
	s.cursorSQL = cursorSQL(o.TableName, deleted)
	s.deleteSQL = fmt.Sprintf(`DELETE FROM %s WHERE seq = ANY($1)`, quote(o.TableName))
	s.deleteOneSQL = deleteOneSQL(o.TableName, deleted)
	s.core = sqlstore.NewCore("postgres chat store", o.HistoryLimit,
		sqlstore.Reads{Newest: s.newest, Before: s.before, Exists: s.exists}, s.commit, s.undo)
	return s, nil
}

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

// newest, before and exists are the store's sqlstore.Reads.
func (s *Store) newest(ctx context.Context, roomID string, n, offset int) ([]protocol.StoredChatMessage, error) {
	return s.readMessages(ctx, n, s.historySQL, roomID, n, offset)
}

func (s *Store) before(ctx context.Context, roomID, beforeID string, n int) ([]protocol.StoredChatMessage, error) {
	return s.readMessages(ctx, n, s.beforeSQL, roomID, beforeID, sqlstore.CursorSeq(beforeID), n)
}

func (s *Store) exists(ctx context.Context, id string) (bool, error) {
	var known bool
	err := s.read(ctx, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, s.cursorSQL, id).Scan(&known)
	})
	return known, err
}

// readMessages runs a query of historySQL's or beforeSQL's columns.
func (s *Store) readMessages(ctx context.Context, capHint int, query string, args ...any) ([]protocol.StoredChatMessage, error) {
	var out []protocol.StoredChatMessage
	err := s.read(ctx, func(conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		out, err = sqlstore.ScanMessages(rows, capHint)
		return err
	})
	return out, err
}

// read runs f on a connection of the pool. If the connection broke under
// it (e.g. the server restarted, or a proxy cut it, in a way acquire could
// not see), f runs once more on another: a read is safe to repeat.
func (s *Store) read(ctx context.Context, f func(*pgxpool.Conn) error) error {
	for attempt := 0; ; attempt++ {
		conn, err := s.acquire(ctx)
		if err != nil {
			return err
		}
		err = f(conn)
		broken := err != nil && conn.Conn().IsClosed()
		conn.Release()
		if broken && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// Delete implements chat.Deleter. One statement removes the message and
// records its id and seq in the table of deleted ids, so the id still
// pages HistoryBefore. It goes through read, which repeats a statement
// on a broken connection: deleting by id is safe to repeat (a repeat
// that finds the row gone reports it not found).
func (s *Store) Delete(ctx context.Context, roomID, id string) (bool, error) {
	return s.core.Delete(ctx, roomID, id, func(ctx context.Context, roomID, id string) (int64, error) {
		var n int64
		err := s.read(ctx, func(conn *pgxpool.Conn) error {
			return conn.QueryRow(ctx, s.deleteOneSQL, id, roomID).Scan(&n)
		})
		return n, err
	})
}

// Ping implements chat.Pinger: a round trip on a pooled connection.
func (s *Store) Ping(ctx context.Context) error {
	return s.core.Ping(ctx, func(ctx context.Context) error {
		return s.read(ctx, func(conn *pgxpool.Conn) error { return conn.Ping(ctx) })
	})
}

// Close implements chat.Store: it refuses new calls, waits for the
// appends already queued to commit, then closes the pool if New created
// it; a pool given to NewFromPool stays open. Calling it again does
// nothing.
func (s *Store) Close() error {
	return s.core.Close(func() error {
		if s.ownsPool {
			s.pool.Close()
		}
		return nil
	})
}

// isStatementError reports whether the server rejected a statement, which
// aborts the transaction: nothing of it is committed. A FATAL or PANIC
// error is not one: the server ends the session with it, possibly after
// the transaction committed (the implicit transaction of the extended
// protocol commits at Sync, after the rows were sent), so the outcome is
// unknown.
func isStatementError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	severity := pgErr.SeverityUnlocalized
	if severity == "" {
		severity = pgErr.Severity // servers before 9.6
	}
	return severity != "FATAL" && severity != "PANIC"
}

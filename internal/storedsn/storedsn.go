// Package storedsn turns the one configuration string an operator sets
// (a flag or an environment variable) into a chat store, so the server's
// main does not need to know every backend:
//
//	memory                                   in process memory (the default)
//	sqlite:PATH  or  sqlite://PATH           a SQLite file
//	postgres://user:pass@host:5432/db?...    PostgreSQL (also postgresql://)
//	mysql://user:pass@host:3306/db?...       MySQL or MariaDB
//
// Errors name the problem and the DSN with its password masked (see
// Redact), so they are safe to log. A URL whose user name or password holds an
// unencoded '@', '/', '?', '#' or '%' is refused before any driver sees
// it (see CheckUserinfo): drivers would split it in different places and
// quote the pieces.
package storedsn

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	drivermysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat"
	chatmysql "github.com/openlivesync/livesync/chat/mysql"
	chatpostgres "github.com/openlivesync/livesync/chat/postgres"
	chatsqlite "github.com/openlivesync/livesync/chat/sqlite"
	"github.com/openlivesync/livesync/internal/redact"
)

// pingTimeout bounds the reachability check, so a server pointed at a
// database that is down or firewalled fails at startup within seconds
// instead of hanging. A variable so tests can shorten it.
var pingTimeout = 5 * time.Second

// Open returns the store dsn names (see the package documentation). A
// historyLimit <= 0 means chat.DefaultHistoryLimit. For a database it
// checks within about 5 s that the database answers, then creates or
// migrates the chat table under ctx.
func Open(ctx context.Context, dsn string, historyLimit int) (chat.Store, error) {
	return open(ctx, dsn, historyLimit, "")
}

// open is Open with a table name, which tests set to keep to tables of
// their own.
func open(ctx context.Context, dsn string, historyLimit int, table string) (chat.Store, error) {
	dsn = strings.TrimSpace(dsn)
	lower := strings.ToLower(dsn)
	switch {
	case dsn == "":
		return nil, errors.New("chat store: empty DSN; want memory, sqlite:PATH, postgres://… or mysql://…")
	case lower == "memory":
		return chat.NewMemoryStore(&chat.MemoryOptions{HistoryLimit: historyLimit}), nil
	case strings.HasPrefix(lower, "sqlite:"):
		return openSQLite(ctx, dsn, historyLimit, table)
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"), strings.HasPrefix(lower, "mysql://"):
		// Before any driver sees it: a driver that splits the URL
		// elsewhere than meant would quote pieces of the password.
		if err := redact.CheckUserinfo(dsn); err != nil {
			return nil, fail(dsn, "malformed DSN", err)
		}
		// pgx reads only a lower-case scheme as a URL: it would take
		// POSTGRES://… for key=value settings, connect to the local
		// socket as another user and send the whole URL, password and
		// all, to that server, which logs it.
		i := strings.Index(dsn, "://")
		dsn = lower[:i] + dsn[i:]
		if strings.HasPrefix(lower, "mysql://") {
			return openMySQL(ctx, dsn, historyLimit, table)
		}
		return openPostgres(ctx, dsn, historyLimit, table)
	}
	return nil, fail(dsn, "unsupported DSN; want memory, sqlite:PATH, postgres://..., postgresql://... or mysql://...", nil)
}

func openSQLite(ctx context.Context, dsn string, historyLimit int, table string) (chat.Store, error) {
	path := dsn[len("sqlite:"):]
	path = strings.TrimPrefix(path, "//") // sqlite:///abs/path and sqlite://rel/path
	if path == "" {
		return nil, fail(dsn, "no database file; want sqlite:PATH", nil)
	}
	s, err := chatsqlite.New(ctx, path, &chatsqlite.Options{TableName: table, HistoryLimit: historyLimit})
	if err != nil {
		return nil, fail(dsn, "open", err)
	}
	return s, nil
}

// postgresConfig is the driver's configuration of dsn, and dsn as the
// store is given it: with a connect_timeout, so that later connections
// must not hang for ever either.
func postgresConfig(dsn string) (*pgx.ConnConfig, string, error) {
	full := dsn
	if !strings.Contains(strings.ToLower(dsn), "connect_timeout=") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		full += sep + "connect_timeout=" + strconv.Itoa(int(max(pingTimeout.Seconds(), 1)))
	}
	config, err := pgx.ParseConfig(full)
	return config, full, err
}

func openPostgres(ctx context.Context, dsn string, historyLimit int, table string) (chat.Store, error) {
	config, full, err := postgresConfig(dsn)
	if err != nil {
		return nil, fail(dsn, "malformed DSN", err)
	}
	if err := reach(ctx, func(ctx context.Context) error {
		conn, err := pgx.ConnectConfig(ctx, config)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	}); err != nil {
		return nil, fail(dsn, "database unreachable", err)
	}
	s, err := chatpostgres.New(ctx, full, &chatpostgres.Options{TableName: table, HistoryLimit: historyLimit})
	if err != nil {
		return nil, fail(dsn, "open", err)
	}
	return s, nil
}

// mysqlConfig converts mysql://user:pass@host:port/db?params to the
// driver's configuration. The query parameters are the driver's own
// (tls, charset, ...); unknown ones become session variables, as in its
// DSN format.
func mysqlConfig(dsn string) (*drivermysql.Config, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errors.New("malformed URL")
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host in URL; want mysql://user:pass@host:port/db")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" || strings.Contains(db, "/") {
		return nil, errors.New("no database name in URL; want mysql://user:pass@host:port/db")
	}
	// The driver sends unknown parameters to the server as SET name =
	// value on every connection: ?password='x' would change the account's
	// password, and an unquoted one would come back in a syntax error.
	for key := range u.Query() {
		if redact.SecretKey(key) {
			return nil, errors.New("password in a query parameter; put it in the URL: mysql://user:pass@host:port/db")
		}
	}
	cfg, err := drivermysql.ParseDSN("/?" + u.RawQuery)
	if err != nil {
		return nil, errors.New("bad query parameters: " + err.Error())
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	port := u.Port()
	if port == "" {
		port = "3306"
	}
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort(u.Hostname(), port)
	cfg.DBName = db
	if cfg.Timeout == 0 {
		cfg.Timeout = pingTimeout // later connections must not hang for ever either
	}
	return cfg, nil
}

func openMySQL(ctx context.Context, dsn string, historyLimit int, table string) (chat.Store, error) {
	cfg, err := mysqlConfig(dsn)
	if err != nil {
		return nil, fail(dsn, "malformed DSN", err)
	}
	connector, err := drivermysql.NewConnector(cfg)
	if err != nil {
		return nil, fail(dsn, "malformed DSN", err)
	}
	if err := reach(ctx, func(ctx context.Context) error {
		db := sql.OpenDB(connector)
		defer db.Close()
		return db.PingContext(ctx)
	}); err != nil {
		return nil, fail(dsn, "database unreachable", err)
	}
	s, err := chatmysql.NewFromConfig(ctx, cfg, &chatmysql.Options{TableName: table, HistoryLimit: historyLimit})
	if err != nil {
		return nil, fail(dsn, "open", err)
	}
	return s, nil
}

// reach runs ping with pingTimeout.
func reach(ctx context.Context, ping func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	err := ping(ctx)
	if err != nil && ctx.Err() != nil {
		return errors.Join(errors.New("no answer within "+pingTimeout.String()), err)
	}
	return err
}

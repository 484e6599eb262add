package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/tcpproxy"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// dsnWith returns dsn with extra settings, in URL or key=value form.
func dsnWith(t testing.TB, dsn string, params map[string]string) string {
	t.Helper()
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for k, v := range params {
		dsn += " " + k + "='" + v + "'" // later keywords override earlier ones
	}
	return dsn
}

// startProxy starts a proxy in front of target, closed when t ends.
func startProxy(t testing.TB, target string) *tcpproxy.Proxy {
	t.Helper()
	p := tcpproxy.Start(t, target)
	return p
}

// proxiedDSN returns the test database's DSN with host and port replaced
// by the proxy's, plus params.
func proxiedDSN(t testing.TB, p *tcpproxy.Proxy, params map[string]string) string {
	t.Helper()
	all := map[string]string{"host": "127.0.0.1", "port": p.Port()}
	for k, v := range params {
		all[k] = v
	}
	return dsnWith(t, testsvc.PostgresDSN(t), all)
}

// databaseAddr is the host:port of the test database.
func databaseAddr(t testing.TB) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(testsvc.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Skip("the test database is reached through a Unix socket; the proxy tests need TCP")
	}
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
}

// newProxiedStore opens a store, on a table of its own, whose
// connections go through a new proxy, and stores one message through it.
func newProxiedStore(t *testing.T, params map[string]string, opts Options) (*Store, *tcpproxy.Proxy) {
	t.Helper()
	p := startProxy(t, databaseAddr(t))
	if opts.TableName == "" {
		opts.TableName = testsvc.TableName(t, "olsproxy")
	}
	dropOnCleanup(t, testsvc.PostgresDSN(t), opts.TableName)
	s := storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, proxiedDSN(t, p, params), &opts) })
	if _, err := s.Append(storetest.Ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "first"}); err != nil {
		t.Fatal(err)
	}
	return s, p
}

func TestProxyCutDoesNotFailTheNextAppend(t *testing.T) {
	s, p := newProxiedStore(t, nil, Options{})
	ctx := storetest.Ctx(t)

	stored := 1
	appendNow := func(what string) {
		t.Helper()
		if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: what}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		stored++
	}
	for round := range 5 {
		// Open several connections, so several dead ones wait in the pool.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.History(ctx, "r", 0, 0); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: History: %v", round, err)
		}
		appendNow(fmt.Sprintf("round %d before the cut", round))

		p.Drop() // no pause: the append comes right after
		// The store drops connections it sees closed. On a loaded machine the
		// kernel may deliver the cut to the pool's socket a moment late, and
		// then the append that races it fails; the one after it must not.
		if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "raced the cut"}); err != nil {
			t.Logf("round %d: the append racing the cut failed: %v", round, err)
			appendNow(fmt.Sprintf("round %d after the cut", round))
		} else {
			stored++
		}

		p.Drop()
		if got, err := s.History(ctx, "r", 0, 0); err != nil || len(got) != stored {
			t.Fatalf("round %d: History after a cut = %d messages, %v; want %d", round, len(got), err, stored)
		}
		p.Drop()
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("round %d: Ping after a cut: %v", round, err)
		}
		p.Drop()
		if _, more, err := s.HistoryBefore(ctx, "r", "", 1); err != nil || !more {
			t.Fatalf("round %d: HistoryBefore after a cut: %v, %v", round, more, err)
		}
	}
}

func TestRecoversWhenTheDatabaseIsBack(t *testing.T) {
	s, p := newProxiedStore(t, nil, Options{})
	ctx := storetest.Ctx(t)
	msg := chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}

	// The database goes away: appends fail, and fail fast.
	p.Cut()
	start := time.Now()
	if _, err := s.Append(ctx, msg); err == nil {
		t.Fatal("Append succeeded with the database unreachable")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Append took %v to fail with the database refusing connections", d)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping succeeded with the database unreachable")
	}

	// It is back: the very next append succeeds.
	p.Restore()
	start = time.Now()
	if _, err := s.Append(ctx, msg); err != nil {
		t.Fatalf("Append once the database was back: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the first Append after the outage took %v", d)
	}
	if got, err := s.History(ctx, "r", 0, 0); err != nil || len(got) != 2 {
		t.Fatalf("History = %d messages, %v; want 2", len(got), err)
	}
}

func TestRecoversAfterABlackhole(t *testing.T) {
	// Connection attempts into a dead network hang. pgxpool lets them run
	// on after the append that started them gave up, each holding a slot
	// of the pool; connect_timeout (10 s unless the DSN says otherwise)
	// bounds how long, so that the store reconnects soon after the
	// network is back instead of after pgxpool's default of 2 minutes.
	s, p := newProxiedStore(t, map[string]string{"connect_timeout": "1"}, Options{MaxConns: 2})
	ctx := storetest.Ctx(t)
	msg := chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}

	p.Hang()
	p.Drop()
	// Fill both slots of the pool with hanging connection attempts.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			_, _ = s.History(short, "r", 0, 0)
		}()
	}
	wg.Wait()

	p.Restore()
	start := time.Now()
	if _, err := s.Append(ctx, msg); err != nil {
		t.Fatalf("Append once the network was back: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the first Append after the blackhole took %v", d)
	}
}

func TestPoolSettings(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	table := testsvc.TableName(t, "olspool")
	dropOnCleanup(t, dsn, table)
	open := func(dsn string, opts Options) *pgxpool.Config {
		t.Helper()
		opts.TableName = table
		s := storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, dsn, &opts) })
		defer s.Close()
		if !s.ownsPool {
			t.Error("New's store does not own its pool")
		}
		return s.pool.Config()
	}

	c := open(dsn, Options{})
	if c.MaxConns != defaultMaxConns || c.MaxConnIdleTime != defaultMaxConnIdleTime ||
		c.HealthCheckPeriod != defaultHealthCheckPeriod || c.PingTimeout != defaultPingTimeout ||
		c.ConnConfig.ConnectTimeout != defaultConnectTimeout || c.ConnConfig.RuntimeParams["application_name"] != "openlivesync chat" {
		t.Errorf("defaults: MaxConns %d, MaxConnIdleTime %v, HealthCheckPeriod %v, PingTimeout %v, ConnectTimeout %v, application_name %q",
			c.MaxConns, c.MaxConnIdleTime, c.HealthCheckPeriod, c.PingTimeout, c.ConnConfig.ConnectTimeout, c.ConnConfig.RuntimeParams["application_name"])
	}

	fromDSN := dsnWith(t, dsn, map[string]string{
		"pool_max_conns": "3", "pool_max_conn_idle_time": "1m", "pool_health_check_period": "15s",
		"pool_ping_timeout": "2s", "connect_timeout": "4", "application_name": "mine",
	})
	c = open(fromDSN, Options{})
	if c.MaxConns != 3 || c.MaxConnIdleTime != time.Minute || c.HealthCheckPeriod != 15*time.Second ||
		c.PingTimeout != 2*time.Second || c.ConnConfig.ConnectTimeout != 4*time.Second || c.ConnConfig.RuntimeParams["application_name"] != "mine" {
		t.Errorf("DSN settings not kept: MaxConns %d, MaxConnIdleTime %v, HealthCheckPeriod %v, PingTimeout %v, ConnectTimeout %v, application_name %q",
			c.MaxConns, c.MaxConnIdleTime, c.HealthCheckPeriod, c.PingTimeout, c.ConnConfig.ConnectTimeout, c.ConnConfig.RuntimeParams["application_name"])
	}
	if _, ok := c.ConnConfig.RuntimeParams["pool_max_conns"]; ok {
		t.Error("pool_max_conns would be sent to the server as a setting")
	}

	if c = open(fromDSN, Options{MaxConns: 5}); c.MaxConns != 5 {
		t.Errorf("Options.MaxConns 5 with pool_max_conns=3: MaxConns %d, want 5", c.MaxConns)
	}
}

// newPool returns a pool of the test's own, closed when the test ends.
func newPool(t testing.TB, mutate func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	config, err := pgxpool.ParseConfig(testsvc.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(config)
	}
	pool, err := pgxpool.NewWithConfig(storetest.Ctx(t), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestConformanceFromPool(t *testing.T) {
	// A caller's pool may be set up for PgBouncer's transaction pooling,
	// which rules out prepared statements: the store's statements must
	// work with the simple protocol too.
	chattest.Run(t, func(t *testing.T) chat.Store {
		pool := newPool(t, func(c *pgxpool.Config) {
			c.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		})
		table := testsvc.TableName(t, "olspool")
		dropOnCleanup(t, testsvc.PostgresDSN(t), table)
		return storetest.Open(t, func(ctx context.Context) (*Store, error) {
			return NewFromPool(ctx, pool, &Options{TableName: table})
		})
	})
}

func TestNewFromPoolLeavesThePoolOpen(t *testing.T) {
	pool := newPool(t, nil)
	table := testsvc.TableName(t, "olspool")
	dropOnCleanup(t, testsvc.PostgresDSN(t), table)
	ctx := storetest.Ctx(t)
	s, err := NewFromPool(ctx, pool, &Options{TableName: table, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if s.ownsPool {
		t.Error("the store claims the caller's pool")
	}
	m, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "late"}); !errors.Is(err, chat.ErrClosed) {
		t.Errorf("Append after Close: %v; want chat.ErrClosed", err)
	}
	// The caller's pool still works, and sees what the store wrote.
	var id string
	if err := pool.QueryRow(ctx, `SELECT id FROM `+quote(table)).Scan(&id); err != nil || id != m.ID {
		t.Fatalf("the caller's pool after the store's Close: id %q, %v; want %q", id, err, m.ID)
	}

	// A second store on the same pool and table sees the history.
	s2 := storetest.Open(t, func(ctx context.Context) (*Store, error) { return NewFromPool(ctx, pool, &Options{TableName: table}) })
	if got, err := s2.History(ctx, "r", 0, 0); err != nil || len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("History through a second store = %v, %v", got, err)
	}

	if _, err := NewFromPool(ctx, nil, nil); err == nil {
		t.Error("NewFromPool(nil) succeeded")
	}
	if _, err := NewFromPool(ctx, pool, &Options{TableName: "bad-name"}); err == nil || !strings.Contains(err.Error(), "invalid table name") {
		t.Errorf("NewFromPool with a bad table name: %v", err)
	}
}

// Package testsvc lets tests find the real services (PostgreSQL, MariaDB
// or MySQL, Redis) they run against, and decides what happens when one is
// missing: on a developer machine the test is skipped with a message
// saying what to start; in CI, where OPENLIVESYNC_REQUIRE_SERVICES is set,
// a missing service fails the test instead of silently skipping it.
//
// Each service's address can be overridden with an environment variable:
// OPENLIVESYNC_TEST_POSTGRES_DSN, OPENLIVESYNC_TEST_MYSQL_DSN (in
// go-sql-driver form), OPENLIVESYNC_TEST_REDIS_ADDR and
// OPENLIVESYNC_TEST_REDIS_CLUSTER_ADDRS (comma-separated seeds of a Redis
// Cluster; .ci/run starts one on 127.0.0.1:7000-7002). A test that kills
// nodes of a Redis Cluster starts one of its own with StartRedisCluster,
// never touching the shared one.
package testsvc

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
)

// RequireEnv is the environment variable that turns a missing service
// from a skip into a failure, so CI cannot pass without testing anything.
const RequireEnv = "OPENLIVESYNC_REQUIRE_SERVICES"

// Default addresses of the local services.
const (
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test"
	DefaultRedisAddr   = "127.0.0.1:6379"
	// DefaultRedisClusterAddrs are the seeds of the 3-master Redis Cluster
	// that .ci/run starts.
	DefaultRedisClusterAddrs = "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
)

// probeTimeout bounds each reachability check so a missing service costs
// a test run seconds, not minutes.
const probeTimeout = 3 * time.Second

// Require skips t (or fails it when RequireEnv is set) if err, the result
// of reaching the service name, is not nil. Tests call it directly when
// they probe a service in their own way.
func Require(t testing.TB, name string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%s is required (%s is set) but not reachable: %v", name, RequireEnv, err)
	}
	t.Skipf("%s not reachable, skipping (start it, or set %s to make this a failure): %v", name, RequireEnv, err)
}

// probe remembers each service's reachability for the life of the test
// binary: every test asks, but the answer does not change.
type probe struct {
	once sync.Once
	err  error
}

var (
	pgProbe, mysqlProbe, redisProbe, clusterProbe probe
)

func (p *probe) check(f func() error) error {
	p.once.Do(func() { p.err = f() })
	return p.err
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// PostgresDSN returns the URL of a PostgreSQL database tests may create
// and drop tables in, after checking it accepts connections.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := env("OPENLIVESYNC_TEST_POSTGRES_DSN", DefaultPostgresDSN)
	Require(t, "PostgreSQL", pgProbe.check(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	}))
	return dsn
}

// MySQLDSN returns the go-sql-driver DSN of a MariaDB or MySQL database
// tests may create and drop tables in, after checking it accepts
// connections.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn := env("OPENLIVESYNC_TEST_MYSQL_DSN", DefaultMySQLDSN)
	Require(t, "MySQL/MariaDB", mysqlProbe.check(func() error {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			return err
		}
		cfg.Timeout = probeTimeout
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		return db.PingContext(ctx)
	}))
	return dsn
}

// RedisAddr returns the host:port of a Redis server, after checking that
// it accepts TCP connections.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := env("OPENLIVESYNC_TEST_REDIS_ADDR", DefaultRedisAddr)
	Require(t, "Redis", redisProbe.check(func() error {
		c, err := net.DialTimeout("tcp", addr, probeTimeout)
		if err != nil {
			return err
		}
		return c.Close()
	}))
	return addr
}

// TableName returns a table name no other test, in this run or a
// concurrent one, uses: prefix, the test's name folded to identifier
// characters, and a random suffix. It fits the 63-character identifier
// limit of PostgreSQL.
func TableName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testsvc: random table suffix: %v", err)
	}
	var name strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			name.WriteRune(r)
		default:
			name.WriteByte('_')
		}
	}
	middle := name.String()
	const maxLen = 63
	suffix := "_" + hex.EncodeToString(b[:])
	if room := maxLen - len(prefix) - len(suffix) - 1; len(middle) > room {
		middle = middle[len(middle)-max(room, 0):]
	}
	return fmt.Sprintf("%s_%s%s", prefix, middle, suffix)
}

// RedisPrefix returns the address of the Redis server (see RedisAddr) and
// a key prefix no other test uses; the prefix's keys are deleted when the
// test ends.
func RedisPrefix(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr = RedisAddr(t)
	prefix = randomPrefix(t)
	t.Cleanup(func() {
		rdb := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2})
		defer rdb.Close()
		DeleteKeys(rdb, prefix)
	})
	return addr, prefix
}

// DeleteKeys deletes the keys under prefix, as a Redis restart without
// persistence would. With a cluster client it deletes them on every
// master: in a cluster the broker's keys start with "{"+prefix.
func DeleteKeys(rdb goredis.UniversalClient, prefix string) {
	ctx := context.Background()
	del := func(ctx context.Context, c *goredis.Client) error {
		for _, pattern := range []string{prefix + ":*", "{" + prefix + ":*"} {
			iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				// One key at a time: keys of different slots cannot go in
				// one DEL on a cluster node.
				c.Del(ctx, iter.Val())
			}
		}
		return nil
	}
	switch c := rdb.(type) {
	case *goredis.ClusterClient:
		c.ForEachMaster(ctx, del)
	case *goredis.Client:
		del(ctx, c)
	}
}

// RedisClusterAddrs returns the seed addresses of a Redis Cluster, after
// checking that the cluster answers and says cluster_state:ok.
func RedisClusterAddrs(t testing.TB) []string {
	t.Helper()
	addrs := strings.Split(env("OPENLIVESYNC_TEST_REDIS_CLUSTER_ADDRS", DefaultRedisClusterAddrs), ",")
	Require(t, "Redis Cluster", clusterProbe.check(func() error {
		c := goredis.NewClient(&goredis.Options{Addr: addrs[0], Protocol: 2, DialTimeout: probeTimeout, MaxRetries: -1})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		info, err := c.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("cluster at %s is not ok: %s", addrs[0], info)
		}
		return nil
	}))
	return addrs
}

// RedisClusterURL returns the go-redis cluster URL of the Redis Cluster
// (see RedisClusterAddrs), with a key prefix no other test uses; the
// prefix's keys are deleted when the test ends.
func RedisClusterURL(t testing.TB) (url, prefix string) {
	t.Helper()
	addrs := RedisClusterAddrs(t)
	prefix = randomPrefix(t)
	url = "redis://" + addrs[0] + "?prefix=" + prefix
	for _, a := range addrs[1:] {
		url += "&addr=" + a
	}
	t.Cleanup(func() {
		rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, Protocol: 2})
		defer rdb.Close()
		DeleteKeys(rdb, prefix)
	})
	return url, prefix
}

func randomPrefix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testsvc: random key prefix: %v", err)
	}
	return "olstest-" + hex.EncodeToString(b[:])
}

// WaitFor polls cond until it holds, failing t when timeout passes first:
// tests wait for a condition, never for a fixed time.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	WaitState(t, what, timeout, func() (bool, any) { return cond(), nil })
}

// WaitState is WaitFor for a condition on some state, which the failure
// shows as it last was: cond returns whether it holds, and the state.
func WaitState(t testing.TB, what string, timeout time.Duration, cond func() (bool, any)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != nil {
				t.Fatalf("timed out after %v waiting for %s; last seen: %v", timeout, what, state)
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package livesync

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker/redis"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// clusterEnv is a Redis key space of one test: a prefix no other test
// uses, deleted when the test ends; on a single Redis or, with
// newRedisClusterEnv, on a Redis Cluster.
type clusterEnv struct {
	t          testing.TB
	addr       string // Redis (single mode: tests put proxies in front of it)
	clusterURL string // Redis Cluster mode: the broker's URL, prefix included
	prefix     string
	rdb        goredis.UniversalClient
	links      map[string]*redisLink // by addr
}

func newClusterEnv(t testing.TB) *clusterEnv {
	t.Helper()
	addr, prefix := testsvc.RedisPrefix(t)
	e := &clusterEnv{t: t, addr: addr, prefix: prefix, rdb: goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2}), links: map[string]*redisLink{}}
	t.Cleanup(func() { e.rdb.Close() })
	return e
}

// newRedisClusterEnv is newClusterEnv on the 3-shard Redis Cluster. Its
// addr is the first seed, which the broker detects as a cluster node;
// nodes given that address use the whole cluster.
func newRedisClusterEnv(t testing.TB) *clusterEnv {
	t.Helper()
	url, prefix := testsvc.RedisClusterURL(t)
	addrs := testsvc.RedisClusterAddrs(t)
	e := &clusterEnv{t: t, addr: addrs[0], clusterURL: url, prefix: prefix,
		rdb:   goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, Protocol: 2}),
		links: map[string]*redisLink{}}
	t.Cleanup(func() { e.rdb.Close() })
	return e
}

// forRedisModes runs test on a single Redis and on a Redis Cluster: one
// suite, two backends.
func forRedisModes(t *testing.T, test func(t *testing.T, e *clusterEnv)) {
	t.Run("single", func(t *testing.T) { test(t, newClusterEnv(t)) })
	t.Run("cluster", func(t *testing.T) { test(t, newRedisClusterEnv(t)) })
}

// brokerURL is the broker URL of a node reaching Redis at addr.
func (e *clusterEnv) brokerURL(addr string) string {
	if e.clusterURL != "" && addr == e.addr {
		return e.clusterURL
	}
	return "redis://" + addr + "/0?prefix=" + e.prefix
}

// wipe deletes the test's keys, as a Redis restart without persistence
// would.
func (e *clusterEnv) wipe() { testsvc.DeleteKeys(e.rdb, e.prefix) }

// node starts a server that is a node of the test's cluster, reaching
// Redis at addr (the real one, a proxy's, or a redisLink's), and returns
// its WebSocket URL.
func (e *clusterEnv) node(addr string, store chat.Store, log *slog.Logger) (*Server, string) {
	e.t.Helper()
	return startServer(e.t, e.nodeOptions(addr, store, log))
}

// nodes starts n nodes sharing store and returns their WebSocket URLs.
func (e *clusterEnv) nodes(n int, store chat.Store) []string {
	e.t.Helper()
	urls := make([]string, n)
	for i := range urls {
		_, urls[i] = e.node(e.addr, store, nil)
	}
	return urls
}

// nodeOptions are the options of a node of the test's cluster.
func (e *clusterEnv) nodeOptions(addr string, store chat.Store, log *slog.Logger) *Options {
	e.t.Helper()
	if log == nil {
		log = discardLogger()
	}
	bo := &redis.Options{
		Logger:    log,
		Heartbeat: 100 * time.Millisecond,
		NodeTTL:   time.Second,
		OpTimeout: time.Second,
	}
	if l := e.links[addr]; l != nil {
		addr, bo.Dialer = e.addr, l.Dial
	}
	b, err := redis.New(context.Background(), e.brokerURL(addr), bo)
	if err != nil {
		e.t.Fatal(err)
	}
	return &Options{Broker: b, Store: store, Logger: log, Limits: Limits{EventRate: 1e6, EventBurst: 1e6, ChatRate: 1e6, ChatBurst: 1e6}}
}

// sharedStore is one chat store shared by the nodes of a test, as a
// database is in production; the test closes it, not each node.
type sharedStore struct{ *chat.MemoryStore }

func (sharedStore) Close() error { return nil }

func newSharedStore(t testing.TB) sharedStore {
	s := chat.NewMemoryStore(nil)
	t.Cleanup(func() { s.Close() })
	return sharedStore{s}
}

// redisLink is the way some nodes of a test reach Redis, which the test
// cuts, hangs and restores: a proxy in front of the single Redis, or in
// front of each node of the Redis Cluster (the brokers dial every node
// through its proxy: redis.Options.Dialer), so that "Redis goes away" means
// the same in both modes. Its addr stands for it where a node is given the
// address it reaches Redis at.
type redisLink struct {
	*testsvc.Proxies
	addr string
}

// link returns a new redisLink of e.
func (e *clusterEnv) link() *redisLink {
	l := &redisLink{Proxies: testsvc.NewProxies(e.t, nil), addr: fmt.Sprintf("link-%d.invalid:1", len(e.links))}
	e.links[l.addr] = l
	return l
}

// Addr is what a node is given to reach Redis through l.
func (l *redisLink) Addr() string { return l.addr }

// userKey, pendingKey and membersKey are the broker's keys of a user's
// connections, of the user's pending offline, and of a room's registry,
// for tests that look into Redis (see broker/redis: cluster.go names the
// cluster's).
func (e *clusterEnv) userKey(user string) string {
	if e.clusterURL != "" {
		return "{" + e.prefix + ":u:" + user + "}"
	}
	return e.prefix + ":u:" + user
}

func (e *clusterEnv) pendingKey(user string) string {
	if e.clusterURL != "" {
		return "{" + e.prefix + ":u:" + user + "}:o"
	}
	return e.prefix + ":uo:" + user
}

func (e *clusterEnv) membersKey(room string) string {
	if e.clusterURL != "" {
		return "{" + e.prefix + ":r:" + room + "}:m"
	}
	return e.prefix + ":m:" + room
}

// outageLogs is what a node logs, and how many times, for an outage of the
// whole of Redis: once; on a Redis Cluster, once per shard (each shard's
// outage is its own), never more, however long it lasts.
func (e *clusterEnv) outageLogs() (substr string, times int) {
	if e.clusterURL != "" {
		return "redis shard unreachable", len(testsvc.RedisClusterAddrs(e.t))
	}
	return "redis unreachable", 1
}

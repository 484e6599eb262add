package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// TestClusterStartsWithBlackholedSeeds: two seeds of three accept
// connections and never answer (a host that drops packets); the broker
// starts every time on the one that answers, and names no shard down.
// go-redis alone asked the seeds one after another, each within the whole
// start-up budget, and failed whenever a blackhole came first.
func TestClusterStartsWithBlackholedSeeds(t *testing.T) {
	seeds := testsvc.RedisClusterAddrs(t)
	_, prefix := testsvc.RedisClusterURL(t)
	url := "redis://" + testsvc.Blackhole(t) + "?prefix=" + prefix + "&addr=" + testsvc.Blackhole(t) + "&addr=" + seeds[1]
	for i := range 5 {
		b, err := New(context.Background(), url, &Options{OpTimeout: 500 * time.Millisecond})
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if b.cluster == nil {
			t.Fatalf("start %d: not in cluster mode", i)
		}
		b.Close()
	}
}

// TestClusterBlackholedMasterIsItsShardOnly: behind NAT (the nodes are
// given, and announce themselves, under addresses the broker reaches
// under another host name), one master's host stops answering. Probe
// after probe, only that master is down, named with its slots; its rooms
// fail fast while the others' are served; Healthy stays nil. Back, it is
// reported back.
func TestClusterBlackholedMasterIsItsShardOnly(t *testing.T) {
	seeds := testsvc.RedisClusterAddrs(t)
	_, prefix := testsvc.RedisClusterURL(t)
	// The nodes announce 127.0.0.1; the broker knows them as redis.test.
	px := testsvc.NewProxies(t, map[string]string{"redis.test": "127.0.0.1"})
	nat := func(addr string) string { return strings.Replace(addr, "127.0.0.1", "redis.test", 1) }
	url := "redis://" + nat(seeds[0]) + "?prefix=" + prefix + "&addr=" + nat(seeds[1])
	b, _ := startBroker(t, url, "na", func(o *Options) {
		o.Dialer = px.Dial
		o.OpTimeout = 300 * time.Millisecond
	})
	victim := nat(seeds[2])
	var dead, alive string
	for i := 0; dead == "" || alive == ""; i++ {
		room := fmt.Sprint("room-", i)
		m, err := b.cluster.MasterForKey(context.Background(), b.k.members(room))
		if err != nil {
			t.Fatal(err)
		}
		if m.Options().Addr == victim {
			dead = room
		} else if alive == "" {
			alive = room
		}
	}
	px.Proxy(seeds[2]).Hang()
	want := "shard " + victim + " (slots "
	for i := range 8 {
		b.probe()
		d := b.Degraded()
		if len(d) != 1 || !strings.HasPrefix(d[0], want) || strings.Contains(d[0], "slots none") {
			t.Fatalf("probe %d: Degraded %q, want only %s with its slots", i, d, victim)
		}
		if err := b.Healthy(); err != nil {
			t.Fatalf("probe %d: Healthy %v with one master of three down", i, err)
		}
	}
	if err := b.keyDown(b.k.members(dead)); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("the dead shard's room: %v, want a fast ErrUnavailable", err)
	}
	if st, err := b.RoomState(context.Background(), alive); err != nil {
		t.Errorf("RoomState of a live shard's room: %+v, %v", st, err)
	}
	px.Proxy(seeds[2]).Restore()
	livesynctest.WaitFor(t, "the shard back", func() bool { return len(b.Degraded()) == 0 })
}

// TestReachable: announced addresses as a client reaching origin reaches
// them.
func TestReachable(t *testing.T) {
	for _, c := range []struct{ announced, origin, want string }{
		{"127.0.0.1:7001", "redis.example:7000", "redis.example:7001"}, // NAT, Docker
		{"127.0.0.1:7001", "127.0.0.1:7000", "127.0.0.1:7001"},         // all local
		{"127.0.0.1:7001", "localhost:7000", "127.0.0.1:7001"},
		{"10.0.0.2:7001", "redis.example:7000", "10.0.0.2:7001"}, // routable: as announced
		{"10.0.0.2:0", "10.0.0.1:6380", "10.0.0.2:6380"},         // TLS-only: no plain port
		{":7001", "10.0.0.1:7000", "10.0.0.1:7001"},              // no host known
		{"[::1]:7001", "redis.example:7000", "redis.example:7001"},
		{"garbage", "redis.example:7000", "garbage"},
	} {
		if got := reachable(c.announced, c.origin); got != c.want {
			t.Errorf("reachable(%q, %q) = %q, want %q", c.announced, c.origin, got, c.want)
		}
	}
}

// TestClusterTLSNamesEachNode: over rediss://, each node's certificate is
// checked against its own host, not the first seed's, for the nodes
// go-redis creates and for the slot loader's.
func TestClusterTLSNamesEachNode(t *testing.T) {
	u, _ := url.Parse("rediss://a.example:7000?addr=b.example:7001")
	co, loader, err := clusterOptions(u, u.Query(), Options{OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer loader.close()
	base := co.TLSConfig
	node := co.NewClient(&goredis.Options{Addr: ":7001", NodeAddress: "b.example:7001", TLSConfig: base})
	defer node.Close()
	for name, got := range map[string]*tls.Config{
		"node":   node.Options().TLSConfig,
		"loader": loaderOptions(co, "c.example:7002").TLSConfig,
	} {
		want := map[string]string{"node": "b.example", "loader": "c.example"}[name]
		if got == nil || got.ServerName != want {
			t.Errorf("%s: TLS %+v, want ServerName %q", name, got, want)
		}
	}
	if node.Options().Addr != "b.example:7001" {
		t.Errorf("node dials %q, want the loader's address", node.Options().Addr)
	}
	if base.ServerName != "a.example" {
		t.Errorf("the shared configuration was changed: ServerName %q", base.ServerName)
	}
	// Plain redis://: no TLS anywhere.
	u, _ = url.Parse("redis://a.example:7000?addr=b.example:7001")
	co, loader, err = clusterOptions(u, u.Query(), Options{OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer loader.close()
	if c := loaderOptions(co, "b.example:7001").TLSConfig; c != nil {
		t.Errorf("TLS %+v for a redis:// URL", c)
	}
}

// TestNewSingleWhoseACLForbidsInfoAndCluster: a single Redis whose user may
// run neither INFO nor CLUSTER (a locked-down ACL, as managed services
// hand out) is a single Redis, not a start-up error: the refusal of the
// cluster detection means "not a cluster". The broker then relays.
func TestNewSingleWhoseACLForbidsInfoAndCluster(t *testing.T) {
	addr, prefix := testsvc.RedisPrefix(t)
	admin := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2})
	defer admin.Close()
	ctx := context.Background()
	user := prefix + "-user"
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "reset", "on", ">pw", "~*", "&*", "+@all", "-info", "-cluster").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	url := "redis://" + user + ":pw@" + addr + "/0?prefix=" + prefix
	a, _ := startBroker(t, url, "na")
	if a.cluster != nil {
		t.Fatal("a single Redis taken for a cluster")
	}
	b, rb := startBroker(t, url, "nb")
	subscribe(t, b, "r")
	a.PublishEvent("r", []byte(`"x"`))
	rb.waitFor(t, `event r "x"`)
}

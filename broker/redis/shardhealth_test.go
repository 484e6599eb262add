package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// TestKeySlot: keySlot agrees with Redis's CLUSTER KEYSLOT, hash tags
// and their corner cases included.
func TestKeySlot(t *testing.T) {
	addrs := testsvc.RedisClusterAddrs(t)
	c := goredis.NewClient(&goredis.Options{Addr: addrs[0], Protocol: 2})
	defer c.Close()
	keys := []string{"", "a", "foo", "{olstest:r:room-1}:m", "olstest:nodes", "{}x", "x{}{y}", "a{b", "a}b{c}", "{{a}}", "{a}{b}", "ünïcode{é}", strings.Repeat("k", 300)}
	for _, k := range keys {
		want, err := c.ClusterKeySlot(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(k); int64(got) != want {
			t.Errorf("keySlot(%q) = %d, Redis says %d", k, got, want)
		}
	}
}

// TestClusterShardDown: on a Redis Cluster of the test's own, one master
// killed degrades only the rooms it owns. A room of another shard keeps
// relaying; the dead shard's room fails fast with broker.ErrUnavailable
// naming the shard; Healthy stays nil while Degraded names the shard and
// its slots. Restarted (empty), the shard is reported back and the
// brokers resynchronise, re-registering the members it lost.
func TestClusterShardDown(t *testing.T) {
	c := testsvc.StartRedisCluster(t, 3)
	url := c.URL("olstest-own")
	a, _ := startBroker(t, url, "a")
	b, rb := startBroker(t, url, "b")
	// A room on the shard to kill and one elsewhere.
	victim := 1
	var dead, alive string
	for i := 0; dead == "" || alive == ""; i++ {
		room := fmt.Sprint("room-", i)
		m, err := a.cluster.MasterForKey(context.Background(), a.k.members(room))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Options().Addr == c.Addrs[victim]:
			dead = cmp.Or(dead, room)
		default:
			alive = cmp.Or(alive, room)
		}
	}
	for _, x := range []*Broker{a, b} {
		subscribe(t, x, dead)
		subscribe(t, x, alive)
	}
	a.SetMember(dead, "c1", []byte(`{"n":1}`))
	a.SetMember(alive, "c2", []byte(`{"n":2}`))
	rb.waitFor(t, "set "+dead+" c1 {\"n\":1}", "set "+alive+" c2 {\"n\":2}")

	c.Kill(victim)
	for _, x := range []*Broker{a, b} {
		livesynctest.WaitFor(t, "the dead shard named", func() bool {
			d := x.Degraded()
			return len(d) == 1 && strings.HasPrefix(d[0], "shard "+c.Addrs[victim]+" (slots ")
		})
		if err := x.Healthy(); err != nil {
			t.Errorf("Healthy with one shard of three down: %v", err)
		}
	}
	_, err := b.RoomState(context.Background(), dead)
	if !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), c.Addrs[victim]) {
		t.Errorf("RoomState of the dead shard's room: %v, want ErrUnavailable naming %s", err, c.Addrs[victim])
	}
	if st, err := b.RoomState(context.Background(), alive); err != nil || len(st.Members) != 1 {
		t.Errorf("RoomState of a live shard's room: %+v, %v", st, err)
	}
	a.PublishEvent(alive, []byte(`"during"`))
	a.SetMember(alive, "c2", []byte(`{"n":3}`))
	rb.waitFor(t, "event "+alive+` "during"`, "set "+alive+" c2 {\"n\":3}")
	resyncs := rb.resyncCount()

	c.Restart(victim)
	for _, x := range []*Broker{a, b} {
		livesynctest.WaitFor(t, "the shard back", func() bool { return len(x.Degraded()) == 0 })
	}
	livesynctest.WaitFor(t, "b to resynchronise", func() bool { return rb.resyncCount() > resyncs })
	// The registry the shard lost is rebuilt by a's re-registration.
	livesynctest.WaitFor(t, "c1 re-registered", func() bool {
		st, err := b.RoomState(context.Background(), dead)
		return err == nil && slices.ContainsFunc(st.Members, func(m broker.Member) bool { return m.ConnID == "c1" })
	})
	a.PublishEvent(dead, []byte(`"after"`))
	rb.waitFor(t, "event "+dead+` "after"`)
}

// TestNewWithAShardDown: a broker starts on a Redis Cluster one of whose
// masters is down (an outage of that shard, not a start-up error), and
// names the shard at once.
func TestNewWithAShardDown(t *testing.T) {
	c := testsvc.StartRedisCluster(t, 3)
	c.Kill(2)
	// Every seed in turn first: a keyless command goes to any master.
	for i := range 3 {
		url := "redis://" + c.Addrs[i] + "?prefix=olstest-own"
		for j := range 3 {
			if j != i {
				url += "&addr=" + c.Addrs[j]
			}
		}
		b, _ := startBroker(t, url, fmt.Sprint("n", i))
		if d := b.Degraded(); len(d) != 1 || !strings.Contains(d[0], c.Addrs[2]) {
			t.Errorf("seed %s first: Degraded %q, want %s named", c.Addrs[i], d, c.Addrs[2])
		}
		if err := b.Healthy(); err != nil {
			t.Errorf("seed %s first: Healthy %v", c.Addrs[i], err)
		}
	}
	// A single address that is a cluster node, alive.
	b, _ := startBroker(t, "redis://"+c.Addrs[0]+"?prefix=olstest-own", "single")
	if b.cluster == nil {
		t.Error("a cluster node's address made a single-Redis broker")
	}
}

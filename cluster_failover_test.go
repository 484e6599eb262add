package livesync

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// TestRedisClusterFailover: the master of one room's shard hands its slots
// over to its replica, in a planned switch (CLUSTER FAILOVER, as managed
// services do for maintenance) or because it crashed (killed; the cluster
// promotes the replica). The nodes follow the new map: the room's
// traffic crosses nodes again — presence, events exactly once and in
// order, chat in store order — and the rooms of the other shards go on
// throughout, undisturbed. What was published during the switch itself
// may be lost, as in an outage (chat is not: it is recovered from the
// room's backlog); the test waits for both nodes to have followed, and
// for an event to cross, before it counts.
func TestRedisClusterFailover(t *testing.T) {
	t.Run("planned", func(t *testing.T) { testFailover(t, false) })
	t.Run("crash", func(t *testing.T) { testFailover(t, true) })
}

func testFailover(t *testing.T, crash bool) {
	c := testsvc.StartRedisCluster(t, 3)
	e := newOwnRedisClusterEnv(t, c)
	store := newSharedStore(t)
	_, url0 := e.node(e.addr, store, nil)
	_, url1 := e.node(e.addr, store, nil)
	rooms := roomsOnShards(t, e)
	switched := rooms[0]
	key := e.membersKey(switched)
	master := slices.Index(c.Addrs, masterOf(t, e, key))
	replica := c.AddReplica(master)
	pairs := joinPairs(t, rooms, url0, url1)

	if crash {
		c.Kill(master)
		c.WaitPromoted(replica)
	} else {
		c.Failover(replica)
	}
	cc := e.rdb.(*goredis.ClusterClient)
	testsvc.WaitState(t, "the test's client to see the new map", livesynctest.Timeout, func() (bool, any) {
		cc.ReloadState(context.Background())
		addr := masterOf(t, e, key)
		return addr == c.Addrs[replica], addr
	})

	// Both nodes follow the new map: subscribed at the new master and
	// no longer at the old one, which, a replica now, may pass the
	// shard's messages on until they leave it. What is published while
	// they switch may be lost, as in an outage; counting starts after.
	channel := "{" + e.prefix + ":r:" + switched + "}:r"
	testsvc.WaitState(t, "both nodes to subscribe at the new master only", livesynctest.Timeout, func() (bool, any) {
		now := shardSubscribers(t, c.Addrs[replica], channel)
		old := int64(0)
		if !crash {
			old = shardSubscribers(t, c.Addrs[master], channel)
		}
		return now == 2 && old == 0, [2]int64{now, old}
	})

	const firstProbe = 1000
	for _, room := range rooms {
		p := pairs[room]
		if room == switched {
			// Probes, every 100ms, until one crosses: the nodes have
			// followed the map.
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for probe := firstProbe; ; probe++ {
					p.a.event(probe)
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			}()
			p.b.until("a probe event across the switched shard", func() bool { return len(p.b.events[p.a.ID]) > 0 })
			close(stop)
			<-stopped
		}
		crossTraffic(t, store, room, "after-failover", p, func(n int) bool { return n >= firstProbe })
		// A newcomer on the other node sees both members.
		n := newPeer(t, url1)
		n.joinRoom(room, nil)
		n.until(fmt.Sprintf("room %s: a and b in the newcomer's view", room), func() bool {
			_, okA := n.View[p.a.ID]
			_, okB := n.View[p.b.ID]
			return okA && okB
		})
	}
}

// shardSubscribers is how many connections to the Redis at addr subscribe
// to the sharded channel.
func shardSubscribers(t *testing.T, addr, channel string) int64 {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rdb.Close()
	n, err := rdb.PubSubShardNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n[channel]
}

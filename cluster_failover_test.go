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
// may be lost, as in an outage; the test waits for the first event to
// cross before it counts.
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

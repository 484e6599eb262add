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
	"github.com/openlivesync/livesync/protocol"
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
	cc := e.rdb.(*goredis.ClusterClient)
	ctx := context.Background()
	keyOf := func(room string) string { return "{" + e.prefix + ":r:" + room + "}:m" }
	shardOf := func(room string) string {
		m, err := cc.MasterForKey(ctx, keyOf(room))
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr
	}
	switched := rooms[0]
	master := slices.Index(c.Addrs, shardOf(switched))
	replica := c.AddReplica(master)

	type pair struct{ a, b *peer }
	pairs := map[string]pair{}
	for _, room := range rooms {
		a, b := newPeer(t, url0), newPeer(t, url1)
		a.joinRoom(room, nil)
		b.joinRoom(room, nil)
		a.sees(a.ID, b.ID)
		b.sees(a.ID, b.ID)
		pairs[room] = pair{a, b}
	}

	if crash {
		c.Kill(master)
		c.WaitPromoted(replica)
	} else {
		c.Failover(replica)
	}
	testsvc.WaitState(t, "the test's client to see the new map", livesynctest.Timeout, func() (bool, any) {
		cc.ReloadState(ctx)
		addr := shardOf(switched)
		return addr == c.Addrs[replica], addr
	})

	const events = 20
	want := make([]int, events)
	for i := range want {
		want[i] = i
	}
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
				for probe := 1000; ; probe++ {
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
			p.b.events[p.a.ID] = nil
		}
		p.b.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]string{"after": "failover"}})
		p.a.until("room "+room+": b's update after the failover", func() bool { return string(p.a.View[p.b.ID].Presence) == `{"after":"failover"}` })
		for i := range events {
			p.a.event(i)
		}
		p.a.Send(protocol.MsgSendChat, map[string]any{"message": "after the failover"})
		p.b.until("room "+room+": a's events and chat", func() bool {
			return len(p.b.events[p.a.ID]) >= events && len(p.b.chats) >= 1
		})
		got := p.b.events[p.a.ID]
		if room == switched {
			got = slices.DeleteFunc(slices.Clone(got), func(n int) bool { return n >= 1000 }) // late probes
		}
		if !slices.Equal(got, want) {
			t.Errorf("room %s: b received %v, want 0..%d once each in order", room, got, events-1)
		}
		history, err := store.History(ctx, room, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(history) != 1 || p.b.chats[len(p.b.chats)-1].ID != history[0].ID {
			t.Errorf("room %s: b's chat %+v, history %+v", room, p.b.chats, history)
		}
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

package livesync

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/protocol"
)

// roomsOnShards returns one room id per master of the Redis Cluster of e,
// by asking the cluster which master owns each candidate's keys.
func roomsOnShards(t *testing.T, e *clusterEnv) []string {
	t.Helper()
	c := e.rdb.(*goredis.ClusterClient)
	ctx := context.Background()
	var counted atomic.Int32 // ForEachMaster calls concurrently
	c.ForEachMaster(ctx, func(context.Context, *goredis.Client) error { counted.Add(1); return nil })
	masters := int(counted.Load())
	byAddr := map[string]string{}
	var rooms []string
	for i := 0; len(rooms) < masters && i < 1000; i++ {
		room := fmt.Sprint("room-", i)
		m, err := c.MasterForKey(ctx, "{"+e.prefix+":r:"+room+"}:m")
		if err != nil {
			t.Fatal(err)
		}
		if addr := m.Options().Addr; byAddr[addr] == "" {
			byAddr[addr] = room
			rooms = append(rooms, room)
		}
	}
	if masters < 2 || len(rooms) != masters {
		t.Fatalf("found rooms on %d of %d masters", len(rooms), masters)
	}
	return rooms
}

// TestRedisClusterRoomsAcrossShards: two nodes on a 3-shard Redis Cluster
// share rooms whose keys live on different shards; in each, the members
// on both nodes see each other's presence and updates, receive each
// other's events exactly once and in order, and see the chat in the
// store's order; each room's registry lives on its own shard.
func TestRedisClusterRoomsAcrossShards(t *testing.T) {
	e := newRedisClusterEnv(t)
	store := newSharedStore(t)
	urls := e.nodes(2, store)
	rooms := roomsOnShards(t, e)
	type pair struct{ a, b *peer }
	var pairs []pair
	for _, room := range rooms {
		a, b := newPeer(t, urls[0]), newPeer(t, urls[1])
		a.joinRoom(room, map[string]string{"room": room})
		b.joinRoom(room, nil)
		a.sees(a.ID, b.ID)
		b.sees(a.ID, b.ID)
		pairs = append(pairs, pair{a, b})
	}
	for i, p := range pairs {
		p.b.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]int{"i": i}})
		want := fmt.Sprintf(`{"i":%d}`, i)
		p.a.until("b's update", func() bool { return string(p.a.View[p.b.ID].Presence) == want })
	}
	const events, chats = 30, 10
	for _, p := range pairs {
		for i := range events {
			p.a.event(i)
			p.b.event(i)
		}
		for i := range chats {
			p.a.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprint("a", i)})
			p.b.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprint("b", i)})
		}
	}
	want := make([]int, events)
	for i := range want {
		want[i] = i
	}
	for r, p := range pairs {
		pp := []struct{ me, other *peer }{{p.a, p.b}, {p.b, p.a}}
		for _, x := range pp {
			x.me.until("every event and chat", func() bool {
				return len(x.me.events[x.other.ID]) >= events && len(x.me.chats) >= 2*chats
			})
		}
		history, err := store.History(context.Background(), rooms[r], 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range pp {
			if got := x.me.events[x.other.ID]; !slices.Equal(got, want) {
				t.Errorf("room %s: %s received %v, want 0..%d once each in order", rooms[r], x.me.ID, got, events-1)
			}
			if len(x.me.events[x.me.ID]) != 0 {
				t.Errorf("room %s: %s received its own events", rooms[r], x.me.ID)
			}
			if len(history) != 2*chats || len(x.me.chats) != len(history) {
				t.Fatalf("room %s: %s has %d chat messages, history %d, want %d", rooms[r], x.me.ID, len(x.me.chats), len(history), 2*chats)
			}
			for i := range history {
				if x.me.chats[i].ID != history[i].ID {
					t.Fatalf("room %s: %s's chat %d is %s, history has %s", rooms[r], x.me.ID, i, x.me.chats[i].ID, history[i].ID)
				}
			}
		}
	}
	// Each room's registry is on the shard chosen for it, with both members.
	c := e.rdb.(*goredis.ClusterClient)
	seen := map[string]bool{}
	for _, room := range rooms {
		key := "{" + e.prefix + ":r:" + room + "}:m"
		m, err := c.MasterForKey(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		seen[m.Options().Addr] = true
		if n := m.HLen(context.Background(), key).Val(); n != 2 {
			t.Errorf("room %s: registry on %s has %d members, want 2", room, m.Options().Addr, n)
		}
	}
	if len(seen) != len(rooms) {
		t.Errorf("rooms on %d shards, want %d", len(seen), len(rooms))
	}
}

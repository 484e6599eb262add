package livesync

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
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

// shardPair is a member of one room on each of two nodes.
type shardPair struct{ a, b *peer }

// joinPairs has a member on url0 and one on url1 join each room, and
// waits until each sees the other.
func joinPairs(t *testing.T, rooms []string, url0, url1 string) map[string]shardPair {
	t.Helper()
	pairs := map[string]shardPair{}
	for _, room := range rooms {
		a, b := newPeer(t, url0), newPeer(t, url1)
		a.joinRoom(room, nil)
		b.joinRoom(room, nil)
		a.sees(a.ID, b.ID)
		b.sees(a.ID, b.ID)
		pairs[room] = shardPair{a, b}
	}
	return pairs
}

// masterOf returns the address of the master of key in e's Redis Cluster,
// as the test's client knows it.
func masterOf(t *testing.T, e *clusterEnv, key string) string {
	t.Helper()
	m, err := e.rdb.(*goredis.ClusterClient).MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return m.Options().Addr
}

// crossTraffic checks that room's traffic crosses p's two nodes: b's
// presence update (when) reaches a, and a's events 0..19 reach b once
// each and in order, followed by a chat message that is the one store
// holds, the room's only one. Events for which ignore is true (late
// probes) are not counted.
func crossTraffic(t *testing.T, store chat.Store, room, when string, p shardPair, ignore func(n int) bool) {
	t.Helper()
	p.b.Send(protocol.MsgUpdatePresence, map[string]any{"presence": map[string]string{"when": when}})
	p.a.until("room "+room+": b's update "+when, func() bool {
		return string(p.a.View[p.b.ID].Presence) == `{"when":"`+when+`"}`
	})
	const events = 20
	want := make([]int, events)
	for i := range want {
		want[i] = i
		p.a.event(i)
	}
	p.a.Send(protocol.MsgSendChat, map[string]any{"message": when})
	counted := func() []int { return slices.DeleteFunc(slices.Clone(p.b.events[p.a.ID]), ignore) }
	p.b.until("room "+room+": a's events and chat "+when, func() bool {
		return len(counted()) >= events && len(p.b.chats) >= 1
	})
	if got := counted(); !slices.Equal(got, want) {
		t.Errorf("room %s: b received %v, want 0..%d once each in order", room, got, events-1)
	}
	history, err := store.History(context.Background(), room, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(history) != 1 || p.b.chats[len(p.b.chats)-1].ID != history[0].ID {
		t.Errorf("room %s: b's chat %+v, history %+v", room, p.b.chats, history)
	}
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

// newOwnRedisClusterEnv is newClusterEnv on a Redis Cluster the test
// started for itself (testsvc.StartRedisCluster), which it may kill nodes
// of. Its addr is the first master. Its client gets a copy of the seeds:
// go-redis appends the nodes it learns of to the slice it is given.
func newOwnRedisClusterEnv(t testing.TB, c *testsvc.OwnRedisCluster) *clusterEnv {
	t.Helper()
	const prefix = "olstest-own" // the cluster is the test's alone
	e := &clusterEnv{t: t, addr: c.Addrs[0], clusterURL: c.URL(prefix), prefix: prefix,
		rdb: goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: slices.Clone(c.Addrs), Protocol: 2, MaxRetries: -1})}
	t.Cleanup(func() { e.rdb.Close() })
	return e
}

// readyzOf fetches the /readyz of the node whose WebSocket URL is wsURL.
func readyzOf(t *testing.T, s *Server, wsURL string) (int, readyStatus) {
	t.Helper()
	u := "http" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws"), s.opts.Path) + "/readyz"
	r, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var st readyStatus
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return r.StatusCode, st
}

// TestRedisClusterShardKilledAndRestarted: two nodes share rooms spread
// over the three shards of a Redis Cluster of the test's own. One master
// is killed: the one holding the node list (p:nodes), or the one holding
// the second node's own keys (heartbeat, member set: the node can neither
// beat nor be swept meanwhile, and is swept, empty, when the shard is
// back). The rooms of the other shards go on across nodes (presence
// updates, events exactly once and in order, chat in store order),
// /readyz answers 200 "degraded" naming the dead shard and its slots, and
// the dead shard's room is served on each node alone. The master restarts
// empty, as the same node: the nodes resynchronise, the room's registry
// is rebuilt on it, including a member that joined meanwhile, and its
// traffic crosses nodes again.
func TestRedisClusterShardKilledAndRestarted(t *testing.T) {
	t.Run("node list", func(t *testing.T) {
		testShardKilled(t, func(e *clusterEnv, _ *Server) string { return e.prefix + ":nodes" })
	})
	t.Run("node keys", func(t *testing.T) {
		testShardKilled(t, func(e *clusterEnv, s1 *Server) string { return "{" + e.prefix + ":n:" + s1.nodeID + "}:alive" })
	})
}

// testShardKilled is TestRedisClusterShardKilledAndRestarted, killing the
// master of the key victimKey names.
func testShardKilled(t *testing.T, victimKey func(e *clusterEnv, s1 *Server) string) {
	c := testsvc.StartRedisCluster(t, 3)
	e := newOwnRedisClusterEnv(t, c)
	store := newSharedStore(t)
	s0, url0 := e.node(e.addr, store, nil)
	log1, logged1 := newCountingLogger()
	s1, url1 := e.node(e.addr, store, log1)
	rooms := roomsOnShards(t, e)
	cc := e.rdb.(*goredis.ClusterClient)
	ctx := context.Background()
	victim := masterOf(t, e, victimKey(e, s1))
	pairs := joinPairs(t, rooms, url0, url1)
	var dead string // the room on the victim shard
	for _, room := range rooms {
		if masterOf(t, e, e.membersKey(room)) == victim {
			dead = room
		}
	}
	victimIndex := slices.Index(c.Addrs, victim)
	if dead == "" || victimIndex < 0 {
		t.Fatalf("no room on %s (masters %v)", victim, c.Addrs)
	}

	c.Kill(victimIndex)
	for i, s := range []*Server{s0, s1} {
		d := s.broker.(broker.Degrader)
		livesynctest.WaitFor(t, fmt.Sprintf("node %d to name the dead shard", i), func() bool {
			got := d.Degraded()
			return len(got) == 1 && strings.HasPrefix(got[0], "shard "+victim+" (slots ")
		})
		if err := s.broker.Healthy(); err != nil {
			t.Errorf("node %d: Healthy with one shard of three down: %v", i, err)
		}
	}
	code, st := readyzOf(t, s0, url0)
	if code != http.StatusOK || st.Status != "degraded" || !strings.Contains(st.Checks["broker"], victim) {
		t.Errorf("/readyz with a shard down: %d %+v, want 200 degraded naming %s", code, st, victim)
	}

	// The rooms of the other shards work across nodes.
	for _, room := range rooms {
		if room != dead {
			crossTraffic(t, store, room, "during-outage", pairs[room], func(int) bool { return false })
		}
	}
	// The dead shard's room is served on each node alone: a newcomer on
	// node 1 sees b, who is on its node.
	p := pairs[dead]
	b2 := newPeer(t, url1)
	b2.joinRoom(dead, nil)
	b2.until("b (same node) in view", func() bool { _, ok := b2.View[p.b.ID]; return ok })

	c.Restart(victimIndex)
	for i, s := range []*Server{s0, s1} {
		d := s.broker.(broker.Degrader)
		livesynctest.WaitFor(t, fmt.Sprintf("node %d to see the shard back", i), func() bool { return len(d.Degraded()) == 0 })
	}
	if code, st := readyzOf(t, s0, url0); code != http.StatusOK || st.Status != "ready" {
		t.Errorf("/readyz after the restart: %d %+v", code, st)
	}
	// The room converges: the registry, lost with the shard's data, is
	// rebuilt by the nodes' resynchronisation.
	for _, q := range []*peer{p.a, p.b, b2} {
		q.sees(p.a.ID, p.b.ID, b2.ID)
	}
	key := "{" + e.prefix + ":r:" + dead + "}:m"
	testsvc.WaitState(t, "the dead room's registry rebuilt", livesynctest.Timeout, func() (bool, any) {
		n, err := cc.HLen(ctx, key).Result()
		return err == nil && n == 3, fmt.Sprint(n, err)
	})
	p.a.event(42)
	b2.until("a's event after the restart", func() bool { return len(b2.events[p.a.ID]) == 1 })
	p.b.until("a's event after the restart", func() bool { return slices.Contains(p.b.events[p.a.ID], 42) })
	if got := p.b.events[p.a.ID]; !slices.Equal(got, []int{42}) {
		t.Errorf("b received %v in the restarted shard's room, want [42]", got)
	}
	// Node 1, whose own keys a restart lost, may have been swept then,
	// empty: no departure was reported for it, so it has no arrival to
	// announce again (room.occupied, user.online and member.joined were
	// sent twice).
	if n := logged1("taken for dead"); n != 0 {
		t.Errorf("node 1 announced its members again %d times; no departure of theirs was reported", n)
	}
}

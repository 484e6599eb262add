package redis

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// migrateSlot moves slot from the master at src to the one at dst, keys
// included, as redis-cli --cluster reshard does: the slot's new owner is
// told first, then the old one, then the other masters of all (c's).
// Between the first two, when between is not nil, it runs: the slot's
// commands are served by its new owner while the old one still has the
// subscribers.
func migrateSlot(t *testing.T, all []*goredis.Client, slot int, src, dst *goredis.Client, between func()) {
	t.Helper()
	ctx := context.Background()
	srcID, err := src.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := dst.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(dst.Options().Addr, ":")
	must := func(cmd *goredis.Cmd) {
		t.Helper()
		if err := cmd.Err(); err != nil {
			t.Fatalf("%v: %v", cmd.Args(), err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID))
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID))
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("MIGRATE: %v", err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID))
	if between != nil {
		between()
	}
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID))
	for _, m := range all {
		if m != src && m != dst {
			must(m.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID))
		}
	}
}

// moveRecorder is a recorder that also keeps each chat batch's number
// and counts the rooms resynchronised alone (broker.RoomResyncer).
type moveRecorder struct {
	*recorder
	mu          sync.Mutex
	chatSeqs    []uint64
	roomResyncs map[string]int
}

func (m *moveRecorder) Chat(room string, seq uint64, msgs []protocol.StoredChatMessage) {
	m.recorder.Chat(room, seq, msgs)
	m.mu.Lock()
	m.chatSeqs = append(m.chatSeqs, seq)
	m.mu.Unlock()
}

func (m *moveRecorder) ResyncRoom(room string) {
	m.mu.Lock()
	m.roomResyncs[room]++
	m.mu.Unlock()
}

func (m *moveRecorder) roomResyncCount(room string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.roomResyncs[room]
}

// startMoveBroker is startBroker with a moveRecorder.
func startMoveBroker(t *testing.T, url, node string) (*Broker, *moveRecorder) {
	t.Helper()
	// A NodeTTL that a busy machine does not miss: this is no test of
	// the sweep.
	b, err := New(context.Background(), url, &Options{Heartbeat: 100 * time.Millisecond, NodeTTL: 3 * time.Second, OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec := &moveRecorder{recorder: &recorder{}, roomResyncs: map[string]int{}}
	if err := b.Start(node, rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, rec
}

// srcAndDst picks, of all the masters, the one at addr (a slot's owner)
// and another to migrate the slot to.
func srcAndDst(t *testing.T, all []*goredis.Client, addr string) (src, dst *goredis.Client) {
	t.Helper()
	for _, m := range all {
		switch {
		case m.Options().Addr == addr:
			src = m
		case dst == nil:
			dst = m
		}
	}
	if src == nil || dst == nil {
		t.Skip("no other master to migrate to")
	}
	return src, dst
}

// masters returns a client for each master of the cluster c reaches.
func masters(t *testing.T, c *goredis.ClusterClient) []*goredis.Client {
	t.Helper()
	shards, err := c.ClusterShards(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []*goredis.Client
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role == "master" && n.Health == "online" {
				m := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("%s:%d", n.IP, n.Port), Protocol: 2})
				t.Cleanup(func() { m.Close() })
				out = append(out, m)
			}
		}
	}
	return out
}

// TestClusterSlotMigration: a room's slot moves to another shard while
// two nodes send it events, presence changes and chat, and send events
// to another room of the same shard. Nothing is delivered twice; every
// chat batch reaches the other node, in the order the batches were
// numbered (the store's); the registry is whole on the new shard and
// the moved room is resynchronised alone; the other room loses nothing
// and nobody resynchronises every room.
func TestClusterSlotMigration(t *testing.T) {
	// A cluster of its own: moving slots of the shared one would disturb
	// the tests that run beside this one, and theirs this one.
	url := testsvc.StartRedisCluster(t, 3).URL("mig")
	a, ra := startMoveBroker(t, url, "na")
	b, rb := startMoveBroker(t, url, "nb")
	ctx := context.Background()
	c := b.cluster

	src, err := c.MasterForKey(ctx, b.k.channel("r"))
	if err != nil {
		t.Fatal(err)
	}
	slot := keySlot(b.k.channel("r"))
	// Another room on the same shard, in another slot: it stays.
	other := ""
	for i := 0; other == ""; i++ {
		name := fmt.Sprint("o", i)
		m, err := c.MasterForKey(ctx, b.k.channel(name))
		if err != nil {
			t.Fatal(err)
		}
		if m.Options().Addr == src.Options().Addr && keySlot(b.k.channel(name)) != slot {
			other = name
		}
	}
	all := masters(t, c)
	srcc, dst := srcAndDst(t, all, src.Options().Addr)
	for _, n := range []*Broker{a, b} {
		subscribe(t, n, "r")
		subscribe(t, n, other)
	}
	a.SetMember("r", "na-1", []byte(`{}`))
	rb.waitFor(t, "set r na-1 {}")
	fullResyncs := rb.resyncCount() + ra.resyncCount()

	// Traffic from both nodes until stopped: chat batches (each node
	// its own, numbered in lock order), events in both rooms, presence
	// changes of a member of a's.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sent := map[*Broker]*[]string{a: new([]string), b: new([]string)}
	var sentMu sync.Mutex
	pause := map[*Broker]*sync.Mutex{a: {}, b: {}} // held by a node's chat between batches
	var chatErr atomic.Value
	// chat publishes one batch of text from n, recorded as sent in the
	// lock's order.
	chat := func(n *Broker, text string) error {
		lock, err := n.LockChat(ctx, "r")
		sentMu.Lock()
		defer sentMu.Unlock()
		if err == nil {
			_, err = lock.Publish([]protocol.StoredChatMessage{{ID: text, Message: text}})
		}
		if err == nil {
			*sent[n] = append(*sent[n], "chat r "+text)
		}
		return err
	}
	// paced runs f(0), f(1)... a millisecond apart until stop is closed
	// or f returns false.
	paced := func(f func(i int) bool) {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if !f(i) {
					return
				}
			}
		})
	}
	for _, n := range []*Broker{a, b} {
		paced(func(i int) bool {
			pause[n].Lock()
			err := chat(n, fmt.Sprintf("%s-%d", n.node, i))
			pause[n].Unlock()
			if err != nil {
				chatErr.Store(err)
			}
			return err == nil
		})
	}
	var events atomic.Int64
	paced(func(i int) bool {
		a.PublishEvent("r", fmt.Appendf(nil, `{"r":%d}`, i))
		a.PublishEvent(other, fmt.Appendf(nil, `{"o":%d}`, i))
		a.SetMember("r", "na-p", fmt.Appendf(nil, `{"i":%d}`, i))
		events.Store(int64(i + 1))
		return true
	})
	livesynctest.WaitFor(t, "traffic before the move", func() bool { return len(rb.lines()) > 50 })
	// While the new owner serves the slot and b still listens on the old
	// one, a publishes chat and a presence change nobody hears: b gets
	// them once it follows the slot. (b is kept from following it
	// meanwhile, which the cluster bus could tell the old owner before
	// the test does; its chat pauses, not to need b.subMu.)
	migrateSlot(t, all, slot, srcc, dst, func() {
		pause[b].Lock()
		defer pause[b].Unlock()
		b.subMu.Lock()
		defer b.subMu.Unlock()
		if err := chat(a, "unheard"); err != nil {
			t.Errorf("chat while the slot moves: %v", err)
		}
		a.SetMember("r", "na-u", []byte(`{"unheard":1}`))
		done := make(chan struct{})
		a.enqueue(op{kind: opBarrier, done: done}, true)
		<-done
	})
	livesynctest.WaitFor(t, "b's channel to follow the slot", func() bool {
		b.subMu.Lock()
		defer b.subMu.Unlock()
		sh := b.placed[b.k.channel("r")]
		return sh != nil && sh.addr == dst.Options().Addr
	})
	moved := len(rb.lines())
	livesynctest.WaitFor(t, "traffic after the move", func() bool { return len(rb.lines()) > moved+50 })
	close(stop)
	wg.Wait()
	if err := chatErr.Load(); err != nil {
		t.Fatalf("a chat batch failed during the move: %v", err)
	}
	a.SetMember("r", "na-1", []byte(`{"after":1}`))
	a.PublishEvent(other, []byte(`"last"`))
	rb.waitFor(t, `set r na-1 {"after":1}`, `event `+other+` "last"`)

	for _, n := range []struct {
		rec  *moveRecorder
		from *Broker
	}{{rb, a}, {ra, b}} {
		// Every batch of the other node, once, in order.
		want := *sent[n.from]
		n.rec.waitFor(t, want[len(want)-1])
		var got []string
		for _, l := range n.rec.lines() {
			if strings.HasPrefix(l, "chat ") {
				got = append(got, l)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("chat from %s: got %d batches, want %d, in order:\ngot  %q\nwant %q", n.from.node, len(got), len(want), got, want)
		}
		n.rec.mu.Lock()
		if !slices.IsSorted(n.rec.chatSeqs) {
			t.Errorf("chat numbers out of order: %v", n.rec.chatSeqs)
		}
		n.rec.mu.Unlock()
	}
	// Nothing twice, and nothing lost in the room that did not move.
	seen := map[string]bool{}
	for _, l := range rb.lines() {
		if seen[l] && !strings.HasPrefix(l, "set r na-1 ") {
			t.Fatalf("delivered twice: %s", l)
		}
		seen[l] = true
	}
	for i := range events.Load() {
		if l := fmt.Sprintf(`event %s {"o":%d}`, other, i); !seen[l] {
			t.Fatalf("the room that did not move lost %s", l)
		}
	}
	// The registry moved whole, and the moved room was resynchronised
	// alone, on both nodes.
	st, err := b.RoomState(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"na-1": `{"after":1}`, "na-u": `{"unheard":1}`, "na-p": fmt.Sprintf(`{"i":%d}`, events.Load()-1)}
	got := map[string]string{}
	for _, m := range st.Members {
		got[m.ConnID] = string(m.Entry)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("registry after the move: %v, want %v", got, want)
	}
	if n := dst.HLen(ctx, b.k.members("r")).Val(); n != 3 {
		t.Fatalf("registry on the new shard has %d members, want 3", n)
	}
	for _, rec := range []*moveRecorder{ra, rb} {
		livesynctest.WaitFor(t, "the moved room to be resynchronised", func() bool { return rec.roomResyncCount("r") > 0 })
		if n := rec.roomResyncCount(other); n != 0 {
			t.Fatalf("the room that did not move was resynchronised %d times", n)
		}
	}
	if n := rb.resyncCount() + ra.resyncCount(); n != fullResyncs {
		t.Fatalf("%d resynchronisations of every room during the move, want none", n-fullResyncs)
	}
}

// TestClusterFirstChatDuringMove: a room's first chat batch is published
// on the new owner of its slot before the other node follows the slot.
// The other node read the room's chat position (none yet) when it joined
// it, so it knows the batch is missed and delivers it from the backlog.
func TestClusterFirstChatDuringMove(t *testing.T) {
	url := testsvc.StartRedisCluster(t, 3).URL("first")
	a, _ := startMoveBroker(t, url, "na")
	b, rb := startMoveBroker(t, url, "nb")
	ctx := context.Background()
	src, err := b.cluster.MasterForKey(ctx, b.k.channel("r"))
	if err != nil {
		t.Fatal(err)
	}
	all := masters(t, b.cluster)
	srcc, dst := srcAndDst(t, all, src.Options().Addr)
	subscribe(t, a, "r")
	subscribe(t, b, "r")
	if st, err := b.RoomState(ctx, "r"); err != nil || st.ChatSeq != 0 {
		t.Fatalf("b's room state: %+v, %v; want no chat yet", st, err)
	}
	migrateSlot(t, all, keySlot(b.k.channel("r")), srcc, dst, func() {
		b.subMu.Lock() // b does not follow the slot meanwhile
		defer b.subMu.Unlock()
		lock, err := a.LockChat(ctx, "r")
		if err == nil {
			_, err = lock.Publish([]protocol.StoredChatMessage{{ID: "1", Message: "first"}})
		}
		if err != nil {
			t.Errorf("chat while the slot moves: %v", err)
		}
	})
	rb.waitFor(t, "chat r first")
}

// TestClusterHeartbeatDuringSlotMove: while the slot of a node's
// heartbeat migrates, its keys half moved, the heartbeat's script is
// refused (TRYAGAIN); the node waits for the move instead of taking the
// refusal for an outage, so nothing is resynchronised.
func TestClusterHeartbeatDuringSlotMove(t *testing.T) {
	url, _ := testsvc.RedisClusterURL(t)
	a, ra := startBroker(t, url, "na", func(o *Options) { o.NodeTTL = 5 * time.Second })
	ctx := context.Background()
	alive := a.k.alive("na")
	livesynctest.WaitFor(t, "the first heartbeat", func() bool { return a.rdb.Exists(ctx, alive).Val() == 1 })
	owner, err := a.cluster.MasterForKey(ctx, alive)
	if err != nil {
		t.Fatal(err)
	}
	all := masters(t, a.cluster)
	src, dst := srcAndDst(t, all, owner.Options().Addr)
	slot := keySlot(alive)
	srcID, _ := src.ClusterMyID(ctx).Result()
	dstID, _ := dst.ClusterMyID(ctx).Result()
	host, port, _ := strings.Cut(dst.Options().Addr, ":")
	before := ra.resyncCount()

	// Half moved: the heartbeat key on the new owner, its claim key (which
	// does not exist) on neither.
	for _, cmd := range []*goredis.Cmd{
		dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID),
		src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID),
		src.Do(ctx, "MIGRATE", host, port, "", 0, 5000, "REPLACE", "KEYS", alive),
	} {
		if err := cmd.Err(); err != nil {
			t.Fatalf("%v: %v", cmd.Args(), err)
		}
	}
	refused := cHeartbeatScript.Run(ctx, a.rdb, []string{alive, a.k.nodeKey("na", "claim")}, 5000).Err()
	if !notRun(refused) {
		t.Fatalf("the heartbeat's script during the move: %v, want TRYAGAIN", refused)
	}
	// Heartbeats are 50ms apart: once the key has gone unrenewed for 200ms,
	// several were refused.
	livesynctest.WaitFor(t, "heartbeats refused during the move", func() bool {
		return a.rdb.PTTL(ctx, alive).Val() < 5*time.Second-200*time.Millisecond
	})
	migrateSlot(t, all, slot, src, dst, nil)

	// A heartbeat after the move has run when the key's TTL is renewed.
	livesynctest.WaitFor(t, "a heartbeat after the move", func() bool {
		ttl := a.rdb.PTTL(ctx, alive).Val()
		return ttl > 5*time.Second-200*time.Millisecond
	})
	if n := ra.resyncCount(); n != before {
		t.Fatalf("%d resynchronisations during the move, want none", n-before)
	}
}

// TestClusterChatAfterRedirect: a node whose client gives up on a MOVED
// or ASK redirection (its budget spent, as in a burst of slot moves; here
// it follows none) still takes the chat lock and publishes the batch: a
// redirection means the command did not run, so it is sent again once
// the client knows the slot's new owner, and the lock is never left held
// until its TTL.
func TestClusterChatAfterRedirect(t *testing.T) {
	cl := testsvc.StartRedisCluster(t, 3)
	a, _ := startMoveBroker(t, cl.URL("redirect")+"&max_redirects=-1", "na")
	b, rb := startMoveBroker(t, cl.URL("redirect"), "nb")
	ctx := context.Background()
	subscribe(t, a, "r")
	subscribe(t, b, "r")
	all := masters(t, b.cluster)
	owner, err := b.cluster.MasterForKey(ctx, b.k.channel("r"))
	if err != nil {
		t.Fatal(err)
	}
	at := owner.Options().Addr
	move := func() {
		t.Helper()
		src, dst := srcAndDst(t, all, at)
		migrateSlot(t, all, keySlot(b.k.channel("r")), src, dst, nil)
		at = dst.Options().Addr
	}
	for i := range 3 {
		move() // a's map of the slots is out of date: MOVED
		lock, err := a.LockChat(ctx, "r")
		if err != nil {
			t.Fatalf("chat lock %d after the slot moved: %v", i, err)
		}
		move()
		msg := fmt.Sprintf("m%d", i)
		if _, err := lock.Publish([]protocol.StoredChatMessage{{ID: msg, Message: msg}}); err != nil {
			t.Fatalf("chat %d published after the slot moved: %v", i, err)
		}
		rb.waitFor(t, "chat r "+msg)
	}
}

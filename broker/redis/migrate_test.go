package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// migrateSlot moves slot from the master at src to the one at dst, keys
// included, as redis-cli --cluster reshard does.
func migrateSlot(t *testing.T, c *goredis.ClusterClient, slot int, src, dst *goredis.Client) {
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
	c.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		return m.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err()
	})
	c.ReloadState(ctx)
}

// TestClusterSlotMigration: a room's slot moves to another shard while
// two nodes use it; the subscriber follows the channel to its new shard,
// and the room's traffic and registry carry on there.
func TestClusterSlotMigration(t *testing.T) {
	url, prefix := testsvc.RedisClusterURL(t)
	a, _ := startBroker(t, url, "na")
	b, rb := startBroker(t, url, "nb")
	subscribe(t, a, "r")
	subscribe(t, b, "r")
	a.SetMember("r", "na-1", []byte(`{}`))
	rb.waitFor(t, "set r na-1 {}")

	ctx := context.Background()
	c := b.cluster
	key := "{" + prefix + ":r:r}:m"
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	src, err := c.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var dst *goredis.Client
	var masters []*goredis.Client
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			addr := fmt.Sprintf("%s:%d", n.IP, n.Port)
			if n.Role == "master" && addr != src.Options().Addr {
				masters = append(masters, goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2}))
			}
		}
	}
	if len(masters) == 0 {
		t.Skip("no other master to migrate to")
	}
	dst = masters[0]
	srcc := goredis.NewClient(&goredis.Options{Addr: src.Options().Addr, Protocol: 2})
	t.Cleanup(func() {
		for _, m := range append(masters, srcc) {
			m.Close()
		}
	})
	// Events flow during the move; some may be lost while the slot is in
	// between (as during an outage), but never presence, which resyncs.
	for i := range 50 {
		a.PublishEvent("r", []byte(fmt.Sprint(i)))
	}
	migrateSlot(t, c, int(slot), srcc, dst)
	t.Cleanup(func() { migrateSlot(t, c, int(slot), dst, srcc) }) // leave the cluster as it was

	livesynctest.WaitFor(t, "b's channel to follow the slot", func() bool {
		b.subMu.Lock()
		defer b.subMu.Unlock()
		sh := b.placed[b.k.channel("r")]
		return sh != nil && sh.addr == dst.Options().Addr
	})
	a.SetMember("r", "na-2", []byte(`{"after":1}`))
	a.PublishEvent("r", []byte("after"))
	rb.waitFor(t, `set r na-2 {"after":1}`, "event r after")
	st, err := b.RoomState(ctx, "r")
	if err != nil || len(st.Members) != 2 {
		t.Fatalf("registry after the move: %+v %v", st, err)
	}
	if n := dst.HLen(ctx, key).Val(); n != 2 {
		t.Fatalf("registry on the new shard has %d members, want 2", n)
	}
}

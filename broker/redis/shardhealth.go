package redis

// Per-shard health, in cluster mode. A Redis Cluster whose shard is down
// still serves the slots of the other shards (with
// cluster-require-full-coverage no), so the broker tracks each shard on
// its own: the rooms whose keys hash to a shard that is down degrade as
// in an outage of a single Redis (their changes and events are dropped,
// their Subscribe, RoomState and LockChat fail fast, this node serves its
// own members of them), while the rooms of the other shards keep flowing.
// When the shard is back, the broker resynchronises (re-registers this
// node's members, has the server reload every room), as after an outage.
//
// The prober, every Heartbeat and at once after a command failed for want
// of a connection, reloads the slot map (from every known node at once:
// see slotmap.go) and asks each master, within a timeout of its own, for
// CLUSTER INFO: a master that does not answer, or answers that the
// cluster is down (cluster_state:fail, which a cluster requiring full
// coverage says on every shard once one is lost), is down. The slot table
// maps each key to its master, named by the address its client dials,
// without asking Redis, so the broker's calls check the shard of their
// room before they try.
//
// The keys of the node registry live on shards too:
//
//   - this node's own keys ({p:n:<node>}: heartbeat, member set): while
//     their shard is down, this node cannot beat, but nobody can sweep it
//     either (the claim is on that shard); its joins to rooms are dropped
//     (a member must be in the node's set before it is registered, or a
//     crash would leave it registered forever) while its other traffic
//     flows. When the shard is back without its data, another node sweeps
//     what is left of this one (nothing: the set is gone too), this node's
//     heartbeat finds its key had expired, and the resynchronisation puts
//     everything back;
//   - the set of node ids (p:nodes): while its shard is down nobody
//     sweeps dead nodes (they are swept once it is back), and a node that
//     was never listed drops its joins until it is.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

var _ broker.Degrader = (*Broker)(nil)

// shardHealth is the health of each master of a Redis Cluster.
type shardHealth struct {
	mu       sync.Mutex
	table    []slotRange           // from the last CLUSTER SLOTS, by start
	masters  []string              // the masters of the last probe
	down     map[string]*shardDown // by master address
	whole    error                 // no master could be listed at all
	since    time.Time             // of whole
	unplaced error                 // room channels not subscribed (see shards.go)
	suspect  bool                  // a command failed for want of a connection since the last probe
}

// slotRange is a range of slots and the master serving it: its address
// as its client dials it (see slotmap.go) and its node id.
type slotRange struct {
	start, end int
	addr, id   string
}

// shardDown is a master that is down.
type shardDown struct {
	err   error
	since time.Time
}

// slotsOfLocked describes addr's slots ("0-5460,10923-10925"). h.mu held.
func (h *shardHealth) slotsOfLocked(addr string) string {
	var parts []string
	for _, r := range h.table {
		if r.addr == addr {
			parts = append(parts, strconv.Itoa(r.start)+"-"+strconv.Itoa(r.end))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// idOfLocked is the node id of the master at addr, "" when the table does
// not list it. h.mu held.
func (h *shardHealth) idOfLocked(addr string) string {
	for _, r := range h.table {
		if r.addr == addr {
			return r.id
		}
	}
	return ""
}

// describeLocked names a down shard, without its error. h.mu held.
func (h *shardHealth) describeLocked(addr string) string {
	return fmt.Sprintf("shard %s (slots %s) unreachable", addr, h.slotsOfLocked(addr))
}

// errLocked is why shard addr is down, wrapping broker.ErrUnavailable,
// or nil. h.mu held.
func (h *shardHealth) errLocked(addr string) error {
	if h.whole != nil {
		return fmt.Errorf("%w: redis cluster unreachable since %s: %v", broker.ErrUnavailable, h.since.Format(time.RFC3339), h.whole)
	}
	d := h.down[addr]
	if d == nil {
		return nil
	}
	return fmt.Errorf("%w: redis cluster: %s since %s: %v", broker.ErrUnavailable, h.describeLocked(addr), d.since.Format(time.RFC3339), d.err)
}

// keyDown returns why the shard that owns key is down, or nil (also when
// the slot table is not known yet: then the command tells).
func (h *shardHealth) keyDown(key string) error {
	slot := keySlot(key)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.whole != nil {
		return h.errLocked("")
	}
	i, found := slices.BinarySearchFunc(h.table, slot, func(r slotRange, s int) int { return r.start - s })
	if !found {
		i--
	}
	if i < 0 || i >= len(h.table) || slot > h.table[i].end {
		return nil
	}
	return h.errLocked(h.table[i].addr)
}

// addrDown returns why the master at addr is down, or nil.
func (h *shardHealth) addrDown(addr string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errLocked(addr)
}

// healthy is Healthy in cluster mode: an error only when no shard
// answers (see broker.Degrader).
func (h *shardHealth) healthy() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.whole != nil {
		return h.errLocked("")
	}
	if len(h.down) == 0 || len(h.down) < len(h.masters) {
		return nil
	}
	var errs []string
	for _, addr := range h.downAddrsLocked() {
		errs = append(errs, h.errLocked(addr).Error())
	}
	return fmt.Errorf("%w: redis cluster: every shard unreachable: %s", broker.ErrUnavailable, strings.Join(errs, "; "))
}

// degraded is Degraded in cluster mode.
func (h *shardHealth) degraded() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, addr := range h.downAddrsLocked() {
		out = append(out, h.describeLocked(addr))
	}
	if len(out) == 0 && h.unplaced != nil {
		out = append(out, "room subscriptions incomplete")
	}
	return out
}

func (h *shardHealth) downAddrsLocked() []string {
	addrs := make([]string, 0, len(h.down))
	for a := range h.down {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	return addrs
}

// allUp reports whether every shard answers and every channel is placed:
// what a resynchronisation waits for.
func (h *shardHealth) allUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.whole == nil && len(h.down) == 0 && h.unplaced == nil
}

// setUnplaced records whether some room channels could not be placed.
func (h *shardHealth) setUnplaced(err error) {
	h.mu.Lock()
	h.unplaced = err
	h.mu.Unlock()
}

// setSuspect records a command failed for want of a connection: the next
// probe finds out which shard, or resynchronises if none is down.
func (h *shardHealth) setSuspect() {
	h.mu.Lock()
	h.suspect = true
	h.mu.Unlock()
}

// Degraded implements broker.Degrader: in cluster mode, the shards that
// are down while others answer. A single Redis is never degraded, only
// unhealthy.
func (b *Broker) Degraded() []string {
	if b.cluster == nil {
		return nil
	}
	return b.shardh.degraded()
}

// keyDown returns why commands on key cannot be sent now, wrapping
// broker.ErrUnavailable: callers fail fast instead of waiting for
// timeouts. On a single Redis that is the whole Redis; in a cluster, the
// shard that owns key.
func (b *Broker) keyDown(key string) error {
	if b.cluster == nil {
		return b.health.cmdDown()
	}
	return b.shardh.keyDown(key)
}

// wakeProber asks the prober to probe now.
func (b *Broker) wakeProber() {
	signal(b.pwake)
}

// proberLoop probes every Heartbeat, or at once when woken.
func (b *Broker) proberLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		case <-b.pwake:
		}
		b.probe()
	}
}

// probe asks every master whether it serves (see the top of this file),
// records the answers, logs each shard's outage once when it begins and
// once when it ends, and asks for a resynchronisation when the cluster is
// whole again after a shard was down or a command failed.
func (b *Broker) probe() {
	// The reload of the slot map (go-redis's, through the broker's loader)
	// and each master's answer have budgets of their own: a master that
	// hangs costs its own shard, never the others'.
	rctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	var mu sync.Mutex
	answers := map[string]error{}
	err := b.cluster.ForEachMaster(rctx, func(_ context.Context, c *goredis.Client) error {
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
		defer cancel()
		err := clusterStateOK(ctx, c)
		mu.Lock()
		defer mu.Unlock()
		answers[c.Options().Addr] = err
		return nil
	})
	if b.ctx.Err() != nil {
		return
	}
	table := b.slots.table()

	h := &b.shardh
	h.mu.Lock()
	wasBad := h.whole != nil || len(h.down) > 0
	if err != nil && len(answers) == 0 {
		if h.whole == nil {
			h.whole, h.since = err, time.Now()
			b.log.Error("cluster: redis cluster unreachable; serving this node's members only until it is back", "err", err)
		}
	} else {
		if h.whole != nil {
			b.log.Info("cluster: redis cluster reachable again", "outage", time.Since(h.since).Round(time.Millisecond))
			h.whole = nil
		}
		if table != nil {
			h.table = table
		}
		h.masters = h.masters[:0]
		for addr, err := range answers {
			h.masters = append(h.masters, addr)
			d := h.down[addr]
			switch {
			case err != nil && d == nil:
				h.down[addr] = &shardDown{err: err, since: time.Now()}
				b.log.Error("cluster: redis shard unreachable; its rooms are served on this node only until it is back", "shard", addr, "node_id", h.idOfLocked(addr), "slots", h.slotsOfLocked(addr), "err", err)
			case err != nil:
				d.err = err
			case d != nil:
				delete(h.down, addr)
				b.log.Info("cluster: redis shard reachable again; resynchronising presence", "shard", addr, "outage", time.Since(d.since).Round(time.Millisecond))
			}
		}
		for addr, d := range h.down {
			if _, ok := answers[addr]; !ok {
				// No longer a master: failed over, its slots served elsewhere.
				delete(h.down, addr)
				b.log.Info("cluster: redis shard replaced; resynchronising presence", "shard", addr, "outage", time.Since(d.since).Round(time.Millisecond))
			}
		}
	}
	bad := h.whole != nil || len(h.down) > 0
	resync := !bad && (wasBad || h.suspect)
	if !bad {
		h.suspect = false
	}
	h.mu.Unlock()
	if wasBad && !bad {
		b.wakePlacer()
	}
	if resync {
		b.triggerResync()
	}
}

// clusterStateOK asks the master c whether it serves: CLUSTER INFO says
// cluster_state:ok.
func clusterStateOK(ctx context.Context, c *goredis.Client) error {
	info, err := c.ClusterInfo(ctx).Result()
	if err == nil && !strings.Contains(info, "cluster_state:ok") {
		err = errors.New("cluster_state is not ok: the cluster refuses commands (a cluster that requires full coverage stops every shard when one is lost; run it with cluster-require-full-coverage no)")
	}
	return err
}

// keySlot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash
// tag, or of the whole key when it has none, modulo 16384.
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^key[i]]
	}
	return int(crc) & 16383
}

// crc16Table is the CRC16-XMODEM (polynomial 0x1021) table Redis uses.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

package redis

// Redis Cluster mode.
//
// A Redis Cluster refuses a script or a MULTI/EXEC whose keys hash to
// different slots (CROSSSLOT), so in cluster mode every key is named with
// a hash tag, and every atomic step touches the keys of one tag only:
//
//	{p:r:<room>}:m      the room's registry (as p:m:<room>)
//	{p:r:<room>}:r      the room's channel
//	{p:r:<room>}:l      chat lock
//	{p:r:<room>}:s      chat sequence
//	{p:n:<node>}:alive  heartbeat
//	{p:n:<node>}:claim  set while a sweeping node removes the dead node
//	{p:n:<node>}:members, {p:n:<node>}:users  what the node registered
//	{p:n:<node>}:c      the node's control channel
//	{p:u:<user>}        the user's connections; {p:u:<user>}:o its pending offline
//	{p:b}, {p:b}:c      bans and their channel
//	p:nodes             set of node ids (a single key, only SADD/SREM/SMEMBERS)
//
// Rooms, nodes and users spread over the slots by their ids; only the
// bans share one slot (they are few). What the single-Redis scripts did
// across rooms in one atomic step is done here room by room:
//
//   - a member's registration, with its announcement and the room's count,
//     is one script on the room's slot; the entry in the node's member set
//     is added before it and removed after it, so that whatever a crash
//     interrupts, every registered member is in its node's set (an entry
//     in the set whose member is gone is harmless: removal checks owner);
//   - a dead node is swept by the one node that claims it ({…}:claim, set
//     atomically with a check of its heartbeat), member by member; a
//     claim outlives a sweeper that dies midway, and the next sweeper
//     goes on with what is left. The claimed node's own heartbeat waits
//     while the claim stands, so it cannot re-register into a sweep.
//
// Keys are different from the single-Redis ones: the modes are never
// mixed on one Redis, and nothing in Redis needs migrating (it holds
// nothing the nodes cannot re-register). Room traffic uses sharded
// pub/sub: see shards.go.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// newClusterClient connects to the Redis Cluster whose seeds u names
// (go-redis's cluster URL form) and checks that the cluster answers.
func newClusterClient(ctx context.Context, u *url.URL, q url.Values, o Options) (*goredis.ClusterClient, error) {
	cu := *u
	if cu.Path == "/0" || cu.Path == "/" {
		cu.Path = "" // a cluster has only database 0
	}
	co, err := goredis.ParseClusterURL(cu.String())
	if err != nil {
		return nil, fmt.Errorf("redis broker: %w", err)
	}
	setTimeouts(q, o, &co.DialTimeout, &co.ReadTimeout, &co.WriteTimeout, &co.PoolTimeout, &co.MaxRetries, &co.Protocol, &co.DialerRetries)
	co.DisableIdentity = true
	c := goredis.NewClusterClient(co)
	pctx, cancel := context.WithTimeout(ctx, o.OpTimeout)
	defer cancel()
	// CLUSTER SHARDS (Redis 7, which sharded pub/sub needs anyway) on
	// every master: it fails when no seed answers and when the seeds are
	// not in cluster mode, but a master that is down while others answer is
	// an outage of its shard, not a start-up error.
	if err := anyMasterAnswers(pctx, c); err != nil {
		c.Close()
		seeds := strings.Join(co.Addrs, ",")
		var reply goredis.Error
		if errors.As(err, &reply) {
			// It answered: a Redis that is not a cluster node ("cluster
			// support disabled"), or older than 7.
			return nil, fmt.Errorf("redis broker: %s is not a cluster (Redis Cluster 7 or later; give a single Redis without addr=): %w", seeds, err)
		}
		return nil, fmt.Errorf("redis broker: Redis Cluster at %s unreachable: %w", seeds, err)
	}
	return c, nil
}

// anyMasterAnswers asks every master of c for CLUSTER SHARDS and returns
// nil when one answers, or the first failure (that of reading the slot map
// from the seeds when none can).
func anyMasterAnswers(ctx context.Context, c *goredis.ClusterClient) error {
	var mu sync.Mutex
	var first error
	answered := false
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		err := m.ClusterShards(ctx).Err()
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			answered = true
		} else if first == nil {
			first = fmt.Errorf("%s: %w", m.Options().Addr, err)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case answered:
		return nil
	case first != nil:
		return first
	}
	return errors.New("no master serves any slot")
}

// clusterEnabled reports whether the Redis rdb is connected to is a node
// of a Redis Cluster.
func clusterEnabled(ctx context.Context, rdb *goredis.Client) (bool, error) {
	info, err := rdb.Info(ctx, "cluster").Result()
	if err != nil {
		return false, err
	}
	return strings.Contains(info, "cluster_enabled:1"), nil
}

// The cluster scripts. Each takes only keys of one hash tag.

// cSetScript registers a member and announces it, returning whether it is
// new and the room's count. KEYS: registry, channel. ARGV: conn,
// "<node>\n<entry>", message.
var cSetScript = goredis.NewScript(`
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SPUBLISH', KEYS[2], ARGV[3])
return {new, redis.call('HLEN', KEYS[1])}
`)

// cRemoveScript unregisters a member and announces its departure,
// returning whether it was there and the room's count. KEYS: registry,
// channel. ARGV: conn, message.
var cRemoveScript = goredis.NewScript(`
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SPUBLISH', KEYS[2], ARGV[2])
return {gone, redis.call('HLEN', KEYS[1])}
`)

// cPutScript registers a member unless it is registered so already
// (re-registration). KEYS: registry, channel. ARGV: conn,
// "<node>\n<entry>", message.
var cPutScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SPUBLISH', KEYS[2], ARGV[3])
end
return 0
`)

// cDropScript removes a member if node still owns it, announcing the
// departure on the node's behalf; it returns the entry and '1' when the
// room is left empty ('0' otherwise), or false. KEYS: registry, channel.
// ARGV: node, conn.
var cDropScript = goredis.NewScript(`
local n, conn = ARGV[1], ARGV[2]
local v = redis.call('HGET', KEYS[1], conn)
if not v or string.sub(v, 1, #n + 1) ~= n .. '\n' then return false end
redis.call('HDEL', KEYS[1], conn)
redis.call('SPUBLISH', KEYS[2], 'L' .. n .. '\n' .. conn)
local last = '0'
if redis.call('HLEN', KEYS[1]) == 0 then last = '1' end
return {string.sub(v, #n + 2), last}
`)

// cDropUserScript uncounts a connection if node still owns it; when the
// user is left without connections and token is not empty, it sets the
// pending offline to token for ttl ms and returns the user's name.
// Otherwise false. KEYS: user hash, pending. ARGV: node, conn, token, ttl.
var cDropUserScript = goredis.NewScript(`
local n = ARGV[1]
local v = redis.call('HGET', KEYS[1], ARGV[2])
if not v or string.sub(v, 1, #n + 1) ~= n .. '\n' then return false end
redis.call('HDEL', KEYS[1], ARGV[2])
if ARGV[3] ~= '' and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  return string.sub(v, #n + 2)
end
return false
`)

// cConnectScript is connectScript without the node's set (kept apart, in
// the node's slot). KEYS: user hash, pending. ARGV: conn, "<node>\n<name>".
var cConnectScript = goredis.NewScript(`
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if new == 1 and redis.call('HLEN', KEYS[1]) == 1 then
  if redis.call('DEL', KEYS[2]) == 1 then return 0 end
  return 1
end
return 0
`)

// cDisconnectScript is disconnectScript without the node's keys: when
// the connection was the user's last it returns the user's name, for
// the node's offline hash, and otherwise nil.
// KEYS: user hash, pending. ARGV: conn, token, TTL in ms.
var cDisconnectScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
if gone == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  local nl = string.find(v, '\n', 1, true)
  return string.sub(v, (nl or #v) + 1)
end
return false
`)

// cHeartbeatScript refreshes the heartbeat and returns whether it had
// expired, or -1 without refreshing while another node sweeps this one:
// re-registering in the middle of that sweep would have members removed
// after they were re-registered. KEYS: alive, claim. ARGV: TTL in ms.
var cHeartbeatScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local was = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return was
`)

// cClaimScript claims a node whose heartbeat expired for sweeping, unless
// another node claimed it. KEYS: alive, claim. ARGV: token, TTL in ms.
var cClaimScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return 1
`)

// cChatScript and cBanScript are chatScript and banScript with sharded
// publication: their keys and channel share a hash tag already.
var (
	cChatScript = goredis.NewScript(sharded(chatLua))
	cBanScript  = goredis.NewScript(sharded(banLua))
)

// sharded turns a script's PUBLISH into SPUBLISH.
func sharded(src string) string { return strings.ReplaceAll(src, "'PUBLISH'", "'SPUBLISH'") }

// chatScript, banScript and publish pick the single-Redis or the cluster
// form.
func (b *Broker) chatScript() *goredis.Script {
	if b.cluster != nil {
		return cChatScript
	}
	return chatScript
}

func (b *Broker) banScript() *goredis.Script {
	if b.cluster != nil {
		return cBanScript
	}
	return banScript
}

func (b *Broker) publishCmd(ctx context.Context, channel, msg string) error {
	if b.cluster != nil {
		return b.rdb.SPublish(ctx, channel, msg).Err()
	}
	return b.rdb.Publish(ctx, channel, msg).Err()
}

// claimTTL is how long a sweeper's claim on a dead node lasts: longer
// than a sweep takes, short enough that a sweeper that died midway holds
// the rest up only briefly.
func (b *Broker) claimTTL() time.Duration { return max(b.opts.NodeTTL, 5*b.opts.OpTimeout) }

// roomKeys are the keys of the room scripts: registry, channel.
func (k keys) roomKeys(room string) []string { return []string{k.members(room), k.channel(room)} }

// userPair are the keys of the cluster's user scripts.
func (k keys) userPair(user string) []string { return []string{k.user(user), k.pendingOffline(user)} }

// clusterPipeline is pipeline in cluster mode (see the top of this file).
// Each operation succeeds or fails on its own shard: those of rooms on a
// shard that is down are dropped, as in an outage (see shardhealth.go),
// and the others are sent. It returns the first failure.
func (b *Broker) clusterPipeline(ops []op) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	var first error
	drop := func(o *op, err error) {
		if first == nil {
			first = err
		}
		b.finish(o, err)
	}
	head := b.node + "\n"
	send := make([]*op, 0, len(ops))
	var adds []any
	added := map[string]bool{}
	for i := range ops {
		o := &ops[i]
		if err := b.shardh.keyDown(b.k.members(o.room)); err != nil {
			drop(o, err)
			continue
		}
		if m := o.conn + "\n" + o.room; o.kind == opSet && !b.known[m] && !added[m] {
			added[m] = true
			adds = append(adds, m)
		}
		send = append(send, o)
	}
	// New members go into the node's set first, and the node into p:nodes
	// (a node that dies before its first heartbeat is still swept). When
	// that fails, their registration is dropped: registered without being
	// in the set, a member would outlive a crash of this node forever.
	if len(adds) > 0 {
		listed := b.listed.Load()
		// A shard known to be down is not even tried: a shard that does not
		// answer at all would hold every room's traffic for OpTimeout.
		err := b.shardh.keyDown(b.k.nodeSet(b.node))
		if err == nil && !listed {
			err = b.shardh.keyDown(b.k.nodes())
		}
		if err == nil {
			pipe := b.rdb.Pipeline()
			pipe.SAdd(ctx, b.k.nodeSet(b.node), adds...)
			if !listed {
				pipe.SAdd(ctx, b.k.nodes(), b.node)
			}
			if _, err = pipe.Exec(ctx); err != nil {
				b.failed(err)
			}
		}
		if err != nil {
			err = fmt.Errorf("redis broker: registering %d members in this node's set: %w", len(adds), err)
			kept := send[:0]
			for _, o := range send {
				if o.kind == opSet && added[o.conn+"\n"+o.room] {
					drop(o, err)
					continue
				}
				kept = append(kept, o)
			}
			send = kept
		} else {
			b.listed.Store(true)
			for m := range added {
				b.known[m] = true
			}
		}
	}
	if len(send) == 0 {
		return first
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]goredis.Cmder, len(send))
	for i, o := range send {
		switch o.kind {
		case opSet:
			cmds[i] = cSetScript.Eval(ctx, pipe, b.k.roomKeys(o.room), o.conn, head+string(o.data), "S"+head+o.conn+"\n"+string(o.data))
		case opRemove:
			cmds[i] = cRemoveScript.Eval(ctx, pipe, b.k.roomKeys(o.room), o.conn, "L"+head+o.conn)
		case opEvent:
			cmds[i] = pipe.SPublish(ctx, b.k.channel(o.room), "E"+head+string(o.data))
		}
	}
	// The pipeline runs on each shard apart: a shard that fails fails its
	// own commands only.
	pipe.Exec(ctx)
	failedOnce := false
	last := map[string]*op{} // "<conn>\n<room>" → its last change that went through
	for i, o := range send {
		if err := cmds[i].Err(); err != nil {
			if !failedOnce {
				failedOnce = true
				b.failed(err)
			}
			drop(o, fmt.Errorf("redis broker: sending to room %q: %w", o.room, err))
			continue
		}
		if o.kind != opEvent {
			last[o.conn+"\n"+o.room] = o
		}
		if o.count != nil && o.kind != opEvent {
			r, _ := cmds[i].(*goredis.Cmd).Int64Slice()
			edge := int64(1)
			if o.kind == opRemove {
				edge = 0
			}
			o.count(len(r) == 2 && r[0] == 1 && r[1] == edge, true)
		}
	}
	var rems []any
	for m, o := range last {
		if o.kind == opRemove {
			rems = append(rems, m)
			delete(b.known, m)
		}
	}
	if len(rems) > 0 {
		if err := b.rdb.SRem(ctx, b.k.nodeSet(b.node), rems...).Err(); err != nil {
			// The changes are made; a stale entry in the set is harmless.
			b.failed(err)
		}
	}
	return first
}

// clusterHeartbeat is the heartbeat's Redis side in cluster mode; it
// returns whether the heartbeat had expired, or -1 while this node is
// being swept.
func (b *Broker) clusterHeartbeat(ctx context.Context) (int64, error) {
	was, err := cHeartbeatScript.Run(ctx, b.rdb, []string{b.k.alive(b.node), b.k.nodeKey(b.node, "claim")}, b.opts.NodeTTL.Milliseconds()).Int64()
	if err != nil || was < 0 {
		return was, err
	}
	// p:nodes may be on another shard than the heartbeat: its failure
	// must not hide what the heartbeat found (an expired key asks for a
	// resynchronisation).
	if err := b.rdb.SAdd(ctx, b.k.nodes(), b.node).Err(); err != nil {
		b.listed.Store(false)
		b.failed(err)
	} else {
		b.listed.Store(true)
	}
	return was, nil
}

// clusterSweep is sweep's Redis side in cluster mode: it claims each dead
// node and removes what it registered.
func (b *Broker) clusterSweep(ctx context.Context) (members []broker.LostMember, users []broker.LostUser, err error) {
	nodes, err := b.rdb.SMembers(ctx, b.k.nodes()).Result()
	if err != nil {
		return nil, nil, err
	}
	var first error
	for _, n := range nodes {
		if n == b.node {
			continue
		}
		claim := b.k.nodeKey(n, "claim")
		ok, err := cClaimScript.Run(ctx, b.rdb, []string{b.k.alive(n), claim}, randomToken(), b.claimTTL().Milliseconds()).Int()
		if err != nil {
			// The node's shard is down: it cannot be told dead (nor beat)
			// until it is back. The other nodes are swept meanwhile.
			if first == nil {
				first = err
			}
			continue
		}
		if ok != 1 {
			continue
		}
		m, u, err := b.removeNode(ctx, n, true)
		members, users = append(members, m...), append(users, u...)
		if err != nil {
			return members, users, err
		}
		if err := b.rdb.Del(ctx, claim).Err(); err != nil {
			return members, users, err
		}
	}
	return members, users, first
}

// removeNode removes node n's members and counted connections, and n
// itself, in cluster mode; with report, users left without connections
// get a pending offline, as removeNodeLua does.
func (b *Broker) removeNode(ctx context.Context, n string, report bool) (members []broker.LostMember, users []broker.LostUser, err error) {
	set := b.k.nodeSet(n)
	ms, err := b.rdb.SMembers(ctx, set).Result()
	if err != nil {
		return nil, nil, err
	}
	if len(ms) > 0 {
		pipe := b.rdb.Pipeline()
		cmds := make([]*goredis.Cmd, len(ms))
		for i, m := range ms {
			if conn, room, ok := strings.Cut(m, "\n"); ok {
				cmds[i] = cDropScript.Eval(ctx, pipe, b.k.roomKeys(room), n, conn)
			}
		}
		// Each room's shard runs its own commands: those of shards that
		// answered are done, and reported even when another shard failed
		// (the next sweep finds them gone and goes on with the rest).
		pipe.Exec(ctx)
		var failed error
		for i, m := range ms {
			if cmds[i] == nil {
				continue
			}
			r, err := cmds[i].StringSlice()
			if err != nil {
				if !errors.Is(err, goredis.Nil) && failed == nil {
					failed = err
				}
				continue
			}
			conn, room, _ := strings.Cut(m, "\n")
			if len(r) == 2 {
				members = append(members, broker.LostMember{RoomID: room, ConnID: conn, Entry: []byte(r[0]), Last: r[1] == "1"})
			}
		}
		if failed != nil {
			return members, nil, failed
		}
		if err := b.rdb.Del(ctx, set).Err(); err != nil {
			return members, nil, err
		}
	}
	uset := b.k.nodeUsers(n)
	us, err := b.rdb.SMembers(ctx, uset).Result()
	if err != nil {
		return members, nil, err
	}
	if len(us) > 0 {
		pipe := b.rdb.Pipeline()
		cmds := make([]*goredis.Cmd, len(us))
		tokens := make([]string, len(us))
		for i, m := range us {
			if conn, user, ok := strings.Cut(m, "\n"); ok {
				if report {
					tokens[i] = "swept\n" + n + "\n" + conn
				}
				cmds[i] = cDropUserScript.Eval(ctx, pipe, b.k.userPair(user), n, conn, tokens[i], pendingOfflineTTL.Milliseconds())
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return members, nil, err
		}
		for i, m := range us {
			if cmds[i] == nil {
				continue
			}
			name, err := cmds[i].Text()
			if err != nil {
				if errors.Is(err, goredis.Nil) {
					continue
				}
				return members, users, err
			}
			_, user, _ := strings.Cut(m, "\n")
			users = append(users, broker.LostUser{UserID: user, Name: name, Token: tokens[i]})
		}
		if err := b.rdb.Del(ctx, uset).Err(); err != nil {
			return members, users, err
		}
	}
	pending, err := b.clusterSweepOffline(ctx, n, report)
	users = append(users, pending...)
	if err != nil {
		return members, users, err
	}
	return members, users, b.rdb.SRem(ctx, b.k.nodes(), n).Err()
}

// deregister withdraws this node at a clean shutdown (see
// deregisterScript).
func (b *Broker) deregister(ctx context.Context) error {
	if b.cluster == nil {
		return deregisterScript.Run(ctx, b.rdb, nil, b.opts.Prefix, b.node, pendingOfflineTTL.Milliseconds()).Err()
	}
	if err := b.rdb.Del(ctx, b.k.alive(b.node)).Err(); err != nil {
		return err
	}
	_, _, err := b.removeNode(ctx, b.node, false)
	return err
}

// clusterReplace is opReplace in cluster mode: what replaceScript and
// replaceUsersScript do, room by room and user by user.
func (b *Broker) clusterReplace(ctx context.Context, o *op) error {
	set := b.k.nodeSet(b.node)
	have, err := b.rdb.SMembers(ctx, set).Result()
	if err != nil {
		return err
	}
	want := map[string]bool{}
	var adds []any
	for i := 0; i+2 < len(o.reg); i += 3 {
		m := o.reg[i] + "\n" + o.reg[i+1]
		want[m] = true
		adds = append(adds, m)
	}
	pipe := b.rdb.Pipeline()
	var rems []any
	for _, m := range have {
		if conn, room, ok := strings.Cut(m, "\n"); ok && !want[m] {
			cDropScript.Eval(ctx, pipe, b.k.roomKeys(room), b.node, conn)
			rems = append(rems, m)
		}
	}
	if len(rems) > 0 {
		pipe.SRem(ctx, set, rems...)
	}
	if len(adds) > 0 {
		pipe.SAdd(ctx, set, adds...)
	}
	pipe.SAdd(ctx, b.k.nodes(), b.node)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	b.known = want // the set holds exactly these now
	if len(adds) > 0 {
		// Only now that the set has them: see the top of this file.
		head := b.node + "\n"
		pipe = b.rdb.Pipeline()
		for i := 0; i+2 < len(o.reg); i += 3 {
			conn, room, entry := o.reg[i], o.reg[i+1], o.reg[i+2]
			cPutScript.Eval(ctx, pipe, b.k.roomKeys(room), conn, head+entry, "S"+head+conn+"\n"+entry)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}

	uset := b.k.nodeUsers(b.node)
	uhave, err := b.rdb.SMembers(ctx, uset).Result()
	if err != nil {
		return err
	}
	uwant := map[string]bool{}
	var uadds []any
	for i := 0; i+2 < len(o.ureg); i += 3 {
		m := o.ureg[i] + "\n" + o.ureg[i+1]
		uwant[m] = true
		uadds = append(uadds, m)
	}
	pipe = b.rdb.Pipeline()
	var urems []any
	for _, m := range uhave {
		if conn, user, ok := strings.Cut(m, "\n"); ok && !uwant[m] {
			cDropUserScript.Eval(ctx, pipe, b.k.userPair(user), b.node, conn, "", 0)
			urems = append(urems, m)
		}
	}
	if len(urems) > 0 {
		pipe.SRem(ctx, uset, urems...)
	}
	if len(uadds) > 0 {
		pipe.SAdd(ctx, uset, uadds...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	if len(uadds) > 0 {
		pipe = b.rdb.Pipeline()
		for i := 0; i+2 < len(o.ureg); i += 3 {
			pipe.HSet(ctx, b.k.user(o.ureg[i+1]), o.ureg[i], b.node+"\n"+o.ureg[i+2])
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// clusterConnect is opConnect in cluster mode: the node's set first (see
// the top of this file).
func (b *Broker) clusterConnect(ctx context.Context, o *op) (int, error) {
	if err := b.rdb.SAdd(ctx, b.k.nodeUsers(b.node), o.conn+"\n"+o.user).Err(); err != nil {
		return 0, err
	}
	return cConnectScript.Run(ctx, b.rdb, b.k.userPair(o.user), o.conn, b.node+"\n"+o.name).Int()
}

// clusterDisconnect is opDisconnect in cluster mode: the node's set last.
func (b *Broker) clusterDisconnect(ctx context.Context, o *op) (int, error) {
	name, err := cDisconnectScript.Run(ctx, b.rdb, b.k.userPair(o.user), o.conn, o.token, pendingOfflineTTL.Milliseconds()).Text()
	n := 1
	switch {
	case errors.Is(err, goredis.Nil):
		n = 0
	case err != nil:
		return 0, err
	default:
		// Recorded after the pending key, in the node's slot: a node
		// dying in between loses this user.offline, as every node did
		// before the record existed.
		if err := b.rdb.HSet(ctx, b.k.nodeOffline(b.node), o.user, o.token+"\n"+name).Err(); err != nil {
			return 0, err
		}
	}
	return n, b.rdb.SRem(ctx, b.k.nodeUsers(b.node), o.conn+"\n"+o.user).Err()
}

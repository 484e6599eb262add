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
	"log/slog"
	"net/url"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// newClusterClient connects to the Redis Cluster whose seeds u names
// (go-redis's cluster URL form) and checks that the cluster answers: one
// seed that answers is enough, whatever the others do (see slotmap.go).
// The slot loader it returns is the client's; close it after the client.
func newClusterClient(ctx context.Context, u *url.URL, q url.Values, o Options) (*goredis.ClusterClient, *slotLoader, error) {
	co, loader, err := clusterOptions(u, q, o)
	if err != nil {
		return nil, nil, err
	}
	seeds := strings.Join(co.Addrs, ",")
	c := goredis.NewClusterClient(co)
	fail := func(err error) (*goredis.ClusterClient, *slotLoader, error) {
		c.Close()
		loader.close()
		return nil, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, o.OpTimeout)
	defer cancel()
	// The slot map from any seed: it fails when no seed answers and when
	// the seeds are not in cluster mode, but a master that is down while
	// others answer is an outage of its shard, not a start-up error.
	if _, err := loader.load(pctx); err != nil {
		var reply goredis.Error
		if isAuthError(err) {
			// It answered, with no to the credentials: as a single
			// Redis says it (connect.go), not "not a cluster".
			return fail(fmt.Errorf("redis broker: Redis Cluster at %s refused the connection: %w", seeds, err))
		}
		if errors.As(err, &reply) || errors.Is(err, errNoSlots) {
			// It answered: a Redis that is not a cluster node ("cluster
			// support disabled"), or a node of no formed cluster.
			return fail(fmt.Errorf("redis broker: %s is not a cluster (a Redis Cluster of version 7 or later; give a single Redis without addr=): %w", seeds, err))
		}
		return fail(fmt.Errorf("redis broker: Redis Cluster at %s unreachable: %w", seeds, err))
	}
	// Sharded pub/sub is Redis 7's: an older cluster answers everything
	// above and would fail every room's subscription later. Asked of the
	// node that just answered, which knows the command (and publishes, or
	// redirects to the channel's shard: either way a yes) or does not.
	node := loader.answerer()
	if node == nil {
		return fail(errors.New("redis broker: no node of the Redis Cluster answered"))
	}
	if err := node.SPublish(pctx, o.Prefix+":version-check", "").Err(); err != nil && isUnknownCommand(err) {
		return fail(fmt.Errorf("redis broker: Redis Cluster at %s has no sharded pub/sub (SPUBLISH, Redis 7 or later): %w", seeds, err))
	}
	return c, loader, nil
}

// clusterOptions are the go-redis options of the cluster u names, with
// the broker's slot loader (see slotmap.go) and each node's own TLS name.
func clusterOptions(u *url.URL, q url.Values, o Options) (*goredis.ClusterOptions, *slotLoader, error) {
	cu := *u
	switch cu.Path {
	case "/0", "/":
		cu.Path = ""
	case "":
	default:
		// go-redis ignores it: the node would start on database 0 while
		// its operator meant another.
		return nil, nil, fmt.Errorf("redis broker: a cluster has only database 0: drop %s from the URL", cu.Path)
	}
	co, err := goredis.ParseClusterURL(cu.String())
	if err != nil {
		return nil, nil, fmt.Errorf("redis broker: %w", err)
	}
	setTimeouts(q, o, &co.DialTimeout, &co.ReadTimeout, &co.WriteTimeout, &co.PoolTimeout, &co.MaxRetries, &co.Protocol, &co.DialerRetries)
	co.DisableIdentity = true
	co.Dialer = o.Dialer
	// The loader's clients are made from the options as they are now:
	// NewClusterClient rewrites some in place.
	snap := *co
	loader := newSlotLoader(co.Addrs, o.OpTimeout, func(addr string) *goredis.Client { return goredis.NewClient(loaderOptions(&snap, addr)) })
	co.ClusterSlots = loader.load
	tlsBase := co.TLSConfig
	co.NewClient = func(opt *goredis.Options) *goredis.Client {
		// With a ClusterSlots loader, go-redis turns a loopback address
		// into ":port" (it rewrites loopback hosts against an origin it
		// does not have); NodeAddress is the loader's address, already
		// rewritten, and the one the broker names masters by. A node met
		// only in a MOVED reply has none.
		if opt.NodeAddress != "" {
			opt.Addr = opt.NodeAddress
		}
		opt.TLSConfig = nodeTLS(tlsBase, opt.Addr)
		opt.Dialer = dialer(opt.Dialer, opt.TLSConfig) // go-redis copies co.Dialer in
		return goredis.NewClient(opt)
	}
	return co, loader, nil
}

// isAuthError reports whether err is Redis refusing the credentials
// (WRONGPASS, NOAUTH) or the user's rights (NOPERM).
func isAuthError(err error) bool {
	var reply goredis.Error
	if !errors.As(err, &reply) {
		return false
	}
	msg := reply.Error()
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "NOPERM")
}

// isUnknownCommand reports whether err is Redis refusing a command it
// does not know.
func isUnknownCommand(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply) && strings.Contains(strings.ToLower(err.Error()), "unknown command")
}

// loaderOptions are the options of the slot loader's own client of the
// node at addr: the cluster's connection settings, one connection (it
// asks once at a time), no retries (it asks again at the next load).
func loaderOptions(co *goredis.ClusterOptions, addr string) *goredis.Options {
	return &goredis.Options{
		Addr:                       addr,
		Dialer:                     dialer(co.Dialer, nodeTLS(co.TLSConfig, addr)),
		Protocol:                   co.Protocol,
		Username:                   co.Username,
		Password:                   co.Password,
		CredentialsProvider:        co.CredentialsProvider,
		CredentialsProviderContext: co.CredentialsProviderContext,
		ClientName:                 co.ClientName,
		DialTimeout:                co.DialTimeout,
		ReadTimeout:                co.ReadTimeout,
		WriteTimeout:               co.WriteTimeout,
		PoolTimeout:                co.PoolTimeout,
		DialerRetries:              co.DialerRetries,
		MaxRetries:                 -1,
		PoolSize:                   1,
		DisableIdentity:            true,
		TLSConfig:                  nodeTLS(co.TLSConfig, addr),
	}
}

// clusterEnabled reports whether the Redis rdb is connected to is a node
// of a Redis Cluster: whether it answers CLUSTER SLOTS, the command the
// cluster client itself needs (see slotmap.go). A refusal is "no": a
// plain Redis says cluster support is disabled, and one whose ACL forbids
// the command could not be used as a cluster by this client anyway.
func clusterEnabled(ctx context.Context, rdb *goredis.Client, log *slog.Logger) (bool, error) {
	//lint:ignore SA1019 CLUSTER SLOTS on purpose: what every cluster service serves (see slotmap.go)
	err := rdb.ClusterSlots(ctx).Err()
	var reply goredis.Error
	if errors.As(err, &reply) {
		log.Debug("redis broker: not a cluster node", "addr", rdb.Options().Addr, "reply", err)
		return false, nil
	}
	return err == nil, err
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
// (re-registration), and returns 1 when the room had no member before.
// KEYS: registry, channel. ARGV: conn, "<node>\n<entry>", message.
var cPutScript = goredis.NewScript(`
local empty = redis.call('HLEN', KEYS[1]) == 0 and 1 or 0
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SPUBLISH', KEYS[2], ARGV[3])
end
return empty
`)

// cPutUserScript counts a connection again (re-registration), and
// returns 1 when the user had no connection and no offline pending
// before. KEYS: user hash, pending key. ARGV: conn, "<node>\n<name>".
var cPutUserScript = goredis.NewScript(`
local was = (redis.call('HLEN', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0) and 1 or 0
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return was
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
// expired (a provisional one counts as expired), or -1 without refreshing
// while another node sweeps this one: re-registering in the middle of
// that sweep would have members removed after they were re-registered.
// KEYS: alive, claim. ARGV: TTL in ms.
var cHeartbeatScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local was = redis.call('GET', KEYS[1]) == '1' and 1 or 0
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return was
`)

// cClaimScript claims a node whose heartbeat expired for sweeping, unless
// another node claimed it. The same token claims it again: go-redis sends
// a command again when its reply was lost, and the claim it made must
// not then look like another node's. KEYS: alive, claim. ARGV: token,
// TTL in ms.
var cClaimScript = goredis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then return 1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return 1
`)

// cChatScript, cBanScript and cDeletionScript are chatScript, banScript
// and deletionScript with sharded publication: their keys and channel
// share a hash tag already.
var (
	cChatScript     = goredis.NewScript(sharded(chatLua))
	cBanScript      = goredis.NewScript(sharded(banLua))
	cDeletionScript = goredis.NewScript(sharded(deletionLua))
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

func (b *Broker) deletionScript() *goredis.Script {
	if b.cluster != nil {
		return cDeletionScript
	}
	return deletionScript
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

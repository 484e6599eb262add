package redis

import (
	"context"
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// A node that reported a user's last disconnect (DisconnectUser gave it
// the pending-offline token) times the offline delay in its own memory,
// then confirms. Should it die meanwhile, nobody would confirm, and the
// user's user.offline would never be sent. So the disconnect also records
// the pending offline in the node's own hash, p:n:<node>:offline, user →
// "<token>\n<name>", and the sweep of a dead node reports each user whose
// pending-offline key still holds the token recorded there and who has no
// connection: the sweeping node waits out the delay and confirms with
// that token, as the dead node would have. Of the two, should the "dead"
// node only have been slow, ConfirmOffline tells only one yes.
//
// The node forgets its entry when it confirms, whatever the answer; a
// newer disconnect of the same user has replaced the entry's token by
// then, and is not forgotten with the old one (forgetOfflineScript).

// nodeOffline is node's hash of pending offlines.
func (k keys) nodeOffline(node string) string { return k.nodeKey(node, "offline") }

// pendingOfflineLua defines pendingOffline, which returns the token of
// user's pending offline when it is still the one v ("<token>\n<name>",
// a node's hash entry) recorded and the user has no connection, and the
// name; otherwise nil. KEYS-free: the keys are given, so that the
// cluster script (one user's slot) and the sweep script share it.
const pendingOfflineLua = `
local function pendingOffline(userHash, pendingKey, v)
  local token = redis.call('GET', pendingKey)
  if not token or string.sub(v, 1, #token + 1) ~= token .. '\n' then return nil end
  if redis.call('HLEN', userHash) ~= 0 then return nil end
  return token, string.sub(v, #token + 2)
end
`

// forgetOfflineScript deletes a node's entry for a user if it still holds
// token. KEYS: the node's offline hash. ARGV: user, token.
var forgetOfflineScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. '\n' then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

// cPendingScript is pendingOffline in one user's slot (cluster mode).
// KEYS: user hash, pending. ARGV: the node's entry. Returns {token, name}
// or nil.
var cPendingScript = goredis.NewScript(pendingOfflineLua + `
local token, name = pendingOffline(KEYS[1], KEYS[2], ARGV[1])
if not token then return false end
return {token, name}
`)

// forgetOffline forgets this node's record of userID's pending offline
// under token, once confirmed. A failure leaves a stale entry, which the
// sweep ignores (its token is no longer the pending one) and which goes
// with the node's keys at its shutdown.
func (b *Broker) forgetOffline(ctx context.Context, userID, token string) {
	if !strings.HasPrefix(token, b.node+"\n") {
		return // a swept node's token: its hash went with the sweep
	}
	if err := forgetOfflineScript.Run(ctx, b.rdb, []string{b.k.nodeOffline(b.node)}, userID, token).Err(); err != nil && !errors.Is(err, goredis.Nil) {
		b.failed(err)
	}
}

// clusterSweepOffline is the pending-offline part of removeNode in cluster
// mode: it reports node n's unconfirmed pending offlines (with report)
// and deletes n's hash of them.
func (b *Broker) clusterSweepOffline(ctx context.Context, n string, report bool) ([]broker.LostUser, error) {
	oset := b.k.nodeOffline(n)
	var users []broker.LostUser
	if report {
		pend, err := b.rdb.HGetAll(ctx, oset).Result()
		if err != nil {
			return nil, err
		}
		if len(pend) > 0 {
			pipe := b.rdb.Pipeline()
			cmds := make(map[string]*goredis.Cmd, len(pend))
			for user, v := range pend {
				cmds[user] = cPendingScript.Eval(ctx, pipe, b.k.userPair(user), v)
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
				return nil, err
			}
			for user, cmd := range cmds {
				r, err := cmd.StringSlice()
				if errors.Is(err, goredis.Nil) {
					continue
				}
				if err != nil {
					return users, err
				}
				if len(r) == 2 {
					users = append(users, broker.LostUser{UserID: user, Name: r[1], Token: r[0]})
				}
			}
		}
	}
	return users, b.rdb.Del(ctx, oset).Err()
}

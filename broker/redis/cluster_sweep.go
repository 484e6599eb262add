package redis

import (
	"context"
	"errors"
	"strings"

	"github.com/openlivesync/livesync/broker"
	goredis "github.com/redis/go-redis/v9"
)

// A dead node's sweep in cluster mode, and this node's heartbeat and
// withdrawal: node by node, member by member, each step on one hash tag.

// clusterHeartbeat is the heartbeat's Redis side in cluster mode; it
// returns whether the heartbeat had expired, or -1 while this node is
// being swept.
func (b *Broker) clusterHeartbeat(ctx context.Context) (int64, error) {
	// While the node's slot migrates, the script is refused (TRYAGAIN: its
	// claim key, which seldom exists, is on neither side); it did not run,
	// and runs once the slot has moved. Refused, it would look like an
	// outage and resynchronise every room.
	var was int64
	err := settle(ctx, func() (err error) {
		was, err = cHeartbeatScript.Run(ctx, b.rdb, []string{b.k.alive(b.node), b.k.nodeKey(b.node, "claim")}, b.opts.NodeTTL.Milliseconds()).Int64()
		return err
	})
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
		var ok int
		token := randomToken()
		err := settle(ctx, func() (err error) { // as the heartbeat's
			ok, err = cClaimScript.Run(ctx, b.rdb, []string{b.k.alive(n), claim}, token, b.claimTTL().Milliseconds()).Int()
			return err
		})
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
		if err == nil && len(m)+len(u) > 0 {
			// Should n be alive after all (see broker.Reannouncer): only
			// when departures were reported for it. A node whose keys its
			// shard lost (restarted empty) is swept empty, and has
			// nothing to announce again.
			err = b.rdb.Set(ctx, b.k.swept(n), "1", pendingOfflineTTL).Err()
		}
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

package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/openlivesync/livesync/broker"
)

var _ broker.Counter = (*Broker)(nil)

// pendingOfflineTTL is how long a user's pending offline (p:uo:<user>)
// lasts unconfirmed: if the node that set it dies before confirming, the
// node sweeping it confirms it instead (see offline.go); should nobody,
// after this a new connection of the user counts as coming online again.
const pendingOfflineTTL = time.Hour

// userKeys are the keys connectScript and disconnectScript take.
func (k keys) userKeys(node, user string) []string {
	return []string{k.user(user), k.nodeUsers(node), k.pendingOffline(user)}
}

// user and pendingOffline share the hash tag {p:u:<user>} in a cluster,
// so that the scripts counting a user's connections stay in one slot.
func (k keys) user(user string) string {
	if k.cluster {
		return "{" + k.p + ":u:" + user + "}"
	}
	return k.p + ":u:" + user
}
func (k keys) nodeUsers(node string) string { return k.nodeKey(node, "users") }
func (k keys) pendingOffline(user string) string {
	if k.cluster {
		return "{" + k.p + ":u:" + user + "}:o"
	}
	return k.p + ":uo:" + user
}

// JoinMember implements broker.Counter: SetMember, with the room's count
// read in the same transaction as the registration.
func (b *Broker) JoinMember(roomID, connID string, entry []byte, report func(first, ok bool)) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	b.mirrorSetLocked(roomID, connID, entry)
	b.enqueueLocked(op{kind: opSet, room: roomID, conn: connID, data: entry, count: report}, false)
}

// LeaveMember implements broker.Counter.
func (b *Broker) LeaveMember(roomID, connID string, report func(last, ok bool)) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	b.mirrorRemoveLocked(roomID, connID)
	b.enqueueLocked(op{kind: opRemove, room: roomID, conn: connID, count: report}, false)
}

// ConnectUser implements broker.Counter.
func (b *Broker) ConnectUser(connID, userID, name string, report func(online, ok bool)) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	b.users[connID] = userConn{userID, name}
	b.enqueueLocked(op{kind: opConnect, conn: connID, user: userID, name: name, count: report}, false)
}

// userConn is a connection of this node that ConnectUser counted, kept
// for re-registrations.
type userConn struct{ user, name string }

// DisconnectUser implements broker.Counter. The token names this
// disconnect, so that ConfirmOffline can tell whether the user came and
// went again meanwhile.
func (b *Broker) DisconnectUser(connID, userID string, report func(token string, ok bool)) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	delete(b.users, connID)
	b.enqueueLocked(op{kind: opDisconnect, conn: connID, user: userID, token: b.node + "\n" + randomToken(), gone: report}, false)
}

// ConfirmOffline implements broker.Counter.
func (b *Broker) ConfirmOffline(ctx context.Context, userID, token string) (bool, error) {
	if err := b.keyDown(b.k.user(userID)); err != nil {
		return false, err
	}
	n, err := confirmOfflineScript.Run(ctx, b.rdb, []string{b.k.user(userID), b.k.pendingOffline(userID)}, token).Int()
	if err != nil {
		b.failedCall(ctx, err)
		return false, fmt.Errorf("redis broker: confirming user %q offline: %w", userID, err)
	}
	b.forgetOffline(ctx, userID, token)
	return n == 1, nil
}

// sweep removes the members and connections of dead nodes, and hands
// what it removed to the sink when it wants it (broker.LossSink): the
// script is atomic, so only this node got it.
func (b *Broker) sweep() {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	var members []broker.LostMember
	var users []broker.LostUser
	if b.cluster != nil {
		var err error
		members, users, err = b.clusterSweep(ctx)
		cancel()
		if err != nil {
			b.failed(err)
			// What was removed before the failure is reported still:
			// nobody else will.
		}
	} else {
		out, err := sweepScript.Run(ctx, b.rdb, nil, b.opts.Prefix, b.node, pendingOfflineTTL.Milliseconds()).StringSlice()
		cancel()
		if err != nil {
			b.failed(err)
			return
		}
		members, users = parseLost(out)
	}
	if len(members) > 0 || len(users) > 0 {
		b.log.Info("cluster: removed the members of dead nodes", "members", len(members), "users", len(users))
		if ls, ok := b.sink.(broker.LossSink); ok {
			ls.NodeLost(members, users)
		}
	}
}

// parseLost reads removeNode's list (see scripts.go).
func parseLost(out []string) (members []broker.LostMember, users []broker.LostUser) {
	for i := 0; i < len(out); {
		switch {
		case out[i] == "M" && i+4 < len(out):
			members = append(members, broker.LostMember{RoomID: out[i+1], ConnID: out[i+2], Entry: []byte(out[i+3]), Last: out[i+4] == "1"})
			i += 5
		case out[i] == "U" && i+3 < len(out):
			users = append(users, broker.LostUser{UserID: out[i+1], Name: out[i+2], Token: out[i+3]})
			i += 4
		default:
			return members, users // not ours: stop rather than misread
		}
	}
	return members, users
}

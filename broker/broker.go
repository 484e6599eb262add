// Package broker holds what a server and a cluster broker exchange: the
// Sink through which a broker hands a node what other nodes published, and
// the values its methods take and return, and the Broker interface itself
// (livesync.Broker is an alias of it). Implementations (broker/redis)
// import only this package and protocol, so that the server never depends
// on a particular broker and a broker never depends on the server.
//
// The contract every broker keeps, which the server's convergence and
// ordering rest on:
//
//   - A node never receives its own publications: each is delivered once
//     to each other node subscribed to the room, never back to its sender.
//   - Publications of one node are delivered to every other node in the
//     order that node made them; a member's join, updates and leave
//     therefore arrive in order.
//   - The presence registry and the announcements move together: a member
//     is in the registry (RoomState) exactly when the last announcement
//     about it was a MemberSet. A node that subscribes to a room and then
//     reads RoomState, and applies the announcements received since it
//     subscribed on top of it, has the room's true membership.
//   - Chat batches stored under a ChatLock are published in lock order,
//     numbered by an increasing sequence (see ChatLock).
//   - When the broker may have lost traffic (an outage, a reconnection, the
//     node declared dead by its peers) it re-registers the node's members
//     and calls Sink.Resync once it can reach the cluster again.
package broker

import (
	"context"
	"errors"

	"github.com/openlivesync/livesync/protocol"
)

// Sink receives what other nodes of the cluster publish. The server
// implements it; a broker calls it. MemberSet, MemberRemoved, Event and
// Chat are called in the order the publications were made by each node,
// possibly from several goroutines (a Redis Cluster's broker has one per
// shard, and delivers the chat a room missed from another, still in the
// room's chat order); Resync may run concurrently with them. No method
// blocks for long: they only update memory and queue frames.
type Sink interface {
	// MemberSet says that connection connID, connected to another node,
	// is in roomID with the presence entry entry (the JSON of a
	// protocol.PresenceEntry): a join, or an update when it was already
	// there. The sink may keep entry; the broker must not modify it.
	MemberSet(roomID, connID string, entry []byte)
	// MemberRemoved says that connection connID, connected to another
	// node, left roomID (or that its node died).
	MemberRemoved(roomID, connID string)
	// Event delivers a relayed broadcast_event: msg is the complete JSON
	// message as clients receive it ({"type":"broadcast_event",...}).
	Event(roomID string, msg []byte)
	// Chat delivers a batch of chat messages stored by another node, in
	// store order. seq is the position of the batch's last message in the
	// room's chat sequence (see ChatLock.Seq).
	Chat(roomID string, seq uint64, msgs []protocol.StoredChatMessage)
	// Resync says that announcements may have been lost: the sink reloads
	// the remote members of every room it has subscribed to (with the
	// broker's RoomState) and applies the difference.
	Resync()
}

// Member is a member of a room connected to another node, as the
// presence registry holds it.
type Member struct {
	ConnID string
	// Entry is the JSON of the member's protocol.PresenceEntry.
	Entry []byte
}

// RoomState is what the presence registry knows of a room: the members
// connected to other nodes than the one asking, and the room's chat
// position.
type RoomState struct {
	Members []Member
	// ChatSeq is the sequence number of the last chat batch published to
	// the room (0 when none is known).
	ChatSeq uint64
}

// ChatLock is a room's cluster-wide chat lock, held by one node at a time
// while it stores a batch of messages and publishes it, so that the order
// in which batches are published (and delivered on every node) is the
// order in which they were stored, which is the order history returns.
type ChatLock interface {
	// Seq is the sequence number of the last batch published before this
	// lock was taken. The holder waits until it has delivered that batch
	// locally before delivering its own, so its members too see the
	// store's order.
	Seq() uint64
	// Publish publishes the stored batch to the other nodes and releases
	// the lock, in one step, returning the sequence number the batch's
	// last message got. The lock is released even when Publish fails.
	Publish(msgs []protocol.StoredChatMessage) (uint64, error)
	// Release releases the lock without publishing (nothing was stored).
	Release()
}

// ErrUnavailable is returned (wrapped), without waiting, by a broker's
// calls while the cluster cannot be reached. The broker logs the outage
// once; the server logs what it leads to only at debug level.
var ErrUnavailable = errors.New("broker: cluster unavailable")

// Broker connects the nodes of a cluster so that a room's members see each
// other wherever they are connected. Set Options.Broker to one (for
// example broker/redis) to make a server a node of a cluster; rooms only
// use this interface, so another transport plugs in without touching them.
// The guarantees a broker gives are listed in the package documentation.
//
// The server calls SetMember, RemoveMember and PublishEvent while holding
// a room's lock, so they must not block: a broker queues them, in order,
// and drops them (with a log line, and a later resynchronisation) rather
// than wait when the cluster cannot keep up or cannot be reached.
type Broker interface {
	// Start attaches the broker to the server, once, from New: nodeID
	// names this node (a new id each process life), sink receives what
	// other nodes publish.
	Start(nodeID string, sink Sink) error

	// Subscribe starts delivering roomID's traffic from other nodes to the
	// sink; the server calls it when a room gets its first member on this
	// node. When it returns nil, every publication made afterwards will be
	// delivered. It registers the interest even when it fails (the broker
	// subscribes as soon as it can and then calls Sink.Resync), so every
	// call is matched by one Unsubscribe.
	Subscribe(ctx context.Context, roomID string) error
	// Unsubscribe withdraws one Subscribe: the room has no member left on
	// this node.
	Unsubscribe(roomID string)

	// RoomState reads the presence registry: the members of roomID on the
	// other nodes, and the room's chat position. Read after Subscribe, it
	// is the base the announcements received since then apply to.
	RoomState(ctx context.Context, roomID string) (RoomState, error)
	// SetMember registers this node's member connID of roomID with its
	// presence entry (JSON) and announces it to the other nodes: a join,
	// or an update.
	SetMember(roomID, connID string, entry []byte)
	// RemoveMember unregisters connID from roomID and announces it left.
	RemoveMember(roomID, connID string)

	// PublishEvent relays a broadcast_event (the complete JSON message) to
	// the room's members on the other nodes.
	PublishEvent(roomID string, msg []byte)

	// LockChat takes roomID's cluster-wide chat lock (see
	// ChatLock), waiting at most until ctx ends. On error the
	// server stores and delivers chat locally without publishing it.
	LockChat(ctx context.Context, roomID string) (ChatLock, error)

	// Healthy reports why the cluster cannot be reached right now (nil
	// when it can). Readiness checks use it; while it fails, the node
	// serves its own members only. A broker whose cluster can be partly
	// down reports that part through Degrader instead.
	Healthy() error
	// Close withdraws this node's members from the cluster and releases
	// the broker's connections. The server calls it at the end of
	// Shutdown.
	Close() error
}

// Counter is an optional interface of a Broker that counts, cluster-wide,
// each room's members and each user id's connections, in the same atomic
// step as the registry change. The node whose change moves a count from
// or to zero is the one told so, which lets exactly one node of the
// cluster report a room's first and last member (room.occupied,
// room.vacated) and a user's first and last connection (user.online,
// user.offline), where each node on its own would report its own share.
// The server uses it, when the broker implements it, for the hooks'
// MemberEvent.First/Last and user events.
//
// Like SetMember and RemoveMember, its calls are made under a room's or
// the server's lock and must not block. Their report funcs are called
// once each, later, from the broker's own goroutine, and must not block
// either: ok false means the count is unknown (the change was dropped or
// failed, as during an outage), and the caller falls back to what it
// knows locally.
type Counter interface {
	// JoinMember is SetMember for a join: it registers and announces the
	// member, and reports whether it was the room's first member in the
	// cluster.
	JoinMember(roomID, connID string, entry []byte, report func(first, ok bool))
	// LeaveMember is RemoveMember, reporting whether the member was the
	// room's last in the cluster.
	LeaveMember(roomID, connID string, report func(last, ok bool))
	// ConnectUser counts connection connID of userID (name is what
	// user.offline will carry if this node's sweep has to send it), and
	// reports whether the user is now online: it had no connection
	// anywhere and was not waiting out an offline delay.
	ConnectUser(connID, userID, name string, report func(online, ok bool))
	// DisconnectUser uncounts connID. When that was the user's last
	// connection anywhere, report gets a token: after the offline delay,
	// the caller asks ConfirmOffline whether the user is still offline.
	DisconnectUser(connID, userID string, report func(token string, ok bool))
	// ConfirmOffline reports whether userID has had no connection since
	// DisconnectUser gave token, and consumes the token: of all the
	// nodes asking, at most one is told true, once.
	ConfirmOffline(ctx context.Context, userID, token string) (bool, error)
}

// Degrader is an optional interface of a Broker whose cluster can be
// partly down while the rest of it serves: a Redis Cluster with one shard
// down, whose rooms degrade as in an outage while the rooms of the other
// shards keep flowing. Healthy then stays nil (the node is still a node
// of the cluster for most rooms) and Degraded says which parts are down;
// readiness checks report it without failing, since every node sees the
// same shard down and taking them all out of service would turn a partial
// outage into a total one. Healthy reports an error once no part answers.
type Degrader interface {
	// Degraded lists what part of the cluster cannot be reached now, one
	// short line per part naming it without error details (the broker
	// logs those), such as "shard 10.0.0.2:7001 (slots 5461-10922)
	// unreachable"; nil when all of it can.
	Degraded() []string
}

// LostMember is a member of a dead node that a sweep removed.
type LostMember struct {
	RoomID, ConnID string
	// Entry is the JSON of the member's protocol.PresenceEntry.
	Entry []byte
	// Last: the room has no member left in the cluster.
	Last bool
}

// LostUser is a user whose last connection was on a dead node: the sweep
// left a token to confirm, after the offline delay, that it is offline.
// It is also a user whose last connection closed on the dead node while
// that node was waiting out the offline delay: Token is then the one
// DisconnectUser gave it, for the sweeping node to confirm in its stead.
type LostUser struct {
	UserID, Name, Token string
}

// LossSink is an optional interface of a Sink, used by brokers that are
// Counters. When a sweep removes a dead node's members and connections,
// the broker of the node that ran it (one node, atomically) calls
// NodeLost, once, from its own goroutine: that node alone reports the
// departures, so each is reported once in the cluster. It must not block.
type LossSink interface {
	NodeLost(members []LostMember, users []LostUser)
}

// RoomResyncer is an optional interface of a Sink. A broker that lost
// the announcements of one room only (a Redis Cluster moved the room's
// slot to another shard) calls ResyncRoom, from its own goroutine, to
// have that room reloaded as Resync reloads every room, leaving the
// others undisturbed; without it, the broker calls Resync.
type RoomResyncer interface {
	ResyncRoom(roomID string)
}

// Reannouncer is an optional interface of a LossSink. A node taken for
// dead while it lived (cut off from the cluster for longer than its
// heartbeat lasts) had its members and connections swept, and their
// departures reported by the sweeping node (NodeLost). Once its broker
// has registered them again, it calls Reannounce, once, from its own
// goroutine, so that the node reports their arrivals again: firstRooms
// are the rooms that had no member in the cluster before they came back
// (their occupancy is news again), onlineUsers the users that had no
// connection and no offline pending (their being online is). It must not
// block.
type Reannouncer interface {
	Reannounce(firstRooms, onlineUsers []string)
}

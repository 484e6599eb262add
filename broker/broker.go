// Package broker holds what a server and a cluster broker exchange: the
// Sink through which a broker hands a node what other nodes published, and
// the values its methods take and return. The Broker interface itself is
// livesync.Broker; implementations (broker/redis) import only this package
// and protocol, so that the server never depends on a particular broker
// and a broker never depends on the server.
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
	"errors"

	"github.com/openlivesync/livesync/protocol"
)

// Sink receives what other nodes of the cluster publish. The server
// implements it; a broker calls it. MemberSet, MemberRemoved, Event and
// Chat are called from one goroutine, in the order the publications were
// made by each node; Resync may run concurrently with them. No method
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

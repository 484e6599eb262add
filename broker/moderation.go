package broker

import (
	"context"
	"time"
)

// Kick names the members of a room that moderation removes: the one
// connection ConnectionID, or every connection of UserID (exactly one of
// the two is set). Reason goes to each in its close frame.
type Kick struct {
	ConnectionID string
	UserID       string
	Reason       string
}

// Matches reports whether the member connID, of user userID ("" when
// anonymous), is one k removes.
func (k Kick) Matches(connID, userID string) bool {
	if k.ConnectionID != "" {
		return connID == k.ConnectionID
	}
	return k.UserID != "" && userID == k.UserID
}

// Moderator is implemented by brokers that carry moderation to the other
// nodes of a cluster: kicks, deletions from the recent chat history that
// nodes keep in memory, and bans. It is optional, so that a broker written
// before it keeps working: without it, moderation acts on the node that
// received the request only. Each method returns once the publication is
// sent, in order with this node's earlier publications, or with an error
// saying it was not.
type Moderator interface {
	// Kick asks the other nodes to remove their members of roomID that k
	// names, as if the request had reached them. Nodes without members in
	// roomID receive nothing, and need nothing.
	Kick(ctx context.Context, roomID string, k Kick) error
	// DeleteChat tells every other node, whether or not it has members in
	// roomID, that message id was deleted from roomID's history, so they
	// drop it from the recent history they keep for joiners and, with a
	// store of their own, from it. connID is its sender's connection id
	// when known ("": match the id alone, which is unique in a shared
	// store).
	DeleteChat(ctx context.Context, roomID, connID, id string) error
	// Ban records, cluster-wide, that userID may not join roomID before
	// until, and tells every node, whether or not it has members in the
	// room; a node that starts later, or reconnects after an outage, loads
	// the bans still in force. A ban is never shortened: of two bans of one
	// user in one room, the later end holds.
	Ban(ctx context.Context, roomID, userID string, until time.Time) error
}

// ModerationSink receives the moderation a Moderator carries from other
// nodes; the server's Sink implements it too, and a Moderator
// type-asserts its Sink to it. Kick and ChatDeleted are called like
// Sink's methods: from one goroutine, in each node's order. Banned and
// ChatDeleted may also be called from another goroutine, when the broker
// loads the bans in force and the recent deletions (again). None blocks
// for long.
type ModerationSink interface {
	// Kick removes the local members of roomID that k names.
	Kick(roomID string, k Kick)
	// ChatDeleted drops message id (of connection connID, "" when not
	// known) from roomID's recent history, and from the node's own store
	// when it has one. It may come before the room's message it deletes,
	// which then must not be added to the recent history.
	ChatDeleted(roomID, connID, id string)
	// Banned records that userID may not join roomID before until.
	Banned(roomID, userID string, until time.Time)
}

// Ban is a ban in force: UserID may not join RoomID before Until.
type Ban struct {
	RoomID, UserID string
	Until          time.Time
}

// BanLister is an optional interface of a ModerationSink: the bans in
// force the node holds (every node holds every ban). A Moderator whose
// own record of the bans can be lost (Redis may come back empty) writes
// back, when it reads that record again, those the record lacks, so that
// a node started afterwards applies them too.
type BanLister interface {
	BansInForce() []Ban
}

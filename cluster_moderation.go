package livesync

import (
	"time"

	"github.com/openlivesync/livesync/broker"
)

// The moderation other nodes send (see broker.ModerationSink): this node
// applies it as if the HTTP API had asked it.

var _ broker.ModerationSink = clusterSink{}

// Kick removes this node's members that another node's kick names.
func (k clusterSink) Kick(roomID string, kk broker.Kick) { k.s.kickLocal(roomID, kk) }

// ChatDeleted drops a message deleted on another node from the room's
// recent history. A room with no members here keeps no history to fix:
// when it is created again it loads the store, which no longer has it.
func (k clusterSink) ChatDeleted(roomID, connID, id string) {
	if r := k.s.lookupRoom(roomID); r != nil {
		r.forget(connID, id)
	}
}

// Banned records a ban made on another node, or loaded from the cluster.
func (k clusterSink) Banned(roomID, userID string, until time.Time) {
	k.s.bans.add(roomID, userID, until)
}

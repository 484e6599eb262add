package livesync

import (
	"context"
	"time"

	"github.com/openlivesync/livesync/chat"

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
// With a store per node, the message may be in this node's own store:
// it is deleted there too when connID names this node, or names none.
func (k clusterSink) ChatDeleted(roomID, connID, id string) {
	s := k.s
	if connID != "" {
		// A retry through this node names what the first DELETE named.
		s.deletions.note(roomID, id, connID)
	}
	if r := s.lookupRoom(roomID); r != nil {
		r.forget(connID, id)
	}
	if s.opts.StorePerNode {
		// Off the broker's delivery, which a slow store must not hold up.
		s.wg.Go(func() {
			if _, err := s.deleteOwnChat(roomID, connID, id); err != nil {
				s.log.Warn("cluster: chat deletion from another node not applied to this node's store", "room", roomID, "id", id, "err", err)
			}
		})
	}
}

// Banned records a ban made on another node, or loaded from the cluster.
func (k clusterSink) Banned(roomID, userID string, until time.Time) {
	k.s.bans.add(roomID, userID, until)
}

var _ broker.BanLister = clusterSink{}

// BansInForce implements broker.BanLister: the bans this node holds,
// which the broker writes back when Redis lost them.
func (k clusterSink) BansInForce() []broker.Ban { return k.s.bans.inForce() }

// deleteOwnChat deletes message id of roomID from this node's own store
// (Options.StorePerNode), unless connID, when known, was made on another
// node: ids being per node, this node's message of that id is another
// message. It reports whether the store had it.
func (s *Server) deleteOwnChat(roomID, connID, id string) (bool, error) {
	d, ok := s.store.(chat.Deleter)
	if !ok || (connID != "" && !s.ownsConn(connID)) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(s.halted, s.limits.StoreTimeout)
	defer cancel()
	return d.Delete(ctx, roomID, id)
}

// ownsConn reports whether connection id connID is (or was) this node's:
// its clients' and its HTTP API's, in this run or, as far as its store
// told, an earlier one.
func (s *Server) ownsConn(connID string) bool {
	node := nodeOf(connID)
	return node == s.nodeID || s.pastNodes.has(node)
}

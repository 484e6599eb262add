package livesync

import "github.com/openlivesync/livesync/protocol"

// deletedMessage is a message deleted from the room's history while the
// room lived here: connID names its sender's node (see nodeOf), or is ""
// when the deletion did not say whose it was (then the id alone names
// it, as in a shared store).
type deletedMessage struct{ connID, id string }

// maxDeleted bounds the deletions a room remembers. They only have to
// outlive the races they close (a history read from the store just before
// the deletion, a message that reaches this node after it), which last
// one store timeout; a burst of more deletions than this within it merely
// risks one deleted message coming back into this node's recent history
// until the room empties.
const maxDeleted = 64

// forget drops message id (sent on connID's node; connID "": on any)
// from the recent history a joiner gets, and remembers it as deleted so
// that a history load or a delivery racing with the deletion does not
// bring it back (see withoutDeleted). It returns the sender's connection
// id of the message dropped and whether there was one. Members are not
// told: the 1.0.x client knows no message type to say it with.
func (r *room) forget(connID, id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found *protocol.StoredChatMessage
	kept := make([]protocol.StoredChatMessage, 0, len(r.history))
	for i := range r.history {
		m := &r.history[i]
		if m.ID == id && (connID == "" || sameNode(m.ConnectionID, connID)) {
			found = m
			continue
		}
		kept = append(kept, *m)
	}
	if found != nil {
		// Read the recent history again at the next join: the store has
		// an older message to take the deleted one's place.
		connID = found.ConnectionID
		r.history, r.historyJSON, r.historyLoaded = kept, nil, false
	}
	if len(r.deleted) >= maxDeleted {
		r.deleted = append(r.deleted[:0], r.deleted[1:]...)
	}
	r.deleted = append(r.deleted, deletedMessage{connID, id})
	if found == nil {
		return "", false
	}
	return connID, true
}

// withoutDeleted returns msgs without the messages deleted while the
// room lived: msgs itself when there are none (the common case, which
// allocates nothing), else a new slice, so a caller's slice is never
// changed under it. r.mu held.
func (r *room) withoutDeleted(msgs []protocol.StoredChatMessage) []protocol.StoredChatMessage {
	if len(r.deleted) == 0 {
		return msgs
	}
	var out []protocol.StoredChatMessage
	for i := range msgs {
		if r.isDeleted(&msgs[i]) {
			if out == nil {
				out = append(make([]protocol.StoredChatMessage, 0, len(msgs)), msgs[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, msgs[i])
		}
	}
	if out == nil {
		return msgs
	}
	return out
}

// isDeleted reports whether m was deleted while the room lived. r.mu held.
func (r *room) isDeleted(m *protocol.StoredChatMessage) bool {
	for _, d := range r.deleted {
		if d.id == m.ID && (d.connID == "" || sameNode(d.connID, m.ConnectionID)) {
			return true
		}
	}
	return false
}

// senderOf returns the connection that sent message id of the recent
// history, "" when none: with a store per node, the sender names the node
// whose store holds it. Two nodes' messages may share an id: the newest
// of those preferred takes precedence, then the newest.
func (r *room) senderOf(id string, preferred func(connID string) bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	sender := ""
	for i := len(r.history) - 1; i >= 0; i-- {
		if m := &r.history[i]; m.ID == id {
			if preferred(m.ConnectionID) {
				return m.ConnectionID
			}
			if sender == "" {
				sender = m.ConnectionID
			}
		}
	}
	return sender
}

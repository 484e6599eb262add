package webhook

import (
	"context"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/protocol"
)

// observerTimeout bounds the webhooks' observers: above a StoreOutbox's
// own bound on adding an event, so that its answer, not the server's
// timeout, decides.
const observerTimeout = storeOutboxCall + 5*time.Second

// hooks returns the observers that make the configured events. The
// server calls them from a feed of their own (see
// livesync.WebhookSender).
//
// The events are what the server observes, so when the server is a node
// of a cluster whose broker counts members and connections (broker/redis
// does), room.occupied, room.vacated, user.online and user.offline are
// cluster-wide and each is sent once, by one node; and a dead node's
// member.left (with the room.vacated and user.offline they cause) are sent
// once, by the node that swept it. See livesync.MemberEvent and
// livesync.Hooks.OnUser.
func (w *Webhooks) hooks(durable bool) livesync.Hooks {
	h := livesync.Hooks{ObserverTimeout: observerTimeout}
	e := w.enabled
	rooms := e[RoomOccupied] || e[MemberJoined] || e[RoomVacated] || e[MemberLeft]
	// The ledger marks arrivals for the departures it may send.
	if e[RoomOccupied] || e[MemberJoined] || (w.ledger != nil && rooms) {
		h.OnJoin = w.joined
	}
	if e[RoomVacated] || e[MemberLeft] || (w.ledger != nil && rooms) {
		h.OnLeave = w.left
	}
	if e[UserOnline] || e[UserOffline] {
		h.OnUser = w.user
		h.OfflineDelay = w.cfg.OfflineDelay
	}
	if e[DocumentUpdated] {
		h.OnDocUpdated = w.document
	}
	// A StoreOutbox's store writes chat.message itself, in the message's
	// transaction.
	if e[ChatMessage] && !durable {
		h.OnChatStored = w.chat
	}
	return h
}

func roomKey(id string) string { return "room:" + id }

func memberOf(m livesync.MemberEvent) memberData {
	return memberData{RoomID: m.RoomID, ConnectionID: m.ConnectionID, UserID: m.UserID, Name: m.Name}
}

// joined sends room.occupied before the first member's member.joined.
func (w *Webhooks) joined(_ context.Context, m livesync.MemberEvent) {
	key, room, member := roomKey(m.RoomID), roomData{m.RoomID}, memberOf(m)
	if m.First {
		w.emit(newEvent(RoomOccupied, key, m.At, room))
		w.mark(markRoom+m.RoomID, key, room)
	}
	w.emit(newEvent(MemberJoined, key, m.At, member))
	w.mark(markMember+m.RoomID+"\n"+m.ConnectionID, key, member)
}

// left sends room.vacated after the last member's member.left.
func (w *Webhooks) left(_ context.Context, m livesync.MemberEvent) {
	key, room := roomKey(m.RoomID), roomData{m.RoomID}
	w.emit(newEvent(MemberLeft, key, m.At, memberOf(m)))
	w.mark(markMember+m.RoomID+"\n"+m.ConnectionID, key, nil)
	if m.Last {
		w.emit(newEvent(RoomVacated, key, m.At, room))
		w.mark(markRoom+m.RoomID, key, nil)
	}
}

// user sends user.online or user.offline.
func (w *Webhooks) user(_ context.Context, u livesync.UserEvent) {
	typ, data := UserOffline, any(nil)
	if u.Online {
		typ, data = UserOnline, userData{UserID: u.UserID, Name: u.Name}
	}
	key := "user:" + u.UserID
	w.emit(newEvent(typ, key, u.At, userData{UserID: u.UserID, Name: u.Name}))
	w.mark(markUser+u.UserID, key, data)
}

// mark records, with the ledger, that this node serves name (data not
// nil) or no longer does.
func (w *Webhooks) mark(name, key string, data any) {
	if w.ledger != nil && !w.closed.Load() {
		w.ledger.mark(name, key, data)
	}
}

// chat sends chat.message.
func (w *Webhooks) chat(_ context.Context, m protocol.StoredChatMessage) {
	w.emit(chatEvent(m))
}

// document sends document.updated.
func (w *Webhooks) document(_ context.Context, d livesync.DocEvent) {
	w.emit(newEvent(DocumentUpdated, roomKey(d.RoomID), d.At, documentData{RoomID: d.RoomID, Updates: d.Updates, Bytes: d.Bytes}))
}

package livesync

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// This file is the HTTP API's moderation: deleting a chat message from
// history, and kicking (and banning) members. Both work across a cluster
// when the broker is a broker.Moderator (broker/redis is).

// deleteChat removes a message from the room's history:
// DELETE /api/rooms/{room}/chat/{id}, answered 204 when the store held
// it. The store deletes it (it must be a chat.Deleter, or 501), and this
// node and the others drop it from the recent history they give joiners;
// get_chat_history and GET .../history read the store. Connected members
// are told nothing: the 1.0.x client would take a new message type for an
// error.
//
// 404 says the store has no such message in that room: never stored, or
// deleted already. That is what makes it idempotent: after a 204 or a 404
// the message is not in history, so a client retrying a DELETE whose
// answer it lost may take either as done (or send an Idempotency-Key to
// get the first answer replayed). A 204 for an id never stored would hide
// a typo; telling "deleted already" apart from "never stored" would take
// keeping every deletion forever. The room's own existence is not asked:
// a room whose store holds no message of that id is answered 404 alike.
//
// In a cluster whose nodes each have their own store (Options.StorePerNode),
// ids are per node and a message is named by its id and its sender's
// node (see deletePerNode).
func (a *apiHandler) deleteChat(room, id string) apiResult {
	s := a.s
	d, ok := s.store.(chat.Deleter)
	if !ok {
		return apiError(http.StatusNotImplemented, protocol.CodeServerError, "this server's chat store cannot delete messages")
	}
	if id == "" || len(id) > maxNameBytes {
		return fromClientError(errPayload("chat: the message id in the path must be 1 to %d bytes", maxNameBytes))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.limits.StoreTimeout)
	defer cancel()
	if m := s.moderator(); m != nil && s.opts.StorePerNode {
		return a.deletePerNode(ctx, d, m, room, id)
	}
	found, err := d.Delete(ctx, room, id)
	if err != nil {
		return deleteFailed(s, room, id, err)
	}
	// Forgotten here, and sent to the other nodes, even when the store did
	// not find it: a retry after a failure below finds the store done and
	// the nodes maybe not.
	connID := ""
	if r := s.lookupRoom(room); r != nil {
		connID, _ = r.forget("", id)
	}
	if m := s.moderator(); m != nil {
		if err := m.DeleteChat(ctx, room, connID, id); err != nil {
			s.log.Warn("cluster: chat deletion not sent to other nodes; their recent history keeps the message until the room empties there",
				"room", room, "id", id, "err", err)
		}
	}
	if !found {
		return noSuchMessage(room, id)
	}
	return chatDeleted(s, room, id)
}

// deletePerNode is deleteChat with a store per node. The message named is
// the one of that id deleted through any node within recentTTL (a retry
// names what the first named, whichever node it reaches), else the one
// in this node's recent history (this node's own when two nodes'
// messages share it), whose sender names the node whose store holds it;
// failing that, this node's own store's; failing that, every node's of
// that id. Every node is told, drops it from its recent history and,
// when it is its own (or the node is unknown), deletes it from its store.
// The answer is 204 when this node deleted it or the other nodes were
// told (whether one held it is not heard back); 404 when it is this
// node's and its store does not have it, or when this node has no such
// message and the others could not be told; 503 when the message is
// another node's and that node could not be told.
func (a *apiHandler) deletePerNode(ctx context.Context, d chat.Deleter, m broker.Moderator, room, id string) apiResult {
	s := a.s
	r := s.lookupRoom(room)
	// A repeat names what the first named: the recent history may hold
	// another node's message of that id, which is not the one asked for.
	sender, _ := s.deletions.sender(room, id)
	if sender == "" && r != nil {
		sender = r.senderOf(id, s.ownsConn)
	}
	own := sender == "" || s.ownsConn(sender)
	found := false
	if own {
		var err error
		if found, err = d.Delete(ctx, room, id); err != nil {
			return deleteFailed(s, room, id, err)
		}
		if found && sender == "" {
			sender = s.apiConnectionID() // names this node
		}
	}
	if err := m.DeleteChat(ctx, room, sender, id); err != nil {
		s.log.Warn("cluster: chat deletion not sent to other nodes", "room", room, "id", id, "err", err)
		switch {
		case !own:
			// Kept in this node's recent history: a retry names it again.
			return apiError(http.StatusServiceUnavailable, protocol.CodeServerError,
				"the message is another node's, and the cluster cannot be reached; it was not deleted")
		case !found:
			return noSuchMessage(room, id)
		}
		// Its store deleted it; other nodes' recent history keeps it
		// until the room empties there.
	}
	if sender != "" {
		s.deletions.note(room, id, sender)
		if r != nil {
			r.forget(sender, id)
		}
	}
	switch {
	case found || !own:
		return chatDeleted(s, room, id)
	case sender == "":
		s.log.Info("chat message deletion sent to every node's store", "room", room, "id", id)
		return chatDeleted(s, room, id)
	}
	return noSuchMessage(room, id) // this node's, deleted already
}

// deleteFailed answers a DELETE whose store failed.
func deleteFailed(s *Server, room, id string, err error) apiResult {
	s.metrics.storeFailed(storeDelete)
	s.log.Warn("chat delete failed", "room", room, "id", id, "err", err)
	return apiError(http.StatusServiceUnavailable, protocol.CodeChatUnavailable, "chat storage is unavailable; the message was not deleted")
}

// noSuchMessage answers a DELETE of a message no store had.
func noSuchMessage(room, id string) apiResult {
	return apiError(http.StatusNotFound, protocol.CodeInvalidPayload,
		fmt.Sprintf("chat: no message %s in room %s (never stored, or deleted already)", quoteTrunc(id), quoteTrunc(room)))
}

// chatDeleted answers a DELETE carried out.
func chatDeleted(s *Server, room, id string) apiResult {
	s.metrics.chatDeleted()
	s.log.Info("chat message deleted", "room", room, "id", id)
	return apiResult{status: http.StatusNoContent}
}

// apiKickRequest is the body of POST /api/rooms/{room}/kick: exactly one
// of ConnectionID and UserID.
type apiKickRequest struct {
	ConnectionID string      `json:"connectionId,omitempty"`
	UserID       string      `json:"userId,omitempty"`
	Reason       string      `json:"reason,omitempty"`     // the close frame's reason
	BanSeconds   wholeNumber `json:"banSeconds,omitempty"` // refuse the user's rejoin this long
}

// apiKickResponse answers POST /api/rooms/{room}/kick.
type apiKickResponse struct {
	// Kicked counts the connections removed, members of the room and
	// peers of its document alike, on every node: this node's, and those
	// the cluster registry lists on the others (the same whichever node
	// is asked).
	Kicked int `json:"kicked"`
	// Banned lists the user ids banned, when banSeconds was given.
	Banned []string `json:"banned,omitempty"`
}

const (
	// maxBanSeconds bounds a ban: 30 days. A longer exclusion belongs to
	// the backend's own access rules (OnAuth, UserInfo.Rooms, CanJoin).
	maxBanSeconds = 30 * 24 * 3600
	// maxCloseReason is the most a close frame's reason can hold: a
	// control frame carries 125 bytes, two of them the code.
	maxCloseReason = 123
)

// kick removes members from the room: POST /api/rooms/{room}/kick
// {connectionId | userId, reason?, banSeconds?}. The connections named,
// wherever they are connected, members of the room and peers of its
// document (/yjs/{room}) alike, are closed with 4403 and the reason, and
// leave the room as any member leaves. With banSeconds, the user (the
// userId given, or the user of the connection given; an anonymous
// connection has none, and once closed nothing of it can rejoin) is
// refused with FORBIDDEN when it joins the room again within that time,
// on every node.
//
// A kick with banSeconds is always carried out, the room known or not:
// a ban by userId holds for a user who is not in the room now (a
// pre-ban). A kick without one answers 404 only for a room unknown to
// the whole cluster: no member and no document peer on any node, no
// stored document, no chat in the store, and no member on this node
// within the last 10 minutes (so a kick retried after the first emptied
// the room answers {"kicked": 0}; a retry with an Idempotency-Key
// replays the first answer). Kicking someone who is not (or no longer)
// in a known room is 200 with {"kicked": 0}.
func (a *apiHandler) kick(room string, body []byte) apiResult {
	s := a.s
	var p apiKickRequest
	if e := decodeBody("kick", body, &p); e != nil {
		return fromClientError(e)
	}
	switch {
	case (p.ConnectionID == "") == (p.UserID == ""):
		return fromClientError(errPayload("kick: give exactly one of the fields \"connectionId\" and \"userId\""))
	case len(p.ConnectionID) > maxNameBytes || len(p.UserID) > maxNameBytes:
		return fromClientError(errPayload("kick: connectionId and userId are limited to %d bytes", maxNameBytes))
	case len(p.Reason) > maxCloseReason || !utf8.ValidString(p.Reason):
		return fromClientError(errPayload("kick: field \"reason\" is limited to %d bytes (it goes in the close frame)", maxCloseReason))
	case p.BanSeconds < 0 || p.BanSeconds > maxBanSeconds:
		return fromClientError(errPayload("kick: field \"banSeconds\" must be 0 to %d (30 days)", maxBanSeconds))
	}
	k := broker.Kick{ConnectionID: p.ConnectionID, UserID: p.UserID, Reason: p.Reason}
	ctx, cancel := context.WithTimeout(context.Background(), s.limits.StoreTimeout)
	defer cancel()

	// Who is in the room, or its document, elsewhere: for the count, to
	// know the room, and the user of a connection on another node, for
	// its ban.
	mod := s.moderator()
	var remote []broker.Member
	if mod != nil {
		for _, id := range []string{room, docRoom(room)} {
			st, err := s.broker.RoomState(ctx, id)
			if err != nil {
				s.log.Warn("cluster: kick refused, the cluster is unreachable", "room", room, "err", err)
				return apiError(http.StatusServiceUnavailable, protocol.CodeServerError, "the cluster cannot be reached; nobody was kicked")
			}
			remote = append(remote, st.Members...)
		}
	}
	remoteKicked := 0
	users := map[string]bool{}
	if k.UserID != "" {
		users[k.UserID] = true
	} else if u, ok := s.localMember(room, k.ConnectionID); ok && u != "" {
		users[u] = true
	} else if u, ok := s.localDocPeer(room, k.ConnectionID); ok && u != "" {
		users[u] = true
	}
	for _, m := range remote {
		var e struct {
			UserID string `json:"userId"`
		}
		if json.Unmarshal(m.Entry, &e) == nil && k.Matches(m.ConnID, e.UserID) {
			remoteKicked++
			if e.UserID != "" {
				users[e.UserID] = true
			}
		}
	}
	known := len(remote) > 0
	if p.BanSeconds == 0 && !known {
		switch k, err := s.roomKnown(ctx, room); {
		case err != nil:
			s.log.Warn("kick: whether the room exists is unknown", "room", room, "err", err)
			return apiError(http.StatusServiceUnavailable, protocol.CodeChatUnavailable, "the store is unavailable, so whether the room exists is unknown; nobody was kicked")
		case !k:
			return apiError(http.StatusNotFound, protocol.CodeInvalidPayload, "kick: no room "+quoteTrunc(room)+" (nobody in it or its document on any node lately, no chat, no stored document)")
		}
		known = true
	}

	// The ban first: a kicked client that reconnects at once must find it.
	var banned []string
	if p.BanSeconds > 0 {
		until := s.bans.clock().Add(time.Duration(p.BanSeconds) * time.Second)
		for u := range users {
			s.bans.add(room, u, until)
			if mod != nil {
				if err := mod.Ban(ctx, room, u, until); err != nil {
					s.log.Warn("cluster: ban not recorded in the cluster", "room", room, "user", u, "err", err)
					return apiError(http.StatusServiceUnavailable, protocol.CodeServerError, "the cluster cannot be reached; the ban holds on this node only and nobody was kicked")
				}
			}
			banned = append(banned, u)
		}
		s.metrics.banned(len(banned))
		s.log.Info("users banned", "room", room, "users", banned, "seconds", int64(p.BanSeconds))
	}
	n := s.kickLocal(room, k)
	if known || n > 0 {
		// A retry after this kick emptied the room finds it known; a
		// pre-ban alone does not make a room known.
		s.recent.note(room)
	}
	// Sent even when the registry listed no match: a member that joined
	// elsewhere since it was read is removed all the same.
	if mod != nil {
		if err := mod.Kick(ctx, room, k); err != nil {
			s.log.Warn("cluster: kick not sent to other nodes", "room", room, "err", err)
			remoteKicked = 0
		}
		// The document's peers elsewhere hear it on the document's own
		// traffic, which nodes without members in the room follow too.
		if err := mod.Kick(ctx, docRoom(room), k); err != nil {
			s.log.Warn("cluster: kick not sent to other nodes' document peers", "room", room, "err", err)
		}
	}
	return apiJSON(http.StatusOK, apiKickResponse{Kicked: n + remoteKicked, Banned: banned})
}

// roomKnown reports whether this node knows room id, for a kick without
// a ban (other nodes' members were asked already): members or document
// peers here, members here lately, chat in the store, or a stored
// document.
func (s *Server) roomKnown(ctx context.Context, id string) (bool, error) {
	if s.localMembers(id) > 0 || s.lookupDoc(id) != nil || s.recent.known(id) {
		return true, nil
	}
	msgs, err := s.store.History(ctx, id, 1, 0)
	if err != nil {
		s.metrics.storeFailed(storeHistory)
		return false, err
	}
	if len(msgs) > 0 {
		return true, nil
	}
	if s.docs.store == nil {
		return false, nil
	}
	log, err := s.docs.store.LoadDoc(ctx, id)
	return len(log.Updates) > 0, err
}

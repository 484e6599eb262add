package livesync

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// clientMessages is the table of the message types a client may send:
// each type's handler, and, by its row, its counter in the metrics
// (livesync_messages_in_total{type}). Dispatch, the envelope decoder's
// fast path (knownType) and the metrics all read it, so adding a message
// type is a protocol constant, a row and a handler; a test fails when a
// client type of package protocol has no row.
var clientMessages = [numClientMessages]clientMessage{
	{protocol.MsgJoinRoom, (*conn).handleJoin},
	{protocol.MsgLeaveRoom, (*conn).handleLeave},
	{protocol.MsgUpdatePresence, (*conn).handlePresence},
	{protocol.MsgBroadcastEvent, (*conn).handleEvent},
	{protocol.MsgSendChat, (*conn).handleChat},
	{protocol.MsgGetChatHistory, (*conn).handleHistory},
}

// clientMessage is one row of clientMessages.
type clientMessage struct {
	typ string
	// handle runs on the connection's reader, one message at a time.
	handle func(c *conn, payload []byte) *clientError
}

// numClientMessages is the number of rows, spelled out because the
// metrics' array of counters needs it and cannot refer to the table's
// type (which refers to conn, which refers to them). A row too many does
// not compile; TestMessageTable finds a row missing.
const numClientMessages = 6

// otherMessage is the kind of a message whose type has no row: refused,
// and counted under "other".
const otherMessage = numClientMessages

// messageKind is typ's row in clientMessages, or otherMessage.
func messageKind(typ string) int {
	for i := range clientMessages {
		if clientMessages[i].typ == typ {
			return i
		}
	}
	return otherMessage
}

var errNotInRoom = &clientError{protocol.CodeNotInRoom, "join a room first"}

// handleJoin joins a room. Joining runs deep (decoding, the store, the
// room) and happens rarely: where a goroutine waits on the connection for
// its whole life it runs on a goroutine of its own (see onOwnStack).
func (c *conn) handleJoin(raw []byte) *clientError {
	if !c.ws.Polled() {
		return onOwnStack(func() *clientError { return c.joinRoom(raw) })
	}
	return c.joinRoom(raw)
}

func (c *conn) joinRoom(raw []byte) *clientError {
	var p protocol.JoinRoomPayload
	// Optional here only so that a missing payload is refused below for
	// what it lacks, the room id.
	if e := decodePayload(protocol.MsgJoinRoom, raw, &p, true); e != nil {
		return e
	}
	lim := &c.srv.limits
	if e := checkRoomID(protocol.MsgJoinRoom, p.RoomID, lim.MaxRoomIDBytes); e != nil {
		return e
	}
	p.Presence = nullIsAbsent(p.Presence)
	if e := checkObject(protocol.MsgJoinRoom, "presence", p.Presence, lim.MaxPresenceBytes); e != nil {
		return e
	}
	if len(p.Name) > maxNameBytes || len(p.Email) > maxNameBytes {
		return &clientError{protocol.CodeMessageTooLarge, fmt.Sprintf("join_room: name and email are limited to %d bytes", maxNameBytes)}
	}
	user := c.joinUser(p.AccessToken)
	if !c.srv.mayJoin(c.context(), user, p.RoomID) {
		return &clientError{protocol.CodeForbidden, "join_room: not allowed to join room " + quoteTrunc(p.RoomID)}
	}
	if c.srv.bans.banned(p.RoomID, userID(user)) {
		return &clientError{protocol.CodeForbidden, "join_room: banned from room " + quoteTrunc(p.RoomID) + " for now"}
	}
	c.srv.switchUser(c, user)

	entry := protocol.PresenceEntry{ConnectionID: c.id, Presence: compactObject(p.Presence), Name: p.Name, Email: p.Email}
	if user != nil {
		entry.UserID, entry.Provider = user.UserID, user.Provider
		if user.Name != "" {
			entry.Name = user.Name
		}
		if user.Email != "" {
			entry.Email = user.Email
		}
	}
	if c.room != nil {
		c.room.leave(c)
		c.room = nil
	}
	for {
		r := c.srv.acquireRoom(p.RoomID)
		r.ensureHistory()
		if r.join(c, entry) {
			c.room, c.name = r, entry.Name
			return nil
		}
	}
}

// joinUser is who joins: the connection's user, or, for a connection
// that has none yet, the user of join_room's accessToken when it
// verifies. As in the Node server, a token never replaces the user a
// connection has (from OnAuth or an earlier join), and one that does not
// verify is ignored rather than refused: the 1.0.x client sends the same
// accessToken with every rejoin after a reconnect, long after it expired,
// and was locked out of its room; an unverified token is still never
// trusted, the join goes on as the connection's own user.
func (c *conn) joinUser(token string) *UserInfo {
	if token == "" || userID(c.user) != "" || c.srv.opts.VerifyToken == nil {
		return c.user
	}
	u, err := c.srv.opts.VerifyToken(c.context(), token)
	if err != nil || u == nil {
		c.srv.metrics.authFailed()
		c.srv.log.Debug("join_room's accessToken did not verify; ignored", "conn", c.id, "err", err)
		return c.user
	}
	return u
}

// maxNameBytes bounds the name and email a client may give itself.
const maxNameBytes = 256

// handleLeave leaves the connection's room. Leaving a room the
// connection is not in does nothing and is no error, as in the Node
// server: the 1.0.x client takes a room for its own before the server
// answers, and after a refused join sends leave_room for it (with its
// next join, or its leaveRoom), which must not come back as an error
// that overwrites the refusal's.
func (c *conn) handleLeave(raw []byte) *clientError {
	var p protocol.LeaveRoomPayload
	if e := decodePayload(protocol.MsgLeaveRoom, raw, &p, true); e != nil {
		return e
	}
	if c.room == nil || p.RoomID != "" && p.RoomID != c.room.id {
		return nil
	}
	c.room.leave(c)
	c.room = nil
	return nil
}

func (c *conn) handlePresence(raw []byte) *clientError {
	var p protocol.UpdatePresencePayload
	if e := decodePayload(protocol.MsgUpdatePresence, raw, &p, false); e != nil {
		return e
	}
	if len(p.Presence) == 0 {
		return errPayload("update_presence: field \"presence\" is required")
	}
	if e := checkObject(protocol.MsgUpdatePresence, "presence", p.Presence, c.srv.limits.MaxPresenceBytes); e != nil {
		return e
	}
	if c.room == nil {
		return errNotInRoom
	}
	c.room.updatePresence(c, compactObject(p.Presence))
	return nil
}

func (c *conn) handleEvent(raw []byte) *clientError {
	p, ok := scanEvent(raw)
	if !ok {
		if e := decodePayload(protocol.MsgBroadcastEvent, raw, &p, false); e != nil {
			return e
		}
	}
	if p.Event == "" {
		return errPayload("broadcast_event: field \"event\" is required and must be a non-empty string")
	}
	if c.room == nil {
		return errNotInRoom
	}
	if string(p.Payload) == "null" {
		p.Payload = nil // optional fields are omitted, never null
	}
	lim := &c.srv.limits
	if !allow(&c.eventLimit, lim.EventRate, lim.EventBurst) {
		return &clientError{protocol.CodeRateLimited, fmt.Sprintf("broadcast_event: more than %g events/s", lim.EventRate)}
	}
	c.room.announce(c)
	var userID string
	if c.user != nil {
		userID = c.user.UserID
	}
	c.room.broadcast(eventFrame(c.room.id, c.id, userID, p.Event, p.Payload), c)
	c.srv.metrics.eventRelayed()
	return nil
}

// sendChatPayload is send_chat's payload as the server reads it: a
// pointer tells a missing or null message from an empty one.
type sendChatPayload struct {
	Message  *string         `json:"message"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

func (c *conn) handleChat(raw []byte) *clientError {
	var p sendChatPayload
	if e := decodePayload(protocol.MsgSendChat, raw, &p, false); e != nil {
		return e
	}
	lim := &c.srv.limits
	if p.Message == nil {
		return errPayload("send_chat: field \"message\" is required and must be a string")
	}
	if e := checkChatText(protocol.MsgSendChat, *p.Message, lim.MaxChatBytes); e != nil {
		return e
	}
	p.Metadata = nullIsAbsent(p.Metadata)
	if e := checkObject(protocol.MsgSendChat, "metadata", p.Metadata, lim.MaxPresenceBytes); e != nil {
		return e
	}
	if c.room == nil {
		return errNotInRoom
	}
	if !allow(&c.chatLimit, lim.ChatRate, lim.ChatBurst) {
		return &clientError{protocol.CodeRateLimited, fmt.Sprintf("send_chat: more than %g messages/s", lim.ChatRate)}
	}
	msg := chat.Message{RoomID: c.room.id, ConnectionID: c.id, Message: *p.Message, Metadata: compactObject(p.Metadata), Name: c.name}
	if c.user != nil {
		msg.UserID = c.user.UserID
	}
	c.room.announce(c)
	req := chatRequest{conn: c, msg: msg, deadline: time.Now().Add(lim.StoreTimeout)}
	if h := &c.srv.opts.Hooks; h.OnChat != nil {
		req.ctx = c.context()
		req.deadline = req.deadline.Add(h.ChatTimeout)
	}
	_, e := c.room.enqueueChat(req)
	return e
}

// checkChatText checks a chat message's text: its size, and no U+0000,
// which PostgreSQL cannot store in a text column; refused up front the
// same way whatever the store, rather than failing in one store only.
func checkChatText(typ, text string, maxBytes int) *clientError {
	if len(text) > maxBytes {
		return &clientError{protocol.CodeMessageTooLarge, fmt.Sprintf("%s: message is %d bytes, the limit is %d", typ, len(text), maxBytes)}
	}
	if strings.IndexByte(text, 0) >= 0 {
		return errPayload("%s: field \"message\" must not contain U+0000", typ)
	}
	return nil
}

func (c *conn) handleHistory(raw []byte) *clientError {
	var p protocol.GetChatHistoryPayload
	if e := decodePayload(protocol.MsgGetChatHistory, raw, &p, true); e != nil {
		return e
	}
	if c.room == nil {
		return errNotInRoom
	}
	if p.Limit < 0 {
		return errPayload("get_chat_history: field \"limit\" must not be negative")
	}
	lim := &c.srv.limits
	if !allow(&c.historyLimit, lim.HistoryRate, lim.HistoryBurst) {
		return &clientError{protocol.CodeRateLimited, fmt.Sprintf("get_chat_history: more than %g requests/s", lim.HistoryRate)}
	}
	msgs, more, e := c.srv.historyPage(context.Background(), protocol.MsgGetChatHistory, c.room.id, p.Before, p.Limit)
	if e != nil {
		return e
	}
	history, cut := encodeHistory(msgs, lim.HistoryBytes)
	f := newFrame(protocol.MsgChatHistory, len(history)+64)
	f.raw(`{"roomId":`)
	f.str(c.room.id)
	f.field("messages")
	f.bytes(history)
	f.field("hasMore")
	f.b = strconv.AppendBool(f.b, more || cut)
	f.raw("}")
	c.sendSnapshot(f.done()) // an answer as large as HistoryBytes, not a backlog
	return nil
}

// allow takes a token from the limiter, creating it on first use so that
// connections that never send hold none.
func allow(l **rate.Limiter, r float64, burst int) bool {
	if *l == nil {
		*l = rate.NewLimiter(rate.Limit(r), burst)
	}
	return (*l).Allow()
}

// sendError tells the client what was wrong with its message, counted
// by its code: every error frame is sent here.
func (c *conn) sendError(e *clientError) {
	c.srv.metrics.errorSent(e.code)
	c.send(errorFrame(e.code, e.message))
}

// handle dispatches one client message by the table of message types.
func (c *conn) handle(data []byte) {
	if c.kicked.Load() {
		return // being closed by moderation; no answer after the close frame anyway
	}
	env, cerr := decodeEnvelope(data)
	kind := messageKind(env.Type)
	c.srv.metrics.messageType(kind)
	switch {
	case cerr != nil:
	case kind == otherMessage:
		cerr = &clientError{protocol.CodeInvalidMessage, "unknown message type " + quoteTrunc(env.Type)}
	default:
		cerr = clientMessages[kind].handle(c, env.Payload)
	}
	if cerr == nil {
		c.violations = 0
		return
	}
	c.sendError(cerr)
	if cerr.code == protocol.CodeRateLimited {
		c.srv.metrics.rateLimited()
		c.violations++
		if c.violations >= c.srv.limits.MaxViolations {
			c.srv.metrics.rateLimitDisconnect()
			c.close(protocol.ClosePolicy, "rate limit exceeded repeatedly")
		}
	}
}

// quoteTrunc quotes a client-supplied string for an error message, cut
// short so an error never echoes a large input back.
func quoteTrunc(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
	}
	return string(appendJSONString(nil, s))
}

// onOwnStack runs f on a goroutine of its own and waits for it. Joining
// a room runs deep (decoding, the store, the room) and happens rarely;
// run there, it leaves the reading goroutine's stack at its small starting
// size, which matters where a goroutine waits on an idle connection for
// its whole life: one the poller does not watch (TLS, other systems).
func onOwnStack(f func() *clientError) *clientError {
	done := make(chan *clientError, 1)
	go func() { done <- f() }()
	return <-done
}

// Package protocol holds the OpenLiveSync wire types: the message-type
// constants and the payload structs, field for field as the Node package
// @openlivesync/server defines them. Go clients and the server share it.
//
// Every frame is a JSON text message {"type": "...", "payload": {...}}.
// Optional fields are omitted when empty, never sent as null.
package protocol

import "encoding/json"

// Client → server message types.
const (
	MsgJoinRoom       = "join_room"
	MsgLeaveRoom      = "leave_room"
	MsgUpdatePresence = "update_presence"
	MsgBroadcastEvent = "broadcast_event"
	MsgSendChat       = "send_chat"
	// MsgGetChatHistory asks for older chat messages (an extension: the
	// server answers with MsgChatHistory, never unprompted).
	MsgGetChatHistory = "get_chat_history"
)

// Server → client message types.
const (
	MsgRoomJoined      = "room_joined"
	MsgPresenceUpdated = "presence_updated"
	// MsgBroadcastEventRelay is the relayed event; it shares its name with
	// the client's MsgBroadcastEvent, as in the Node package.
	MsgBroadcastEventRelay = "broadcast_event"
	MsgChatMessage         = "chat_message"
	MsgError               = "error"
	// MsgChatHistory answers MsgGetChatHistory.
	MsgChatHistory = "chat_history"
)

// Error codes carried by an error message's Code.
const (
	CodeInvalidJSON     = "INVALID_JSON"
	CodeInvalidMessage  = "INVALID_MESSAGE"
	CodeInvalidPayload  = "INVALID_PAYLOAD"
	CodeNotInRoom       = "NOT_IN_ROOM"
	CodeForbidden       = "FORBIDDEN"
	CodeRateLimited     = "RATE_LIMITED"
	CodeMessageTooLarge = "MESSAGE_TOO_LARGE"
	CodeChatUnavailable = "CHAT_UNAVAILABLE"
	CodeServerError     = "SERVER_ERROR"
	// CodeChatRejected: the server's OnChat hook (the backend) refused a
	// chat message; its reason is the error's message. Nothing was stored.
	CodeChatRejected = "CHAT_REJECTED"
)

// WebSocket close codes the server uses besides the standard ones.
const (
	CloseAuthRejected = 4401 // OnAuth returned no user, or the token did not verify
	CloseAuthFailed   = 4500 // OnAuth returned an error
	CloseKicked       = 4403 // removed from its room by moderation (the HTTP API's kick)
	// CloseForbidden: the document endpoint refused the document (the
	// token's rooms, CanJoin, or a ban). The same code as CloseKicked.
	CloseForbidden = 4403
	// CloseBadDocument: the document endpoint's path names no valid room id.
	CloseBadDocument = 4400
	// CloseDocumentFull: an update would take the document over the
	// server's size limit; it was neither applied nor relayed. A 44xx
	// code, so that the app stops its provider, which would otherwise
	// reconnect and send the same update again forever.
	CloseDocumentFull = 4413
	// CloseDocumentTooLarge: a frame on the document endpoint over its
	// frame limit, or an awareness state over the presence limit. The
	// same code as CloseDocumentFull, for the same reason: the provider
	// would send it again on every reconnect.
	CloseDocumentTooLarge = 4413
	// CloseUnsupported: a text frame on the document endpoint, which speaks
	// binary y-websocket messages only.
	CloseUnsupported = 1003
	// CloseInvalidData: a document message or Yjs update that does not
	// decode; it was neither applied nor relayed.
	CloseInvalidData = 1007
	// CloseInternalError: the server could not serve the document.
	CloseInternalError = 1011
	CloseGoingAway     = 1001 // server shutting down
	ClosePolicy        = 1008 // abuse or slow consumer
	CloseTooLarge      = 1009 // frame larger than the read limit
)

// Envelope is one frame: a type and its raw payload.
type Envelope struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Presence is an arbitrary JSON object per connection, e.g. cursor, name,
// colour. The server stores and relays it without interpreting it.
type Presence = json.RawMessage

// JoinRoomPayload is the payload of join_room.
type JoinRoomPayload struct {
	RoomID      string   `json:"roomId"`
	Presence    Presence `json:"presence,omitempty"`
	Name        string   `json:"name,omitempty"`
	Email       string   `json:"email,omitempty"`
	AccessToken string   `json:"accessToken,omitempty"`
}

// LeaveRoomPayload is the payload of leave_room.
type LeaveRoomPayload struct {
	RoomID string `json:"roomId,omitempty"`
}

// UpdatePresencePayload is the payload of update_presence.
type UpdatePresencePayload struct {
	Presence Presence `json:"presence"`
}

// BroadcastEventPayload is the payload of a client's broadcast_event.
type BroadcastEventPayload struct {
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// SendChatPayload is the payload of send_chat.
type SendChatPayload struct {
	Message  string          `json:"message"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// GetChatHistoryPayload is the payload of get_chat_history: up to Limit
// messages older than the message whose id is Before (the newest when empty).
type GetChatHistoryPayload struct {
	Limit  int    `json:"limit,omitempty"`
	Before string `json:"before,omitempty"`
}

// PresenceEntry is one member of a room as others see it.
type PresenceEntry struct {
	ConnectionID string   `json:"connectionId"`
	UserID       string   `json:"userId,omitempty"`
	Name         string   `json:"name,omitempty"`
	Email        string   `json:"email,omitempty"`
	Provider     string   `json:"provider,omitempty"`
	Presence     Presence `json:"presence"`
}

// StoredChatMessage is a chat message as the store keeps it and as
// clients receive it in chat history.
type StoredChatMessage struct {
	ID           string          `json:"id"`
	RoomID       string          `json:"roomId"`
	ConnectionID string          `json:"connectionId"`
	UserID       string          `json:"userId,omitempty"`
	Message      string          `json:"message"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	// CreatedAt is Unix milliseconds.
	CreatedAt int64 `json:"createdAt"`
	// Name is the sender's display name as it joined, when the message
	// was just stored (chat.Message.Name): never on the wire, whose
	// chat_message carries none, and not kept by the stores; the
	// chat.message webhook reports it.
	Name string `json:"-"`
}

// RoomJoinedPayload is the payload of room_joined. ChatHistory is always
// an array, oldest message first.
type RoomJoinedPayload struct {
	RoomID       string                   `json:"roomId"`
	ConnectionID string                   `json:"connectionId"`
	Presence     map[string]PresenceEntry `json:"presence"`
	ChatHistory  []StoredChatMessage      `json:"chatHistory"`
}

// PresenceUpdatedPayload is the payload of presence_updated. One message
// may carry several entries in each list.
type PresenceUpdatedPayload struct {
	RoomID  string          `json:"roomId"`
	Joined  []PresenceEntry `json:"joined,omitempty"`
	Left    []string        `json:"left,omitempty"`
	Updated []PresenceEntry `json:"updated,omitempty"`
}

// BroadcastEventRelayPayload is the payload of a relayed broadcast_event.
type BroadcastEventRelayPayload struct {
	RoomID       string          `json:"roomId"`
	ConnectionID string          `json:"connectionId"`
	UserID       string          `json:"userId,omitempty"`
	Event        string          `json:"event"`
	Payload      json.RawMessage `json:"payload,omitempty"`
}

// ChatHistoryPayload answers get_chat_history: Messages oldest first, and
// HasMore when older messages remain.
type ChatHistoryPayload struct {
	RoomID   string              `json:"roomId"`
	Messages []StoredChatMessage `json:"messages"`
	HasMore  bool                `json:"hasMore"`
}

// ErrorPayload is the payload of error.
type ErrorPayload struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Encode returns the frame {"type": typ, "payload": payload}.
func Encode(typ string, payload any) ([]byte, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Envelope{Type: typ, Payload: p})
}

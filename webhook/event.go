package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// The event types, as they appear in a webhook's "type".
const (
	RoomOccupied = "room.occupied" // the first member joined a room: data {roomId}
	RoomVacated  = "room.vacated"  // the last member left it: data {roomId}
	MemberJoined = "member.joined" // data {roomId, connectionId, userId?, name?}
	MemberLeft   = "member.left"   // data as member.joined
	UserOnline   = "user.online"   // a user id's first connection opened: data {userId, name?}
	UserOffline  = "user.offline"  // its last one closed, and none opened within Config.OfflineDelay
	ChatMessage  = "chat.message"  // a chat message was stored: data as chat_message on the wire, with the sender's name?
	// DocumentUpdated: a room's shared document changed, debounced (see
	// livesync.Hooks.OnDocUpdated): data {roomId, updates, bytes}.
	DocumentUpdated = "document.updated"
)

// AllEvents lists every event type, in the order the README describes them.
var AllEvents = []string{RoomOccupied, RoomVacated, MemberJoined, MemberLeft, UserOnline, UserOffline, ChatMessage, DocumentUpdated}

// ParseEvents reads a comma-separated list of event types ("" for all),
// refusing an unknown name so that a typo does not silently subscribe to
// nothing.
func ParseEvents(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return slices.Clone(AllEvents), nil
	}
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(AllEvents, name) {
			return nil, fmt.Errorf("unknown webhook event %q (known: %s)", name, strings.Join(AllEvents, ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// Event is one webhook waiting in the outbox: its body is complete and
// its id fixed, so every attempt sends the same bytes under the same
// webhook-id.
type Event struct {
	ID   string // the webhook-id
	Type string
	// Key orders events: those with the same key are delivered one at a
	// time, in the order they were added ("room:<id>" or "user:<id>").
	Key     string
	Body    []byte
	Created time.Time // when it happened; delivery latency counts from here

	// Attempts made so far; Due is when the next may start. The sender
	// sets them before Outbox.Retry.
	Attempts int
	Due      time.Time
}

// payload is the Standard Webhooks body.
type payload struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// newEvent builds an event of typ about data, which happened at at.
func newEvent(typ, key string, at time.Time, data any) Event {
	body, err := json.Marshal(payload{Type: typ, Timestamp: at.UTC().Format(time.RFC3339Nano), Data: data})
	if err != nil { // data is made of strings and raw JSON the server checked
		panic("webhook: encoding " + typ + ": " + err.Error())
	}
	return Event{ID: newID(), Type: typ, Key: key, Body: body, Created: at}
}

// roomData is the data of room.occupied and room.vacated.
type roomData struct {
	RoomID string `json:"roomId"`
}

// memberData is the data of member.joined and member.left.
type memberData struct {
	RoomID       string `json:"roomId"`
	ConnectionID string `json:"connectionId"`
	UserID       string `json:"userId,omitempty"`
	Name         string `json:"name,omitempty"`
}

// userData is the data of user.online and user.offline.
type userData struct {
	UserID string `json:"userId"`
	Name   string `json:"name,omitempty"`
}

// chatData is the data of chat.message: the message as chat_message
// carries it on the wire (createdAt in Unix milliseconds), with the
// sender's name, which the wire's message lacks.
type chatData struct {
	ID           string          `json:"id"`
	RoomID       string          `json:"roomId"`
	ConnectionID string          `json:"connectionId"`
	UserID       string          `json:"userId,omitempty"`
	Name         string          `json:"name,omitempty"`
	Message      string          `json:"message"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	CreatedAt    int64           `json:"createdAt"`
}

// chatEvent is the chat.message event of m.
func chatEvent(m protocol.StoredChatMessage) Event {
	return newEvent(ChatMessage, roomKey(m.RoomID), time.UnixMilli(m.CreatedAt), chatData{
		ID: m.ID, RoomID: m.RoomID, ConnectionID: m.ConnectionID, UserID: m.UserID, Name: m.Name,
		Message: m.Message, Metadata: m.Metadata, CreatedAt: m.CreatedAt})
}

// documentData is the data of document.updated: the updates accepted
// since the last one, and their bytes.
type documentData struct {
	RoomID  string `json:"roomId"`
	Updates int    `json:"updates"`
	Bytes   int64  `json:"bytes"`
}

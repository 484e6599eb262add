// Package chat defines the chat history store that the server persists
// room chat to, and an in-memory implementation. Database-backed stores
// live in their own packages (chat/postgres, chat/mysql, chat/sqlite) so an
// import pulls only the driver it needs; chat/chattest is the conformance
// suite every store passes.
//
// The contract every Store keeps:
//   - Append assigns the message its ID and CreatedAt (Unix milliseconds)
//     and returns only once the message is durable in that store.
//   - A room's messages have one total order, by an increasing key that
//     the store assigns (never by timestamp alone, which repeats within a
//     millisecond). History returns them in that order.
//   - History(room, limit, offset) skips the offset newest messages and
//     returns the limit messages before them, oldest first, as the Node
//     package's database adapters do: History(room, 20, 40) is the third
//     page of 20 counted back from the newest; History(room, n, 0) is the
//     n most recent messages.
//   - Methods are safe for concurrent use.
//   - An Append that returns an error has not stored the message, and the
//     message never shows up in history later, even when the error came
//     from the caller's context ending while the database was committing.
//   - Text is stored as given, except U+0000 (NUL): PostgreSQL cannot
//     keep it in a text column, so every store refuses a message whose
//     room id, connection id, user id or text holds it, with an error
//     wrapping ErrNUL, and stores none of a batch holding one. In
//     metadata, where JSON can only carry it as the escape \u0000, it is
//     stored and returned like any other escape.
//   - Metadata comes back as sent, byte for byte once compacted
//     (json.Compact): numbers keep their spelling and precision, keys
//     their order, duplicate keys stay.
package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/openlivesync/livesync/protocol"
)

// Message is a chat message as it is handed to a store, before the store
// assigns its ID and CreatedAt.
type Message struct {
	// RoomID is the room whose history the message joins; rooms are
	// compared byte for byte by every store.
	RoomID string
	// ConnectionID is the sending connection, so clients can tell their
	// own echo from others' messages.
	ConnectionID string
	// UserID is the authenticated sender; empty for an anonymous one,
	// which stores keep as absent rather than as "".
	UserID string
	// Message is the text, stored as given.
	Message string
	// Metadata is a JSON object or empty. Stores refuse invalid JSON and
	// may return it re-spaced (compacted).
	Metadata json.RawMessage
	// Name is the sender's display name. Stores do not keep it: they
	// hand it back in what Append returns and to their OutboxEncoder, so
	// that a webhook of the message can name its sender.
	Name string
}

// Store persists room chat. See the package documentation for the
// ordering and paging contract.
type Store interface {
	// Append stores msg and returns it as stored.
	Append(ctx context.Context, msg Message) (protocol.StoredChatMessage, error)
	// History returns up to limit messages of roomID, oldest first, after
	// skipping the offset newest. A limit <= 0 means the store's default.
	History(ctx context.Context, roomID string, limit, offset int) ([]protocol.StoredChatMessage, error)
	// Close releases the store's resources. Calls after Close fail.
	Close() error
}

// BatchAppender is implemented by stores that can store several messages
// in one transaction (group commit). The server uses it, when present, to
// store a burst of messages for one room at once. The returned messages
// are in the order of msgs, and their order keys increase in that order.
// On error none of the messages is stored.
type BatchAppender interface {
	AppendBatch(ctx context.Context, msgs []Message) ([]protocol.StoredChatMessage, error)
}

// Pinger is implemented by stores that can check they are reachable; the
// server's readiness check uses it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Pager is implemented by stores that page back through history by
// message id, for clients scrolling back (get_chat_history).
type Pager interface {
	// HistoryBefore returns up to limit messages of roomID older than the
	// message beforeID (the newest messages when beforeID is empty), oldest
	// first, and whether older messages remain. beforeID need not name a
	// message that is still stored: an id this store could have given (a
	// deleted message's, say) pages from where that message was, so a
	// client whose oldest loaded message was deleted still scrolls back.
	// A beforeID that cannot be one of this store's ids gets an error
	// wrapping ErrBadCursor.
	HistoryBefore(ctx context.Context, roomID, beforeID string, limit int) (msgs []protocol.StoredChatMessage, hasMore bool, err error)
}

// ErrBadCursor is returned by HistoryBefore for a beforeID that is not
// the form of this store's ids (and, in the SQL stores, names no row).
var ErrBadCursor = errors.New("chat: not a message id of this store")

// ErrNUL is wrapped by the error Append and AppendBatch return for a
// message holding U+0000 in its room id, connection id, user id or text.
var ErrNUL = errors.New("chat: text holds U+0000 (NUL), which stores do not keep")

// ErrInvalidMetadata is wrapped by the error Append and AppendBatch
// return for a message whose metadata is not valid JSON.
var ErrInvalidMetadata = errors.New("chat: metadata is not valid JSON")

// CheckMessage returns an error wrapping ErrNUL, naming the field, when a
// text field of m holds U+0000, or wrapping ErrInvalidMetadata. Every
// store calls it before storing, so that all of them refuse what
// PostgreSQL cannot store, and what no client could decode.
func CheckMessage(m Message) error {
	for _, f := range [...]struct{ name, text string }{
		{"room id", m.RoomID}, {"connection id", m.ConnectionID}, {"user id", m.UserID}, {"message", m.Message},
	} {
		if strings.IndexByte(f.text, 0) >= 0 {
			return fmt.Errorf("%s: %w", f.name, ErrNUL)
		}
	}
	if len(m.Metadata) > 0 && !json.Valid(m.Metadata) {
		return ErrInvalidMetadata
	}
	return nil
}

// ErrClosed is returned by a store's methods after Close.
var ErrClosed = errors.New("chat: store closed")

// DefaultHistoryLimit is the number of messages History returns when
// called with limit <= 0 and the store was given no default of its own.
const DefaultHistoryLimit = 100

// Deleter is implemented by stores that can remove a message from a
// room's history, for moderation (the HTTP API's DELETE
// /api/rooms/{room}/chat/{id}). A deleted message no longer shows up in
// History or HistoryBefore, and its id is never given to another message,
// so that an id a client or a server's memory still holds cannot come to
// name a different message. A deleted message's id remains a
// HistoryBefore cursor, which pages from where the message was, in every
// store.
type Deleter interface {
	// Delete removes the message id of roomID. It reports found false,
	// with a nil error, when roomID has no message id: never stored, of
	// another room, or deleted already, so that a repeated call changes
	// nothing.
	Delete(ctx context.Context, roomID, id string) (found bool, err error)
}

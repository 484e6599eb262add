// Package chattest is the conformance suite for chat.Store
// implementations. Every store, in memory or in a database, runs the same
// cases, so the server can swap stores without noticing: the ordering and
// paging contract of package chat, field and metadata round trips
// (metadata byte for byte once compacted), the refusal of U+0000 and of
// metadata that is not JSON, large
// messages, concurrency, batches, and behaviour after Close. Cases for the
// optional interfaces (chat.BatchAppender, chat.Pinger, chat.Pager,
// chat.Deleter) are skipped for stores that do not implement them.
//
// A store package's test calls Run with a factory:
//
//	func TestConformance(t *testing.T) {
//		chattest.Run(t, func(t *testing.T) chat.Store {
//			s, err := mystore.New(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The factory is called once per case and must return an empty store
// created with the default history limit (chat.DefaultHistoryLimit) that
// keeps at least 1,000 messages per room. The suite closes some stores
// itself, so Close must tolerate a second call.
//
// RunOutbox and RunDocs check the tables a store may keep beside the
// chat (chat.OutboxStore, chat.DocStore); their fixtures open two stores
// on one database, as two nodes of a cluster would.
package chattest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// Run runs every conformance case against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) chat.Store) {
	cases := []struct {
		name string
		run  func(t *testing.T, s chat.Store)
	}{
		{"AppendThenHistory", testAppendThenHistory},
		{"Paging", testPaging},
		{"DefaultLimit", testDefaultLimit},
		{"EmptyRoom", testEmptyRoom},
		{"RoomIsolation", testRoomIsolation},
		{"Metadata", testMetadata},
		{"MetadataAsSent", testMetadataAsSent},
		{"NUL", testNUL},
		{"InvalidMetadata", testInvalidMetadata},
		{"MetadataBufferReused", testMetadataBufferReused},
		{"LargeMessage", testLargeMessage},
		{"SameMillisecond", testSameMillisecond},
		{"ConcurrentAppends", testConcurrentAppends},
		{"AppendBatch", testAppendBatch},
		{"ConcurrentBatches", testConcurrentBatches},
		{"HistoryBefore", testHistoryBefore},
		{"HistoryBeforeBadCursor", testHistoryBeforeBadCursor},
		{"HistoryBeforeRoomIsolation", testHistoryBeforeRoomIsolation},
		{"Delete", testDelete},
		{"CanceledContext", testCanceledContext},
		{"Ping", testPing},
		{"Close", testClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			c.run(t, s)
		})
	}
}

// ctx returns a context that ends with the test, bounded so a hung store
// fails the case instead of the whole test binary.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func appendOne(t *testing.T, s chat.Store, m chat.Message) protocol.StoredChatMessage {
	t.Helper()
	got, err := s.Append(ctx(t), m)
	if err != nil {
		t.Fatalf("Append(%q): %v", m.Message, err)
	}
	return got
}

func history(t *testing.T, s chat.Store, room string, limit, offset int) []protocol.StoredChatMessage {
	t.Helper()
	got, err := s.History(ctx(t), room, limit, offset)
	if err != nil {
		t.Fatalf("History(%q, %d, %d): %v", room, limit, offset, err)
	}
	if got == nil {
		t.Fatalf("History(%q, %d, %d) returned a nil slice; want a non-nil (JSON array) slice", room, limit, offset)
	}
	return got
}

// seed stores n messages "room/i" in room, in order, as fast as the store
// allows: in batches when it is a chat.BatchAppender.
func seed(t *testing.T, s chat.Store, room string, n int) []protocol.StoredChatMessage {
	t.Helper()
	msgs := make([]chat.Message, n)
	for i := range msgs {
		msgs[i] = chat.Message{RoomID: room, ConnectionID: "conn-seed", UserID: "user-seed", Message: fmt.Sprintf("%s/%d", room, i)}
	}
	var out []protocol.StoredChatMessage
	if b, ok := s.(chat.BatchAppender); ok {
		for len(msgs) > 0 {
			chunk := msgs[:min(len(msgs), 100)]
			msgs = msgs[len(chunk):]
			got, err := b.AppendBatch(ctx(t), chunk)
			if err != nil {
				t.Fatalf("AppendBatch: %v", err)
			}
			out = append(out, got...)
		}
		return out
	}
	for _, m := range msgs {
		out = append(out, appendOne(t, s, m))
	}
	return out
}

// texts returns the Message field of each message, for readable diffs.
func texts(ms []protocol.StoredChatMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Message
	}
	return out
}

func ids(ms []protocol.StoredChatMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// jsonEqual compares two JSON documents by meaning: databases may change
// whitespace, key order and number spelling. Two empty documents are
// equal; an empty and a non-empty one are not.
func jsonEqual(a, b []byte) (bool, error) {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b), nil
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false, fmt.Errorf("%q: %w", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		return false, fmt.Errorf("%q: %w", b, err)
	}
	return reflect.DeepEqual(va, vb), nil
}

// sameMessage fails t unless got equals want field for field, metadata by
// meaning.
func sameMessage(t *testing.T, got, want protocol.StoredChatMessage) {
	t.Helper()
	gm, wm := got.Metadata, want.Metadata
	got.Metadata, want.Metadata = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("message mismatch:\n got  %+v\n want %+v", got, want)
	}
	eq, err := jsonEqual(gm, wm)
	if err != nil {
		t.Errorf("message %s: metadata is not JSON: %v", want.ID, err)
	} else if !eq {
		t.Errorf("message %s: metadata = %s, want %s", want.ID, gm, wm)
	}
}

func sameMessages(t *testing.T, got, want []protocol.StoredChatMessage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages %q, want %d %q", len(got), texts(got), len(want), texts(want))
	}
	for i := range got {
		sameMessage(t, got[i], want[i])
	}
}

func requireUnique(t *testing.T, ms []protocol.StoredChatMessage) {
	t.Helper()
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if m.ID == "" {
			t.Fatalf("message %q has an empty ID", m.Message)
		}
		if seen[m.ID] {
			t.Fatalf("ID %q assigned twice", m.ID)
		}
		seen[m.ID] = true
	}
}

func requireErrClosed(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s after Close succeeded; want an error", what)
	} else if !errors.Is(err, chat.ErrClosed) {
		t.Errorf("%s after Close: %v; want an error wrapping chat.ErrClosed", what, err)
	}
}

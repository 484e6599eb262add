package chattest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/openlivesync/livesync/chat"
)

// testMetadataAsSent checks that metadata comes back byte for byte as
// sent, once compacted: a store must not parse and re-print it (as
// PostgreSQL's JSONB does, turning a 97-byte 1e131071 into 131,072
// digits, sorting keys, dropping duplicates and refusing \u0000).
func testMetadataAsSent(t *testing.T, s chat.Store) {
	cases := []struct{ name, meta string }{
		{"huge exponent", `{"n":1e131071}`},
		{"key order", `{"b":2,"a":1}`},
		{"duplicate keys", `{"a":1,"a":2}`},
		{"big integer", `{"big":12345678901234567890123,"neg":-98765432109876543210}`},
		{"number spellings", `{"f":1.0,"g":1E+2,"h":-0.0,"i":0.1e-999}`},
		{"escaped NUL", `{"z":"a\u0000b"}`},
		{"escapes kept", `{"e":"\u00e9\/\ud83d\ude00"}`},
		{"spaced", "{ \"b\" : [ 1 , 2 ] ,\n\t\"a\" : { } }"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			room := "exact-" + c.name
			var want bytes.Buffer
			if err := json.Compact(&want, []byte(c.meta)); err != nil {
				t.Fatalf("test bug: %v", err)
			}
			m := appendOne(t, s, chat.Message{RoomID: room, ConnectionID: "c", Message: "m", Metadata: json.RawMessage(c.meta)})
			var gotAppend bytes.Buffer
			if err := json.Compact(&gotAppend, m.Metadata); err != nil || gotAppend.String() != want.String() {
				t.Errorf("Append returned metadata %q (%v); want %q", m.Metadata, err, want.String())
			}
			got := history(t, s, room, 0, 0)
			if len(got) != 1 {
				t.Fatalf("History has %d messages, want 1", len(got))
			}
			var gotHistory bytes.Buffer
			if err := json.Compact(&gotHistory, got[0].Metadata); err != nil || gotHistory.String() != want.String() {
				shown := got[0].Metadata
				if len(shown) > 200 {
					shown = append(shown[:200:200], "..."...)
				}
				t.Errorf("History returned metadata of %d bytes %q (%v); want %q", len(got[0].Metadata), shown, err, want.String())
			}
		})
	}
}

// testNUL checks the one rule for U+0000, which PostgreSQL cannot store
// in text: refused, with an error wrapping chat.ErrNUL, in every text
// field, and not stored; a batch holding one such message is refused
// whole.
func testNUL(t *testing.T, s chat.Store) {
	cases := []struct {
		name string
		msg  chat.Message
	}{
		{"message", chat.Message{RoomID: "nul", ConnectionID: "c", Message: "a\x00b"}},
		{"user id", chat.Message{RoomID: "nul", ConnectionID: "c", UserID: "u\x00", Message: "m"}},
		{"connection id", chat.Message{RoomID: "nul", ConnectionID: "\x00c", Message: "m"}},
		{"room id", chat.Message{RoomID: "nul\x00", ConnectionID: "c", Message: "m"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.Append(ctx(t), c.msg); !errors.Is(err, chat.ErrNUL) {
				t.Errorf("Append with NUL in the %s: %v; want an error wrapping chat.ErrNUL", c.name, err)
			}
			if b, ok := s.(chat.BatchAppender); ok {
				good := chat.Message{RoomID: "nul", ConnectionID: "c", Message: "good"}
				if _, err := b.AppendBatch(ctx(t), []chat.Message{good, c.msg}); !errors.Is(err, chat.ErrNUL) {
					t.Errorf("AppendBatch with NUL in the %s: %v; want an error wrapping chat.ErrNUL", c.name, err)
				}
			}
		})
	}
	if got := history(t, s, "nul", 0, 0); len(got) != 0 {
		t.Errorf("History holds %d messages %q; nothing of a refused message or batch may be stored", len(got), texts(got))
	}
	// The store still works.
	appendOne(t, s, chat.Message{RoomID: "nul", ConnectionID: "c", Message: "after"})
}

// testInvalidMetadata checks that metadata that is not JSON is refused,
// with an error wrapping chat.ErrInvalidMetadata, and not stored: no
// client could decode the history holding it.
func testInvalidMetadata(t *testing.T, s chat.Store) {
	for _, meta := range []string{`{"a":`, `{"a":1} x`, "{'a':1}"} {
		if _, err := s.Append(ctx(t), chat.Message{RoomID: "badmeta", ConnectionID: "c", Message: "m", Metadata: json.RawMessage(meta)}); !errors.Is(err, chat.ErrInvalidMetadata) {
			t.Errorf("Append with metadata %q: %v; want an error wrapping chat.ErrInvalidMetadata", meta, err)
		}
	}
	if got := history(t, s, "badmeta", 0, 0); len(got) != 0 {
		t.Errorf("History holds %d messages; nothing of a refused message may be stored", len(got))
	}
}

// testMetadataBufferReused checks that the store keeps its own copy of
// the metadata: a caller that reuses its buffer after Append returns does
// not change what was stored.
func testMetadataBufferReused(t *testing.T, s chat.Store) {
	buf := []byte(`{"v":"sent"}`)
	appendOne(t, s, chat.Message{RoomID: "reuse", ConnectionID: "c", Message: "m", Metadata: buf})
	copy(buf, `{"v":"XXXX"}`)
	got := history(t, s, "reuse", 0, 0)
	if len(got) != 1 || string(got[0].Metadata) != `{"v":"sent"}` {
		t.Errorf("History after the caller reused its buffer: %q, want the metadata as sent", got[0].Metadata)
	}
}

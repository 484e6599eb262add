package chattest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

func testAppendThenHistory(t *testing.T, s chat.Store) {
	in := []chat.Message{
		{RoomID: "room-a", ConnectionID: "conn-1", UserID: "user-1", Message: "hello"},
		{RoomID: "room-a", ConnectionID: "conn-2", Message: "anonymous, no user", Metadata: json.RawMessage(`{"k":"v"}`)},
		{RoomID: "room-a", ConnectionID: "conn-1", UserID: "user-1", Message: ""},
	}
	var stored []protocol.StoredChatMessage
	for _, m := range in {
		before := time.Now().UnixMilli()
		got := appendOne(t, s, m)
		after := time.Now().UnixMilli()
		if got.CreatedAt < before || got.CreatedAt > after {
			t.Errorf("CreatedAt = %d, want Unix milliseconds in [%d, %d]", got.CreatedAt, before, after)
		}
		want := protocol.StoredChatMessage{
			ID: got.ID, RoomID: m.RoomID, ConnectionID: m.ConnectionID, UserID: m.UserID,
			Message: m.Message, Metadata: m.Metadata, CreatedAt: got.CreatedAt,
		}
		sameMessage(t, got, want)
		stored = append(stored, got)
	}
	requireUnique(t, stored)
	sameMessages(t, history(t, s, "room-a", 10, 0), stored)

	// An empty UserID is omitted on the wire, never sent as "".
	raw, err := json.Marshal(history(t, s, "room-a", 10, 0)[1])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "userId") {
		t.Errorf("anonymous message encodes as %s; want no userId", raw)
	}
}

// window is the reference paging rule (MemoryStore's): skip offset newest
// of n messages, return the limit before them. It gives the indices
// [begin, end) counted from the oldest.
func window(n, limit, offset int) (begin, end int) {
	end = max(n-max(offset, 0), 0)
	return max(end-limit, 0), end
}

func testPaging(t *testing.T, s chat.Store) {
	const n = 100
	all := seed(t, s, "paging", n)
	requireUnique(t, all)
	cases := []struct {
		name          string
		limit, offset int
		begin, end    int // expected indices from the oldest
	}{
		{"newest page", 20, 0, 80, 100},
		{"third page", 20, 40, 40, 60},
		{"last partial page", 20, 90, 0, 10},
		{"offset at the oldest", 20, 100, 0, 0},
		{"offset past the oldest", 20, 150, 0, 0},
		{"limit larger than room", 150, 0, 0, 100},
		{"newest one", 1, 0, 99, 100},
		{"oldest one", 1, 99, 0, 1},
		{"limit straddles the oldest", 30, 80, 0, 20},
		{"negative offset means none", 10, -3, 90, 100},
		{"zero limit means default", 0, 10, 0, 90},
		{"negative limit means default", -5, 0, 0, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.limit > 0 {
				b, e := window(n, c.limit, c.offset)
				if b != c.begin || e != c.end {
					t.Fatalf("case table disagrees with the reference rule: [%d,%d) vs [%d,%d)", c.begin, c.end, b, e)
				}
			}
			sameMessages(t, history(t, s, "paging", c.limit, c.offset), all[c.begin:c.end])
		})
	}
	// Walking back page by page visits every message once, oldest first
	// within a page.
	var walked []protocol.StoredChatMessage
	for offset := 0; ; offset += 7 {
		page := history(t, s, "paging", 7, offset)
		if len(page) == 0 {
			break
		}
		walked = append(page, walked...)
	}
	sameMessages(t, walked, all)
}

func testDefaultLimit(t *testing.T, s chat.Store) {
	n := chat.DefaultHistoryLimit + 50
	all := seed(t, s, "default-limit", n)
	for _, limit := range []int{0, -1} {
		sameMessages(t, history(t, s, "default-limit", limit, 0), all[n-chat.DefaultHistoryLimit:])
	}
}

func testEmptyRoom(t *testing.T, s chat.Store) {
	if got := history(t, s, "nobody-here", 10, 0); len(got) != 0 {
		t.Fatalf("History of an empty room = %q, want none", texts(got))
	}
	seed(t, s, "somebody-here", 3)
	if got := history(t, s, "nobody-here", 0, 0); len(got) != 0 {
		t.Fatalf("History of an empty room = %q, want none", texts(got))
	}
}

func testRoomIsolation(t *testing.T, s chat.Store) {
	// Rooms that a case-insensitive or space-padding collation would
	// conflate are still different rooms.
	rooms := []string{"room", "Room", "room ", "room-2", "ロビー", "ﾛﾋﾞｰ"}
	want := make(map[string][]protocol.StoredChatMessage)
	for i := range 3 {
		for _, r := range rooms {
			m := appendOne(t, s, chat.Message{RoomID: r, ConnectionID: "c", Message: r + "#" + string(rune('0'+i))})
			want[r] = append(want[r], m)
		}
	}
	for _, r := range rooms {
		sameMessages(t, history(t, s, r, 0, 0), want[r])
	}
}

func testMetadata(t *testing.T, s chat.Store) {
	cases := []struct {
		name string
		meta string
	}{
		{"absent", ""},
		{"empty object", `{}`},
		{"flat", `{"a":1,"b":"two","c":true,"d":null}`},
		{"nested", `{"reply":{"to":"42","quote":{"text":"hi","at":[1,2,3]}},"tags":["x","y"]}`},
		{"unicode", `{"name":"Zoë","emoji":"😀","cjk":"漢字","escaped":"\u00e9\n\t\"q\""}`},
		{"whitespace and key order", "{ \"z\" : 1 ,\n \"a\" : [ ] }"},
		{"numbers", `{"int":9007199254740991,"neg":-3,"frac":0.25,"exp":1e3}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			room := "meta-" + c.name
			m := appendOne(t, s, chat.Message{RoomID: room, ConnectionID: "c", Message: "m", Metadata: json.RawMessage(c.meta)})
			got := history(t, s, room, 0, 0)
			if len(got) != 1 {
				t.Fatalf("History has %d messages, want 1", len(got))
			}
			want := m
			want.Metadata = json.RawMessage(c.meta)
			sameMessage(t, m, want)
			sameMessage(t, got[0], want)
			if c.meta == "" && len(got[0].Metadata) != 0 {
				t.Errorf("absent metadata came back as %q, want empty", got[0].Metadata)
			}
		})
	}
}

// unicodeText returns exactly n bytes of text mixing 1-, 2-, 3- and
// 4-byte UTF-8 characters.
func unicodeText(n int) string {
	var b strings.Builder
	pieces := []string{"a", "é", "€", "😀", " ", "漢"}
	for i := 0; ; i++ {
		p := pieces[i%len(pieces)]
		if b.Len()+len(p) > n {
			break
		}
		b.WriteString(p)
	}
	for b.Len() < n {
		b.WriteByte('.')
	}
	return b.String()
}

// testLargeMessage stores the largest message, metadata and room id the
// server accepts.
func testLargeMessage(t *testing.T, s chat.Store) {
	text := unicodeText(16 << 10)
	meta, err := json.Marshal(map[string]string{"blob": unicodeText(8<<10 - 12)})
	if err != nil {
		t.Fatal(err)
	}
	if len(meta) < 8<<10-4 || len(meta) > 8<<10+4 {
		t.Fatalf("test bug: metadata is %d bytes", len(meta))
	}
	// The largest room id the protocol allows: 256 bytes.
	room := "large-" + strings.Repeat("r", 250)
	m := appendOne(t, s, chat.Message{RoomID: room, ConnectionID: "c", UserID: "u", Message: text, Metadata: meta})
	got := history(t, s, room, 0, 0)
	if len(got) != 1 {
		t.Fatalf("History has %d messages, want 1", len(got))
	}
	if got[0].Message != text {
		t.Fatalf("16 KiB message came back as %d bytes, want %d identical bytes", len(got[0].Message), len(text))
	}
	sameMessage(t, got[0], m)
}

func testSameMillisecond(t *testing.T, s chat.Store) {
	// Appends faster than the clock ticks share CreatedAt; their order must
	// still be the order they were appended in.
	var want []protocol.StoredChatMessage
	ties := 0
	for i := range 50 {
		m := appendOne(t, s, chat.Message{RoomID: "same-ms", ConnectionID: "c", Message: "serial-" + string(rune('A'+i%26)) + strings.Repeat("!", i/26)})
		if len(want) > 0 {
			prev := want[len(want)-1]
			if m.CreatedAt < prev.CreatedAt {
				t.Fatalf("CreatedAt went backwards: %d after %d", m.CreatedAt, prev.CreatedAt)
			}
			if m.CreatedAt == prev.CreatedAt {
				ties++
			}
		}
		want = append(want, m)
	}
	if b, ok := s.(chat.BatchAppender); ok {
		msgs := make([]chat.Message, 50)
		for i := range msgs {
			msgs[i] = chat.Message{RoomID: "same-ms", ConnectionID: "c", Message: "batch-" + string(rune('a'+i%26)) + strings.Repeat("?", i/26)}
		}
		got, err := b.AppendBatch(ctx(t), msgs)
		if err != nil {
			t.Fatalf("AppendBatch: %v", err)
		}
		for i := 1; i < len(got); i++ {
			if got[i].CreatedAt == got[i-1].CreatedAt {
				ties++
			}
		}
		want = append(want, got...)
	}
	t.Logf("%d neighbours shared a millisecond", ties)
	requireUnique(t, want)
	sameMessages(t, history(t, s, "same-ms", len(want), 0), want)
}

package chattest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// historyBefore calls HistoryBefore and fails t on an error or a nil
// slice (which would encode as JSON null, not an array).
func historyBefore(t *testing.T, p chat.Pager, room, before string, limit int) ([]protocol.StoredChatMessage, bool) {
	t.Helper()
	got, more, err := p.HistoryBefore(ctx(t), room, before, limit)
	if err != nil {
		t.Fatalf("HistoryBefore(%q, %q, %d): %v", room, before, limit, err)
	}
	if got == nil {
		t.Fatalf("HistoryBefore(%q, %q, %d) returned a nil slice; want a non-nil (JSON array) slice", room, before, limit)
	}
	return got, more
}

func requirePager(t *testing.T, s chat.Store) chat.Pager {
	t.Helper()
	p, ok := s.(chat.Pager)
	if !ok {
		t.Skip("store does not implement chat.Pager")
	}
	return p
}

func testHistoryBefore(t *testing.T, s chat.Store) {
	p := requirePager(t, s)
	const n, limit = 250, 100
	const room = "pager"
	all := seed(t, s, room, n)
	requireUnique(t, all)

	// Scrolling back from the newest: 100, 100, 50, each oldest first,
	// each the page History gives for the same offset.
	wantMore := []bool{true, true, false}
	var walked []protocol.StoredChatMessage
	before := ""
	for page := 0; ; page++ {
		got, more := historyBefore(t, p, room, before, limit)
		if page == len(wantMore) {
			if len(got) != 0 || more {
				t.Fatalf("page %d, before the oldest message: %d messages, hasMore %v; want none, false", page, len(got), more)
			}
			break
		}
		begin, end := window(n, limit, page*limit)
		if more != wantMore[page] {
			t.Errorf("page %d: hasMore = %v, want %v", page, more, wantMore[page])
		}
		sameMessages(t, got, all[begin:end])
		sameMessages(t, got, history(t, s, room, limit, page*limit))
		walked = append(got, walked...)
		before = got[0].ID
	}
	requireUnique(t, walked) // no page overlaps another
	sameMessages(t, walked, all)

	// hasMore is exact at the boundary: exactly limit messages left means
	// none remain after them.
	cases := []struct {
		name       string
		before     int // index in all; -1 for the newest
		limit      int
		begin, end int
		more       bool
	}{
		{"exactly limit left", 100, 100, 0, 100, false},
		{"one more than limit left", 101, 100, 1, 101, true},
		{"one older message", 1, 10, 0, 1, false},
		{"limit one", 200, 1, 199, 200, true},
		{"zero limit means default", -1, 0, n - chat.DefaultHistoryLimit, n, true},
		{"negative limit means default", -1, -7, n - chat.DefaultHistoryLimit, n, true},
		{"limit larger than room", -1, 1000, 0, n, false},
		{"huge limit", 50, int(^uint(0) >> 1), 0, 50, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := ""
			if c.before >= 0 {
				before = all[c.before].ID
			}
			got, more := historyBefore(t, p, room, before, c.limit)
			sameMessages(t, got, all[c.begin:c.end])
			if more != c.more {
				t.Errorf("hasMore = %v, want %v", more, c.more)
			}
		})
	}

	if got, more := historyBefore(t, p, "pager-empty-room", "", 10); len(got) != 0 || more {
		t.Errorf("empty room: %d messages, hasMore %v; want none, false", len(got), more)
	}
}

func testHistoryBeforeBadCursor(t *testing.T, s chat.Store) {
	p := requirePager(t, s)
	seed(t, s, "cursor", 5)
	for _, id := range []string{"no-such-message", "not a number", "' OR '1'='1", "1; DROP TABLE x", "🙂"} {
		for _, room := range []string{"cursor", "cursor-empty"} {
			got, more, err := p.HistoryBefore(ctx(t), room, id, 10)
			if !errors.Is(err, chat.ErrBadCursor) {
				t.Errorf("HistoryBefore(%q, %q) = %d messages, %v, %v; want an error wrapping chat.ErrBadCursor", room, id, len(got), more, err)
			}
		}
	}
	// The store still works after refusing a cursor.
	if got, _ := historyBefore(t, p, "cursor", "", 10); len(got) != 5 {
		t.Fatalf("HistoryBefore after a bad cursor = %d messages, want 5", len(got))
	}
}

func testHistoryBeforeRoomIsolation(t *testing.T, s chat.Store) {
	p := requirePager(t, s)
	// Rooms that a case-insensitive or space-padding collation would
	// conflate, their messages interleaved in the store's order.
	rooms := []string{"iso", "ISO", "iso ", "iso-2"}
	const perRoom = 12
	want := make(map[string][]protocol.StoredChatMessage)
	var order []protocol.StoredChatMessage // every message, in append order
	for i := range perRoom {
		for _, r := range rooms {
			m := appendOne(t, s, chat.Message{RoomID: r, ConnectionID: "c", Message: fmt.Sprintf("%s#%d", r, i)})
			want[r] = append(want[r], m)
			order = append(order, m)
		}
	}
	for _, r := range rooms {
		var walked []protocol.StoredChatMessage
		before := ""
		for pages := 0; ; pages++ {
			if pages > perRoom {
				t.Fatalf("room %q: paging did not end", r)
			}
			got, more := historyBefore(t, p, r, before, 5)
			for _, m := range got {
				if m.RoomID != r {
					t.Fatalf("room %q: page holds %q of room %q", r, m.Message, m.RoomID)
				}
			}
			walked = append(got, walked...)
			if !more {
				break
			}
			before = got[0].ID
		}
		sameMessages(t, walked, want[r])
	}

	// A cursor from another room bounds by the store's order and never
	// lets that room's messages in.
	cursor := want["ISO"][6]
	var older []protocol.StoredChatMessage
	for _, m := range order {
		if m.ID == cursor.ID {
			break
		}
		if m.RoomID == "iso" {
			older = append(older, m)
		}
	}
	got, more := historyBefore(t, p, "iso", cursor.ID, 100)
	if more {
		t.Error("hasMore = true with every older message returned")
	}
	sameMessages(t, got, older)
}

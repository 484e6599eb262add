package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/openlivesync/livesync/chat"
)

func TestHistoryBeforeMigratedIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	// Node.js IDs, one numeric ('500') that is not its row's seq.
	exec(t, path,
		`CREATE TABLE openlivesync_chat (id TEXT PRIMARY KEY, room_id TEXT NOT NULL, connection_id TEXT NOT NULL,
			user_id TEXT, message TEXT NOT NULL, metadata TEXT, created_at INTEGER NOT NULL)`,
		`INSERT INTO openlivesync_chat VALUES
			('node-c', 'lobby', 'c', NULL, 'third', NULL, 3000),
			('node-a', 'lobby', 'c', NULL, 'first', NULL, 1000),
			('500', 'lobby', 'c', NULL, 'second-a', NULL, 2000),
			('node-b', 'lobby', 'c', NULL, 'second-b', NULL, 2000),
			('node-x', 'other', 'c', NULL, 'elsewhere', NULL, 1500)`,
	)
	s, err := New(testCtx(t), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(t)
	for _, text := range []string{"fourth", "fifth"} {
		if _, err := s.Append(ctx, chat.Message{RoomID: "lobby", ConnectionID: "c", Message: text}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		before string
		limit  int
		want   string
		more   bool
	}{
		{"", 2, "[fourth fifth]", true},
		{"501", 2, "[second-b third]", true},
		{"node-b", 2, "[first second-a]", false},
		{"500", 2, "[first]", false}, // looked up by id, not read as seq 500
		{"node-a", 2, "[]", false},
		{"node-x", 10, "[first]", false}, // another room's message bounds by order
	}
	for _, c := range cases {
		got, more, err := s.HistoryBefore(ctx, "lobby", c.before, c.limit)
		if err != nil {
			t.Fatalf("HistoryBefore(%q): %v", c.before, err)
		}
		var texts []string
		for _, m := range got {
			texts = append(texts, m.Message)
		}
		if fmt.Sprint(texts) != c.want || more != c.more {
			t.Errorf("HistoryBefore(%q, %d) = %v, %v; want %s, %v", c.before, c.limit, texts, more, c.want, c.more)
		}
	}
	for _, bad := range []string{"999", "NODE-A", "node-a ", " 501", "501.0"} {
		if _, _, err := s.HistoryBefore(ctx, "lobby", bad, 2); !errors.Is(err, chat.ErrBadCursor) {
			t.Errorf("HistoryBefore(%q): %v; want chat.ErrBadCursor", bad, err)
		}
	}
}

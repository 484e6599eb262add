package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newTestStore opens a store on a file of its own.
func newTestStore(t testing.TB, opts *Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chat.db")
	s, err := New(testCtx(t), path, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func exec(t testing.TB, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.ExecContext(testCtx(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestConformance(t *testing.T) {
	chattest.Run(t, func(t *testing.T) chat.Store {
		s, _ := newTestStore(t, nil)
		return s
	})
}

func TestWALAndDurability(t *testing.T) {
	s, _ := newTestStore(t, nil)
	ctx := testCtx(t)
	var mode string
	if err := s.reader.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var sync int
	if err := s.writer.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Fatalf("writer synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	if _, err := s.reader.ExecContext(ctx, "DELETE FROM "+quote(s.table)); err == nil {
		t.Fatal("a reader connection could write")
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s, err := New(testCtx(t), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Append(testCtx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = New(testCtx(t), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.History(testCtx(t), "r", 0, 0)
	if err != nil || len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("History after reopening = %v, %v", got, err)
	}
}

func TestTwoStoresShareAFile(t *testing.T) {
	// Two stores on one file stand in for two processes: each has its own
	// writer connection, and the write lock keeps their seqs apart.
	path := filepath.Join(t.TempDir(), "chat.db")
	var stores []*Store
	for range 2 {
		s, err := New(testCtx(t), path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := stores[w%2].Append(testCtx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: fmt.Sprintf("w%d/%d", w, i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := stores[0].History(testCtx(t), "r", 1000, 0)
	if err != nil || len(got) != 200 {
		t.Fatalf("History = %d messages, %v; want 200", len(got), err)
	}
	seen := map[string]bool{}
	for _, m := range got {
		if seen[m.ID] {
			t.Fatalf("ID %s used twice", m.ID)
		}
		seen[m.ID] = true
	}
}

func TestMigrateNodeTable(t *testing.T) {
	for _, metaType := range []string{"TEXT", "JSON"} {
		t.Run(metaType, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.db")
			// The Node.js package's schema, with rows inserted out of
			// created_at order, a tie, and a numeric ID.
			exec(t, path,
				`CREATE TABLE openlivesync_chat (id TEXT PRIMARY KEY, room_id TEXT NOT NULL, connection_id TEXT NOT NULL,
					user_id TEXT, message TEXT NOT NULL, metadata `+metaType+`, created_at INTEGER NOT NULL)`,
				`CREATE INDEX idx_openlivesync_chat_room_created ON openlivesync_chat (room_id, created_at)`,
				`INSERT INTO openlivesync_chat VALUES
					('node-c', 'lobby', 'c1', 'u1', 'third', '{"n": 3}', 3000),
					('node-a', 'lobby', 'c1', NULL, 'first', NULL, 1000),
					('500', 'lobby', 'c2', 'u2', 'second-b', NULL, 2000),
					('node-b', 'lobby', 'c2', 'u2', 'second-a', '{}', 2000),
					('node-x', 'other', 'c3', NULL, 'elsewhere', NULL, 1500)`,
			)
			for open := range 2 { // the second open finds the table migrated
				s, err := New(testCtx(t), path, nil)
				if err != nil {
					t.Fatalf("open %d: %v", open, err)
				}
				got, err := s.History(testCtx(t), "lobby", 4, open) // skip what earlier opens appended
				if err != nil {
					t.Fatal(err)
				}
				var line []string
				for _, m := range got {
					line = append(line, m.ID+":"+m.Message+":"+m.UserID+":"+string(m.Metadata))
				}
				want := `[node-a:first:: 500:second-b:u2: node-b:second-a:u2:{} node-c:third:u1:{"n": 3}]`
				if fmt.Sprint(line) != want {
					t.Fatalf("open %d: migrated history = %v\nwant %s", open, line, want)
				}
				m, err := s.Append(testCtx(t), chat.Message{RoomID: "lobby", ConnectionID: "c9", Message: "new"})
				if err != nil {
					t.Fatalf("append after migration: %v", err)
				}
				if m.ID != fmt.Sprint(501+open) {
					t.Fatalf("new ID = %q, want %d: numbering continues past the numeric old ID", m.ID, 501+open)
				}
				if other, err := s.History(testCtx(t), "other", 0, 0); err != nil || len(other) != 1 || other[0].ID != "node-x" {
					t.Fatalf("other room after migration = %v, %v", other, err)
				}
				s.Close()
			}
		})
	}
}

func TestNotAChatTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	exec(t, path, `CREATE TABLE openlivesync_chat (id TEXT PRIMARY KEY, name TEXT)`)
	if _, err := New(testCtx(t), path, nil); err == nil || !strings.Contains(err.Error(), "not a chat table") {
		t.Fatalf("New on an unrelated table: %v; want a refusal", err)
	}
}

func TestRefusedPathsAndNames(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, path, table, want string
	}{
		{"empty path", "", "", "empty database path"},
		{"memory", ":memory:", "", "in-memory"},
		{"memory URI", "file::memory:?cache=shared", "", "in-memory"},
		{"memory mode", "file:x.db?mode=memory", "", "in-memory"},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "chat.db"), "", "sqlite chat store"},
		{"bad table", filepath.Join(dir, "a.db"), "chat; DROP TABLE x", "invalid table name"},
		{"long table", filepath.Join(dir, "a.db"), strings.Repeat("t", 64), "invalid table name"},
		{"digit first", filepath.Join(dir, "a.db"), "1chat", "invalid table name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(testCtx(t), c.path, &Options{TableName: c.table})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New(%q, table %q) = %v; want an error containing %q", c.path, c.table, err, c.want)
			}
		})
	}
}

func TestCustomTableName(t *testing.T) {
	s, path := newTestStore(t, &Options{TableName: "Team_Chat_2"})
	if _, err := s.Append(testCtx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}); err != nil {
		t.Fatal(err)
	}
	exec(t, path, `SELECT count(*) FROM "Team_Chat_2"`)
}

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
	"github.com/openlivesync/livesync/chat/internal/storetest"
)

// newTestStore opens a store on a file of its own.
func newTestStore(t testing.TB, opts *Options) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chat.db")
	return openFile(t, path, opts)
}

// openFile opens a store on the file at path.
func openFile(t testing.TB, path string, opts *Options) *Store {
	t.Helper()
	return storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, path, opts) })
}

// exec runs statements on a connection of its own, for setting up and
// inspecting tables behind the store's back.
func exec(t testing.TB, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.ExecContext(storetest.Ctx(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestConformance(t *testing.T) {
	chattest.Run(t, func(t *testing.T) chat.Store { return newTestStore(t, nil) })
}

func BenchmarkStore(b *testing.B) {
	chattest.Bench(b, func(b *testing.B) chat.Store { return newTestStore(b, nil) })
}

func TestWALAndDurability(t *testing.T) {
	s := newTestStore(t, nil)
	ctx := storetest.Ctx(t)
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
	s := openFile(t, path, nil)
	m, err := s.Append(storetest.Ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := openFile(t, path, nil).History(storetest.Ctx(t), "r", 0, 0)
	if err != nil || len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("History after reopening = %v, %v", got, err)
	}
}

func TestTwoStoresShareAFile(t *testing.T) {
	// Two stores on one file stand in for two processes: each has its own
	// writer connection, and the write lock keeps their seqs apart.
	path := filepath.Join(t.TempDir(), "chat.db")
	stores := []*Store{openFile(t, path, nil), openFile(t, path, nil)}
	ctx := storetest.Ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := stores[w%2].Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: fmt.Sprintf("w%d/%d", w, i)}); err != nil {
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
	got, err := stores[0].History(ctx, "r", 1000, 0)
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

// nodeTable creates, in a new file, the default table with the Node.js
// package's schema, metadata of type metaType, holding
// storetest.NodeRows, and returns the file's path.
func nodeTable(t *testing.T, metaType string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chat.db")
	exec(t, path,
		`CREATE TABLE openlivesync_chat (id TEXT PRIMARY KEY, room_id TEXT NOT NULL, connection_id TEXT NOT NULL,
			user_id TEXT, message TEXT NOT NULL, metadata `+metaType+`, created_at INTEGER NOT NULL)`,
		`CREATE INDEX idx_openlivesync_chat_room_created ON openlivesync_chat (room_id, created_at)`,
		`INSERT INTO openlivesync_chat VALUES `+storetest.NodeRows,
	)
	return path
}

func TestMigrateNodeTable(t *testing.T) {
	for _, metaType := range []string{"TEXT", "JSON"} {
		t.Run(metaType, func(t *testing.T) {
			path := nodeTable(t, metaType)
			storetest.CheckMigration(t, func(t *testing.T) chat.Store { return openFile(t, path, nil) })
		})
	}
}

func TestHistoryBeforeMigratedIDs(t *testing.T) {
	storetest.CheckMigratedPaging(t, openFile(t, nodeTable(t, "TEXT"), nil))
}

func TestDeletedMigratedIDsStayCursors(t *testing.T) {
	path := nodeTable(t, "TEXT")
	storetest.CheckDeletedMigratedCursors(t, openFile(t, path, nil))
}

func TestUnreadableMetadata(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openFile(t, path, nil)
	exec(t, path, `INSERT INTO openlivesync_chat (id, room_id, connection_id, message, metadata, created_at)
		VALUES ('junk', 'junk-room', 'c', 'm', '{not json', 1)`)
	storetest.CheckUnreadableMetadata(t, s, "junk-room")
}

func TestNotAChatTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.db")
	exec(t, path, `CREATE TABLE openlivesync_chat (id TEXT PRIMARY KEY, name TEXT)`)
	if _, err := New(storetest.Ctx(t), path, nil); err == nil || !strings.Contains(err.Error(), "not a chat table") {
		t.Fatalf("New on an unrelated table: %v; want a refusal", err)
	}
}

func TestRefusedPaths(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, path, want string }{
		{"empty path", "", "empty database path"},
		{"memory", ":memory:", "in-memory"},
		{"memory URI", "file::memory:?cache=shared", "in-memory"},
		{"memory mode", "file:x.db?mode=memory", "in-memory"},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "chat.db"), "sqlite chat store: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(storetest.Ctx(t), c.path, nil); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New(%q) = %v; want an error containing %q", c.path, err, c.want)
			}
		})
	}
}

func TestTableNames(t *testing.T) {
	storetest.CheckTableNames(t,
		func(t *testing.T, table string) chat.Store { return newTestStore(t, &Options{TableName: table}) },
		func(ctx context.Context, table string) error {
			_, err := New(ctx, filepath.Join(t.TempDir(), "no", "such", "dir", "chat.db"), &Options{TableName: table})
			return err
		})
}

func TestBadMessageFailsOnlyItsCaller(t *testing.T) {
	// A trigger refuses one message, failing the whole group commit; its
	// other callers must be stored by a retry.
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openFile(t, path, nil)
	exec(t, path, `CREATE TRIGGER refuse_bad BEFORE INSERT ON `+quote(DefaultTableName)+`
		WHEN NEW.message = 'refused by the database' BEGIN SELECT RAISE(ABORT, 'refused'); END`)
	storetest.CheckBadMessageFailsOnlyItsCaller(t, s, chat.Message{RoomID: "r", ConnectionID: "c", Message: "refused by the database"})
}

func TestAppendFailsByItsDeadlineWhenTheFileIsLocked(t *testing.T) {
	// Another connection holds the file's write lock; the store's busy
	// timeout (10 s) must not hold the append past its deadline.
	path := filepath.Join(t.TempDir(), "chat.db")
	s := openFile(t, path, nil)
	ctx := storetest.Ctx(t)
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "first"}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	locker, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	if _, err := locker.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	deadline, _ := short.Deadline()
	_, err = s.Append(short, chat.Message{RoomID: "r", ConnectionID: "c", Message: "locked out"})
	if err == nil {
		t.Fatal("Append succeeded with the file locked")
	}
	t.Logf("Append with the file locked: %v", err)
	if late := time.Since(deadline); late > 5*time.Second {
		t.Errorf("Append failed %v after its deadline", late)
	}

	if _, err := locker.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "after"}); err != nil {
		t.Fatalf("Append once the lock is released: %v", err)
	}
	got, err := s.History(ctx, "r", 0, 0)
	if err != nil || len(got) != 2 || got[0].Message != "first" || got[1].Message != "after" {
		t.Fatalf("History = %+v, %v; want first, after: the failed append is not stored", got, err)
	}
}

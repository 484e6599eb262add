package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exec runs statements on a connection of its own, for setting up and
// inspecting tables behind the store's back.
func exec(t testing.TB, dsn string, stmts ...string) {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// dropOnCleanup drops table when the test ends.
func dropOnCleanup(t testing.TB, dsn, table string) {
	t.Cleanup(func() { exec(t, dsn, `DROP TABLE IF EXISTS `+quote(table)+` CASCADE`) })
}

// newTestStore opens a store on a table of its own.
func newTestStore(t testing.TB, opts *Options) (*Store, string) {
	t.Helper()
	dsn := testsvc.PostgresDSN(t)
	o := Options{TableName: testsvc.TableName(t, "olschat")}
	if opts != nil {
		o = *opts
	}
	dropOnCleanup(t, dsn, o.TableName)
	s, err := New(testCtx(t), dsn, &o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func TestConformance(t *testing.T) {
	chattest.Run(t, func(t *testing.T) chat.Store {
		s, _ := newTestStore(t, nil)
		return s
	})
}

func TestTableNames(t *testing.T) {
	// In valid names, %s becomes 8 random hex digits so runs do not collide.
	cases := []struct {
		name  string
		valid bool
	}{
		{"chat_%s", true},
		{"_chat_2_%s", true},
		{"MixedCase_%s", true},
		{"t%s" + strings.Repeat("x", 54), true}, // 63 characters
		{"t" + strings.Repeat("x", 63), false},
		{"", true}, // the default; only checked without a database
		{"1chat", false},
		{"chat-log", false},
		{"chat;DROP TABLE x", false},
		{`chat"`, false},
		{"schema.chat", false},
		{"chät", false},
		{" chat", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !c.valid {
				// Refused before any connection is attempted.
				_, err := New(testCtx(t), "postgres://nobody@127.0.0.1:1/none", &Options{TableName: c.name})
				if err == nil || !strings.Contains(err.Error(), "invalid table name") {
					t.Fatalf("New with table %q: %v; want an invalid table name error", c.name, err)
				}
				return
			}
			if c.name == "" {
				_, err := New(testCtx(t), "postgres://nobody@127.0.0.1:1/none", nil)
				if err == nil || strings.Contains(err.Error(), "invalid table name") {
					t.Fatalf("New with the default table name: %v; want a connection error", err)
				}
				return
			}
			table := fmt.Sprintf(c.name, randomHex(t))
			s, _ := newTestStore(t, &Options{TableName: table})
			if _, err := s.Append(testCtx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}); err != nil {
				t.Fatalf("Append to table %q: %v", table, err)
			}
			if got, err := s.History(testCtx(t), "r", 0, 0); err != nil || len(got) != 1 {
				t.Fatalf("History of table %q = %v, %v", table, got, err)
			}
		})
	}
}

func randomHex(t testing.TB) string {
	name := testsvc.TableName(t, "x")
	return name[len(name)-8:]
}

func TestDerivedNamesStayDistinct(t *testing.T) {
	long := "t" + strings.Repeat("x", 62)
	for _, suffix := range []string{"_room_seq_idx", "_seq_seq", "_seq_key"} {
		got := derivedName(long, suffix)
		if len(got) > maxIdentLen || !strings.HasSuffix(got, suffix) || got == long {
			t.Errorf("derivedName(63 chars, %q) = %q", suffix, got)
		}
	}
	if got := derivedName("chat", "_seq_key"); got != "chat_seq_key" {
		t.Errorf("derivedName(chat) = %q", got)
	}
}

func TestMigrateNodeTable(t *testing.T) {
	for _, metaType := range []string{"JSONB", "JSON", "TEXT"} {
		t.Run(metaType, func(t *testing.T) {
			dsn := testsvc.PostgresDSN(t)
			table := testsvc.TableName(t, "olsmig")
			dropOnCleanup(t, dsn, table)
			q := quote(table)
			// The Node.js package's schema, with rows inserted out of
			// created_at order, a tie, and a numeric ID.
			exec(t, dsn,
				fmt.Sprintf(`CREATE TABLE %s (id TEXT PRIMARY KEY, room_id TEXT NOT NULL, connection_id TEXT NOT NULL,
					user_id TEXT, message TEXT NOT NULL, metadata %s, created_at BIGINT NOT NULL)`, q, metaType),
				fmt.Sprintf(`CREATE INDEX %s ON %s (room_id, created_at)`, quote(table+"_rc"), q),
				fmt.Sprintf(`INSERT INTO %s VALUES
					('node-c', 'lobby', 'c1', 'u1', 'third', '{"n": 3}', 3000),
					('node-a', 'lobby', 'c1', NULL, 'first', NULL, 1000),
					('500', 'lobby', 'c2', 'u2', 'second-b', NULL, 2000),
					('node-b', 'lobby', 'c2', 'u2', 'second-a', '{}', 2000),
					('node-x', 'other', 'c3', NULL, 'elsewhere', NULL, 1500)`, q),
			)
			for open := range 2 { // the second open finds the table migrated
				s, err := New(testCtx(t), dsn, &Options{TableName: table})
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
				want := "[node-a:first:: 500:second-b:u2: node-b:second-a:u2:{} node-c:third:u1:{\"n\":3}]"
				if fmt.Sprint(line) != want {
					t.Fatalf("open %d: migrated history = %v\nwant %s", open, line, want)
				}
				m, err := s.Append(testCtx(t), chat.Message{RoomID: "lobby", ConnectionID: "c9", Message: "new", Metadata: []byte(`{"new":true}`)})
				if err != nil {
					t.Fatalf("append after migration: %v", err)
				}
				if m.ID != fmt.Sprint(501+open) {
					t.Fatalf("new ID = %q, want %d: the sequence continues past the numeric old ID", m.ID, 501+open)
				}
				got, err = s.History(testCtx(t), "lobby", 1, 0)
				if err != nil || len(got) != 1 || got[0].ID != m.ID {
					t.Fatalf("newest after migration = %v, %v; want %s", got, err, m.ID)
				}
				s.Close()
			}
		})
	}
}

func TestNotAChatTable(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	table := testsvc.TableName(t, "olsother")
	dropOnCleanup(t, dsn, table)
	exec(t, dsn, `CREATE TABLE `+quote(table)+` (id TEXT PRIMARY KEY, name TEXT)`)
	if _, err := New(testCtx(t), dsn, &Options{TableName: table}); err == nil || !strings.Contains(err.Error(), "not a chat table") {
		t.Fatalf("New on an unrelated table: %v; want a refusal", err)
	}
}

func TestBadMessageFailsOnlyItsCaller(t *testing.T) {
	s, _ := newTestStore(t, nil)
	ctx := testCtx(t)
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "m", Metadata: []byte(`{oops`)}); err == nil {
		t.Fatal("Append with invalid metadata JSON succeeded")
	}
	// PostgreSQL refuses NUL in text. Whatever batch the bad message lands
	// in, the others in it are still stored.
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprint("good ", i)
			if i%10 == 0 {
				text = "bad \x00 byte"
			}
			_, errs[i] = s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: text})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != (err != nil) {
			t.Errorf("append %d: err = %v", i, err)
		}
	}
	got, err := s.History(ctx, "r", 100, 0)
	if err != nil || len(got) != 36 {
		t.Fatalf("History = %d messages, %v; want the 36 good ones", len(got), err)
	}
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := New(ctx, "postgres://someone:s3cret-pw@127.0.0.1:1/db?sslmode=disable", nil)
	if err == nil {
		t.Fatal("New with nothing listening succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("New took %v to fail", time.Since(start))
	}
	_, err = New(context.Background(), "postgres://bad url", nil)
	if err == nil {
		t.Fatal("New with a malformed DSN succeeded")
	}
}

func TestSurvivesDroppedConnections(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	table := testsvc.TableName(t, "olsdrop")
	dropOnCleanup(t, dsn, table)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	s, err := New(testCtx(t), dsn+sep+"application_name="+table, &Options{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The server drops the connections just after they were used, too
	// soon for pgxpool's ping of connections idle for a second: the
	// store's look at the socket must find them closed.
	ctx := testCtx(t)
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.History(ctx, "r", 0, 0); err != nil {
		t.Fatal(err)
	}
	// Kill every connection of the store, as a server restart would.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
		WHERE application_name = $1`, table).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("found no connection of the store to terminate")
	}
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "again"}); err != nil {
		t.Fatalf("Append after the connections were dropped: %v", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1`, table); err != nil {
		t.Fatal(err)
	}
	got, err := s.History(ctx, "r", 0, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("History after the connections were dropped = %v, %v", got, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

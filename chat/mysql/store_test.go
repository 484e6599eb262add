package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openDB opens a connection pool of the test's own, for setting up and
// inspecting tables behind the store's back.
func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t testing.TB, dsn string, stmts ...string) {
	t.Helper()
	db := openDB(t, dsn)
	for _, q := range stmts {
		if _, err := db.ExecContext(testCtx(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func dropOnCleanup(t testing.TB, dsn, table string) {
	t.Cleanup(func() { exec(t, dsn, "DROP TABLE IF EXISTS "+quote(table)) })
}

// newTestStore opens a store on a table of its own.
func newTestStore(t testing.TB, opts *Options) (*Store, string) {
	t.Helper()
	dsn := testsvc.MySQLDSN(t)
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
		{"MixedCase_%s", true},
		{"t%s" + strings.Repeat("x", 54), true}, // 63 characters
		{"t" + strings.Repeat("x", 63), false},
		{"1chat", false},
		{"chat-log", false},
		{"chat`; DROP TABLE x; --", false},
		{"db.chat", false},
		{"chät", false},
		{"", true}, // the default; only checked without a database
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			unreachable := "nobody@tcp(127.0.0.1:1)/none?timeout=1s"
			if !c.valid {
				_, err := New(testCtx(t), unreachable, &Options{TableName: c.name})
				if err == nil || !strings.Contains(err.Error(), "invalid table name") {
					t.Fatalf("New with table %q: %v; want an invalid table name error", c.name, err)
				}
				return
			}
			if c.name == "" {
				_, err := New(testCtx(t), unreachable, nil)
				if err == nil || strings.Contains(err.Error(), "invalid table name") {
					t.Fatalf("New with the default table name: %v; want a connection error", err)
				}
				return
			}
			name := testsvc.TableName(t, "x")
			table := fmt.Sprintf(c.name, name[len(name)-8:])
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

func TestMigrateNodeTable(t *testing.T) {
	cases := []struct {
		name, roomType, metaType, roomIndex string
	}{
		{"varchar room, JSON metadata", "VARCHAR(255)", "JSON", "room_id"},
		{"text room, text metadata", "TEXT", "TEXT", "room_id(100)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn := testsvc.MySQLDSN(t)
			table := testsvc.TableName(t, "olsmig")
			dropOnCleanup(t, dsn, table)
			q := quote(table)
			// The Node.js package's schema, with rows inserted out of
			// created_at order, a tie, and a numeric ID.
			exec(t, dsn,
				fmt.Sprintf(`CREATE TABLE %s (id VARCHAR(255) PRIMARY KEY, room_id %s NOT NULL, connection_id VARCHAR(255) NOT NULL,
					user_id VARCHAR(255), message TEXT NOT NULL, metadata %s, created_at BIGINT NOT NULL,
					INDEX idx_room_created (%s, created_at)) DEFAULT CHARSET=utf8mb4`, q, c.roomType, c.metaType, c.roomIndex),
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
				want := `[node-a:first:: 500:second-b:u2: node-b:second-a:u2:{} node-c:third:u1:{"n": 3}]`
				if fmt.Sprint(line) != want {
					t.Fatalf("open %d: migrated history = %v\nwant %s", open, line, want)
				}
				m, err := s.Append(testCtx(t), chat.Message{RoomID: "lobby", ConnectionID: "c9", Message: "new", Metadata: []byte(`{"new":true}`)})
				if err != nil {
					t.Fatalf("append after migration: %v", err)
				}
				if m.ID != fmt.Sprint(501+open) {
					t.Fatalf("new ID = %q, want %d: AUTO_INCREMENT continues past the numeric old ID", m.ID, 501+open)
				}
				got, err = s.History(testCtx(t), "lobby", 1, 0)
				if err != nil || len(got) != 1 || got[0].ID != m.ID {
					t.Fatalf("newest after migration = %v, %v; want %s", got, err, m.ID)
				}
				if other, err := s.History(testCtx(t), "other", 0, 0); err != nil || len(other) != 1 {
					t.Fatalf("other room after migration = %v, %v", other, err)
				}
				s.Close()
			}
		})
	}
}

func TestResumesInterruptedMigration(t *testing.T) {
	dsn := testsvc.MySQLDSN(t)
	table := testsvc.TableName(t, "olsmig")
	dropOnCleanup(t, dsn, table)
	q := quote(table)
	// A crash after ADD COLUMN left seq NULL and not AUTO_INCREMENT.
	exec(t, dsn,
		`CREATE TABLE `+q+` (id VARCHAR(255) PRIMARY KEY, room_id VARCHAR(255) NOT NULL, connection_id VARCHAR(255) NOT NULL,
			user_id VARCHAR(255), message TEXT NOT NULL, metadata TEXT, created_at BIGINT NOT NULL)`,
		`INSERT INTO `+q+` VALUES ('b', 'r', 'c', NULL, 'second', NULL, 20), ('a', 'r', 'c', NULL, 'first', NULL, 10)`,
		`ALTER TABLE `+q+` ADD COLUMN seq BIGINT NULL`,
	)
	s, err := New(testCtx(t), dsn, &Options{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.Append(testCtx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "third"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.History(testCtx(t), "r", 0, 0)
	if err != nil || len(got) != 3 || got[0].ID != "a" || got[1].ID != "b" || got[2].ID != m.ID || m.ID != "3" {
		t.Fatalf("History = %+v, %v", got, err)
	}
}

func TestNotAChatTable(t *testing.T) {
	dsn := testsvc.MySQLDSN(t)
	table := testsvc.TableName(t, "olsother")
	dropOnCleanup(t, dsn, table)
	exec(t, dsn, "CREATE TABLE "+quote(table)+" (id VARCHAR(64) PRIMARY KEY, name TEXT)")
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
	// The schema refuses room IDs over 255 characters. Whatever batch the
	// bad message lands in, the others in it are still stored.
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := "r"
			if i%10 == 0 {
				room = strings.Repeat("r", 300)
			}
			_, errs[i] = s.Append(ctx, chat.Message{RoomID: room, ConnectionID: "c", Message: fmt.Sprint(i)})
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

func TestAutoIncrementStep(t *testing.T) {
	// Galera and multi-primary setups hand out every n-th value.
	dsn := testsvc.MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["auto_increment_increment"] = "3"
	table := testsvc.TableName(t, "olsstep")
	dropOnCleanup(t, dsn, table)
	s, err := New(testCtx(t), cfg.FormatDSN(), &Options{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.AppendBatch(testCtx(t), []chat.Message{{RoomID: "r", ConnectionID: "c", Message: "a"}, {RoomID: "r", ConnectionID: "c", Message: "b"}, {RoomID: "r", ConnectionID: "c", Message: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].ID+","+out[1].ID+","+out[2].ID != fmt.Sprintf("%s,%d,%d", out[0].ID, atoi(t, out[0].ID)+3, atoi(t, out[0].ID)+6) {
		t.Errorf("IDs %s, %s, %s; want steps of 3", out[0].ID, out[1].ID, out[2].ID)
	}
	got, err := s.History(testCtx(t), "r", 0, 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("History = %v, %v", got, err)
	}
	for i := range got {
		if got[i].ID != out[i].ID {
			t.Errorf("message %d: stored ID %s, returned %s", i, got[i].ID, out[i].ID)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("ID %q is not a number", s)
	}
	return n
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := New(ctx, "someone:s3cret-pw@tcp(127.0.0.1:1)/db", nil); err == nil {
		t.Fatal("New with nothing listening succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("New took %v to fail", time.Since(start))
	}
	if _, err := New(context.Background(), "not a dsn", nil); err == nil {
		t.Fatal("New with a malformed DSN succeeded")
	}
}

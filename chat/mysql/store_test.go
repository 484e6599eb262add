package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

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
		if _, err := db.ExecContext(storetest.Ctx(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// dropOnCleanup drops table, and its table of deleted ids, when the test
// ends.
func dropOnCleanup(t testing.TB, dsn, table string) {
	t.Cleanup(func() {
		exec(t, dsn, "DROP TABLE IF EXISTS "+quote(table)+", "+quote(sqlstore.DeletedTableName(table, maxIdentLen)))
	})
}

// newTestStore opens a store on a table of its own, dropped when t ends.
func newTestStore(t testing.TB, opts *Options) *Store {
	t.Helper()
	dsn := testsvc.MySQLDSN(t)
	o := Options{TableName: testsvc.TableName(t, "olschat")}
	if opts != nil {
		o = *opts
	}
	dropOnCleanup(t, dsn, o.TableName)
	return storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, dsn, &o) })
}

// openTable opens a store on table, left for the test to drop.
func openTable(t *testing.T, dsn, table string) *Store {
	t.Helper()
	return storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, dsn, &Options{TableName: table}) })
}

func TestConformance(t *testing.T) {
	chattest.Run(t, func(t *testing.T) chat.Store { return newTestStore(t, nil) })
}

func BenchmarkStore(b *testing.B) {
	chattest.Bench(b, func(b *testing.B) chat.Store { return newTestStore(b, nil) })
}

func TestTableNames(t *testing.T) {
	storetest.CheckTableNames(t,
		func(t *testing.T, table string) chat.Store { return newTestStore(t, &Options{TableName: table}) },
		func(ctx context.Context, table string) error {
			_, err := New(ctx, "nobody@tcp(127.0.0.1:1)/none?timeout=1s", &Options{TableName: table})
			return err
		})
}

// nodeTable creates a table of the Node.js package's schema holding
// storetest.NodeRows, in the default (case-insensitive, space-padding)
// collation, with room_id and metadata of the given types, and returns
// its name. A TEXT room_id is indexed by prefix, as MySQL requires.
func nodeTable(t *testing.T, dsn, roomType, metaType string) string {
	t.Helper()
	table := testsvc.TableName(t, "olsmig")
	dropOnCleanup(t, dsn, table)
	roomKey := "room_id"
	if roomType == "TEXT" {
		roomKey = "room_id(100)"
	}
	q := quote(table)
	exec(t, dsn,
		fmt.Sprintf(`CREATE TABLE %s (id VARCHAR(255) PRIMARY KEY, room_id %s NOT NULL, connection_id VARCHAR(255) NOT NULL,
			user_id VARCHAR(255), message TEXT NOT NULL, metadata %s, created_at BIGINT NOT NULL,
			INDEX idx_room_created (%s, created_at)) DEFAULT CHARSET=utf8mb4`, q, roomType, metaType, roomKey),
		`INSERT INTO `+q+` VALUES `+storetest.NodeRows,
	)
	return table
}

// nodeTableTypes are the Node.js schemas the migration tests cover: the
// store gives a TEXT room_id its (room_id, seq) index on a prefix.
var nodeTableTypes = []struct{ room, meta string }{
	{"VARCHAR(255)", "JSON"},
	{"TEXT", "TEXT"},
}

func TestMigrateNodeTable(t *testing.T) {
	for _, types := range nodeTableTypes {
		t.Run(types.room+" room, "+types.meta+" metadata", func(t *testing.T) {
			dsn := testsvc.MySQLDSN(t)
			table := nodeTable(t, dsn, types.room, types.meta)
			storetest.CheckMigration(t, func(t *testing.T) chat.Store { return openTable(t, dsn, table) })
		})
	}
}

func TestHistoryBeforeMigratedIDs(t *testing.T) {
	for _, types := range nodeTableTypes {
		t.Run(types.room+" room", func(t *testing.T) {
			dsn := testsvc.MySQLDSN(t)
			storetest.CheckMigratedPaging(t, openTable(t, dsn, nodeTable(t, dsn, types.room, types.meta)))
		})
	}
}

func TestDeletedMigratedIDsStayCursors(t *testing.T) {
	for _, types := range nodeTableTypes {
		t.Run(types.room+" room", func(t *testing.T) {
			dsn := testsvc.MySQLDSN(t)
			storetest.CheckDeletedMigratedCursors(t, openTable(t, dsn, nodeTable(t, dsn, types.room, types.meta)))
		})
	}
}

func TestUnreadableMetadata(t *testing.T) {
	s := newTestStore(t, nil)
	exec(t, testsvc.MySQLDSN(t), "INSERT INTO "+quote(s.table)+` (id, room_id, connection_id, message, metadata, created_at)
		VALUES ('junk', 'junk-room', 'c', 'm', '{not json', 1)`)
	storetest.CheckUnreadableMetadata(t, s, "junk-room")
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
	s := openTable(t, dsn, table)
	m, err := s.Append(storetest.Ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "third"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.History(storetest.Ctx(t), "r", 0, 0)
	if err != nil || len(got) != 3 || got[0].ID != "a" || got[1].ID != "b" || got[2].ID != m.ID || m.ID != "3" {
		t.Fatalf("History = %+v, %v", got, err)
	}
}

func TestNotAChatTable(t *testing.T) {
	dsn := testsvc.MySQLDSN(t)
	table := testsvc.TableName(t, "olsother")
	dropOnCleanup(t, dsn, table)
	exec(t, dsn, "CREATE TABLE "+quote(table)+" (id VARCHAR(64) PRIMARY KEY, name TEXT)")
	if _, err := New(storetest.Ctx(t), dsn, &Options{TableName: table}); err == nil || !strings.Contains(err.Error(), "not a chat table") {
		t.Fatalf("New on an unrelated table: %v; want a refusal", err)
	}
}

func TestBadMessageFailsOnlyItsCaller(t *testing.T) {
	// The schema refuses room IDs over 256 characters.
	storetest.CheckBadMessageFailsOnlyItsCaller(t, newTestStore(t, nil),
		chat.Message{RoomID: strings.Repeat("r", 300), ConnectionID: "c", Message: "bad"})
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
	s := openTable(t, cfg.FormatDSN(), table)
	out, err := s.AppendBatch(storetest.Ctx(t), []chat.Message{{RoomID: "r", ConnectionID: "c", Message: "a"}, {RoomID: "r", ConnectionID: "c", Message: "b"}, {RoomID: "r", ConnectionID: "c", Message: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].ID+","+out[1].ID+","+out[2].ID != fmt.Sprintf("%s,%d,%d", out[0].ID, atoi(t, out[0].ID)+3, atoi(t, out[0].ID)+6) {
		t.Errorf("IDs %s, %s, %s; want steps of 3", out[0].ID, out[1].ID, out[2].ID)
	}
	got, err := s.History(storetest.Ctx(t), "r", 0, 0)
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

func TestRefusedDSNs(t *testing.T) {
	const pw = "s3cret-pw"
	// The test server, given a password: it refuses the login, or, under
	// an account without one, the missing database.
	cfg, err := mysql.ParseDSN(testsvc.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Passwd, cfg.DBName = pw, "olsnosuchdb"
	storetest.CheckRefusedDSNs(t, pw, func(ctx context.Context, dsn string) error {
		_, err := New(ctx, dsn, nil)
		return err
	},
		"someone:"+pw+"@tcp(127.0.0.1:1)/db",
		"someone:"+pw+"@tcp(127.0.0.1:1)/db?timeout=soon",
		"someone:"+pw+"@tcp(127.0.0.1:1)/db?tls=bogus",
		"someone:"+pw+"@tcp(127.0.0.1:1)db",
		"someone:"+pw+"@bogus(127.0.0.1:1)/db",
		"someone:"+pw+"@tcp(127.0.0.1:1)/db?loc=Nowhere/Zone",
		"not a dsn",
		cfg.FormatDSN(),
	)
	if _, err := NewFromConfig(storetest.Ctx(t), nil, nil); err == nil {
		t.Error("NewFromConfig(nil) succeeded")
	}
}

package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// exec runs statements on a connection of its own, for setting up and
// inspecting tables behind the store's back.
func exec(t testing.TB, dsn string, stmts ...string) {
	t.Helper()
	ctx := storetest.Ctx(t)
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

// dropOnCleanup drops table, and its table of deleted ids, when the test
// ends.
func dropOnCleanup(t testing.TB, dsn, table string) {
	t.Cleanup(func() {
		exec(t, dsn, `DROP TABLE IF EXISTS `+quote(table)+`, `+quote(sqlstore.DeletedTableName(table, maxIdentLen))+` CASCADE`)
	})
}

// newTestStore opens a store on a table of its own, dropped when t ends.
func newTestStore(t testing.TB, opts *Options) *Store {
	t.Helper()
	dsn := testsvc.PostgresDSN(t)
	o := Options{TableName: testsvc.TableName(t, "olschat")}
	if opts != nil {
		o = *opts
	}
	dropOnCleanup(t, dsn, o.TableName)
	return storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, dsn, &o) })
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
			_, err := New(ctx, "postgres://nobody@127.0.0.1:1/none", &Options{TableName: table})
			return err
		})
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

// nodeTable creates a table of the Node.js package's schema, with
// metadata of type metaType, holding storetest.NodeRows, and returns its
// name.
func nodeTable(t *testing.T, dsn, metaType string) string {
	t.Helper()
	table := testsvc.TableName(t, "olsmig")
	dropOnCleanup(t, dsn, table)
	q := quote(table)
	exec(t, dsn,
		fmt.Sprintf(`CREATE TABLE %s (id TEXT PRIMARY KEY, room_id TEXT NOT NULL, connection_id TEXT NOT NULL,
			user_id TEXT, message TEXT NOT NULL, metadata %s, created_at BIGINT NOT NULL)`, q, metaType),
		fmt.Sprintf(`CREATE INDEX %s ON %s (room_id, created_at)`, quote(table+"_rc"), q),
		`INSERT INTO `+q+` VALUES `+storetest.NodeRows,
	)
	return table
}

func TestMigrateNodeTable(t *testing.T) {
	for _, metaType := range []string{"JSONB", "JSON", "TEXT"} {
		t.Run(metaType, func(t *testing.T) {
			dsn := testsvc.PostgresDSN(t)
			table := nodeTable(t, dsn, metaType)
			storetest.CheckMigration(t, func(t *testing.T) chat.Store {
				return storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, dsn, &Options{TableName: table}) })
			})
		})
	}
}

func TestHistoryBeforeMigratedIDs(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	table := nodeTable(t, dsn, "JSONB")
	storetest.CheckMigratedPaging(t, storetest.Open(t, func(ctx context.Context) (*Store, error) {
		return New(ctx, dsn, &Options{TableName: table})
	}))
}

func TestDeletedMigratedIDsStayCursors(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	table := nodeTable(t, dsn, "JSON")
	storetest.CheckDeletedMigratedCursors(t, storetest.Open(t, func(ctx context.Context) (*Store, error) {
		return New(ctx, dsn, &Options{TableName: table})
	}))
}

func TestUnreadableMetadata(t *testing.T) {
	// Only a migrated TEXT metadata column can hold text that is not JSON.
	dsn := testsvc.PostgresDSN(t)
	table := nodeTable(t, dsn, "TEXT")
	s := storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, dsn, &Options{TableName: table}) })
	exec(t, dsn, `INSERT INTO `+quote(table)+` (id, room_id, connection_id, message, metadata, created_at)
		VALUES ('junk', 'junk-room', 'c', 'm', '{not json', 1)`)
	storetest.CheckUnreadableMetadata(t, s, "junk-room")
}

func TestNotAChatTable(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	table := testsvc.TableName(t, "olsother")
	dropOnCleanup(t, dsn, table)
	exec(t, dsn, `CREATE TABLE `+quote(table)+` (id TEXT PRIMARY KEY, name TEXT)`)
	if _, err := New(storetest.Ctx(t), dsn, &Options{TableName: table}); err == nil || !strings.Contains(err.Error(), "not a chat table") {
		t.Fatalf("New on an unrelated table: %v; want a refusal", err)
	}
}

func TestBadMessageFailsOnlyItsCaller(t *testing.T) {
	// A constraint refuses one message: a data error (SQLSTATE class 23)
	// that rolls back the whole group commit, whose other callers must
	// then be stored by a retry. (NUL in text, class 22, no longer gets
	// this far: every store refuses it up front.)
	table := testsvc.TableName(t, "olschat")
	s := newTestStore(t, &Options{TableName: table})
	exec(t, testsvc.PostgresDSN(t), `ALTER TABLE `+quote(table)+` ADD CONSTRAINT refuse_bad CHECK (message <> 'refused by the database')`)
	storetest.CheckBadMessageFailsOnlyItsCaller(t, s, chat.Message{RoomID: "r", ConnectionID: "c", Message: "refused by the database"})
}

func TestRefusedDSNs(t *testing.T) {
	const pw = "s3cret-pw"
	// The test database's server, given a password, refusing the session
	// whatever its authentication method (a missing database, a bad
	// setting), so that the server's own errors are covered too.
	dsn := testsvc.PostgresDSN(t)
	noDatabase := dsnWith(t, dsn, map[string]string{"password": pw, "dbname": "olsnosuchdb"})
	badSetting := dsnWith(t, dsn, map[string]string{"password": pw, "statement_timeout": "abc"})
	storetest.CheckRefusedDSNs(t, pw, func(ctx context.Context, dsn string) error {
		_, err := New(ctx, dsn, nil)
		return err
	},
		"postgres://someone:"+pw+"@127.0.0.1:1/db?sslmode=disable",
		"host=127.0.0.1 port=1 user=x password="+pw+" sslmode=disable",
		"postgres://someone:"+pw+" x@127.0.0.1/db",
		"postgres://someone:"+pw+"%zz@127.0.0.1/db",
		"postgres://someone:"+pw+"@127.0.0.1:notaport/db",
		"postgres://someone:"+pw+"@[::1/db",
		"postgres://someone:"+pw+"@127.0.0.1/db?sslmode=bogus",
		"postgres://someone@127.0.0.1:1/db?password="+pw+"&port=x",
		"postgres://someone:"+pw+"@127.0.0.1/db?pool_max_conns=many",
		"host=x password='"+pw,
		"postgres://bad url",
		noDatabase,
		badSetting,
	)
}

func TestSurvivesDroppedConnections(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	table := testsvc.TableName(t, "olsdrop")
	dropOnCleanup(t, dsn, table)
	s := storetest.Open(t, func(ctx context.Context) (*Store, error) {
		return New(ctx, dsnWith(t, dsn, map[string]string{"application_name": table}), &Options{TableName: table})
	})
	// The server drops the connections just after they were used, too
	// soon for pgxpool's ping of connections idle for a second: the
	// store's look at the socket must find them closed.
	ctx := storetest.Ctx(t)
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

func TestJSONBMetadataBecomesJSON(t *testing.T) {
	// A table of an earlier version: seq already there, metadata JSONB.
	dsn := testsvc.PostgresDSN(t)
	table := testsvc.TableName(t, "olsjsonb")
	dropOnCleanup(t, dsn, table)
	exec(t, dsn, strings.Replace(createTableSQL(table), "metadata JSON,", "metadata JSONB,", 1),
		`INSERT INTO `+quote(table)+` (id, room_id, connection_id, message, metadata, created_at) VALUES ('1', 'r', 'c', 'old', '{"b": 1, "a": 2}', 1)`)
	exec(t, dsn, `SELECT setval(pg_get_serial_sequence('`+quote(table)+`', 'seq'), 1)`)
	ctx := storetest.Ctx(t)
	const meta = `{"n":1e131071,"b":1,"b":2}`
	for round := range 2 { // the second New finds the table migrated
		s := storetest.Open(t, func(ctx context.Context) (*Store, error) { return New(ctx, dsn, &Options{TableName: table}) })
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		var typ string
		err = conn.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'metadata'`, quote(table)).Scan(&typ)
		conn.Close(ctx)
		if err != nil || typ != "json" {
			t.Fatalf("round %d: metadata column type %q, %v; want json", round, typ, err)
		}
		if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "new", Metadata: json.RawMessage(meta)}); err != nil {
			t.Fatal(err)
		}
		got, err := s.History(ctx, "r", 1, 0)
		if err != nil || len(got) != 1 || string(got[0].Metadata) != meta {
			t.Fatalf("round %d: newest message's metadata = %d bytes, %v; want %s", round, len(got[0].Metadata), err, meta)
		}
		old, err := s.History(ctx, "r", 1, round+1)
		if err != nil || len(old) != 1 || string(old[0].Metadata) != `{"a":2,"b":1}` {
			t.Fatalf("round %d: the row stored as JSONB reads %+v, %v", round, old, err)
		}
		s.Close()
	}
}

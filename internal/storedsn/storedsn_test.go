package storedsn

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/openlivesync/livesync/internal/redact"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	drivermysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat"
	chatmysql "github.com/openlivesync/livesync/chat/mysql"
	chatpostgres "github.com/openlivesync/livesync/chat/postgres"
	chatsqlite "github.com/openlivesync/livesync/chat/sqlite"
	"github.com/openlivesync/livesync/internal/testsvc"
)

const secret = "Secr3tPw"

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"memory", "memory"},
		{"sqlite:/var/lib/chat.db", "sqlite:/var/lib/chat.db"},
		{"postgres://u:" + secret + "@db:5432/chat?sslmode=disable", "postgres://u:xxxxx@db:5432/chat?sslmode=disable"},
		{"postgresql://u@db/chat", "postgresql://u@db/chat"},
		{"postgres://u:p%40ss%2Fw@db/chat", "postgres://u:xxxxx@db/chat"},
		{"postgres://u@db/chat?password=" + secret + "&sslmode=require", "postgres://u@db/chat?password=xxxxx&sslmode=require"},
		{"postgres://u:" + secret + "%zz@db/chat", "postgres://xxxxx@db/chat"},
		{"postgres://u:p@ss@db/chat", "postgres://xxxxx@db/chat"},
		{"postgres://u:p@ss:w/rd?#%@db:5432/chat?sslmode=disable", "postgres://xxxxx@db:5432/chat?sslmode=disable"},
		{"postgres://u:pa/ss@db/chat", "postgres://xxxxx@db/chat"},
		{"mysql://u:p#ss@db/chat", "mysql://xxxxx@db/chat"},
		{"redis://:p?ss@127.0.0.1:6379/0", "redis://xxxxx@127.0.0.1:6379/0"},
		{"postgres://u:pässwörd✓@db/chat", "postgres://u:xxxxx@db/chat"},
		{"sqlite:///data/a@b.db", "sqlite:///data/a@b.db"},
		{"postgres://u:" + secret + "@db:notaport/chat", "postgres://u:xxxxx@db:notaport/chat"},
		{"mysql://root:" + secret + "@127.0.0.1:3306/test", "mysql://root:xxxxx@127.0.0.1:3306/test"},
		{"mysql://root@127.0.0.1:3306/test", "mysql://root@127.0.0.1:3306/test"},
		{"root:" + secret + "@tcp(127.0.0.1:3306)/test", "root:xxxxx@tcp(127.0.0.1:3306)/test"},
		{"root:p@ss:w@tcp(h)/db", "root:xxxxx@tcp(h)/db"},
		{"host=db user=u password=" + secret + " dbname=chat", "host=db user=u password=xxxxx dbname=chat"},
		{"host=db password='" + secret + " with space' dbname=chat", "host=db password=xxxxx dbname=chat"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			if got := redact.DSN(c.in); got != c.want {
				t.Errorf("redact.DSN(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	cases := []struct{ dsn, want string }{
		{"", "empty DSN"},
		{"   ", "empty DSN"},
		{"redis://u:" + secret + "@127.0.0.1:6379", "unsupported DSN"},
		{"mongodb://u:" + secret + "@h/db", "unsupported DSN"},
		{"memory:", "unsupported DSN"},
		// A scheme with a typo: echoed, its password masked.
		{"postgres:/postgres:" + secret + "@127.0.0.1/test", `"postgres:/xxxxx@127.0.0.1/test": unsupported DSN`},
		{"postgres//postgres:" + secret + "@127.0.0.1/test", "unsupported DSN"},
		{"mysql:/root:" + secret + "@127.0.0.1:3306/test", "unsupported DSN"},
		{"mysql//root:" + secret + "@127.0.0.1:3306/test", "unsupported DSN"},
		{"postgres:" + secret + "@127.0.0.1/test", "unsupported DSN"},
		{"sqlite:", "no database file"},
		{"sqlite://", "no database file"},
		{"sqlite::memory:", "in-memory"},
		{"sqlite:" + filepath.Join(t.TempDir(), "missing", "dir", "chat.db"), "open"},
		{"postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=disable", "database unreachable"},
		{"postgresql://u:" + secret + "@127.0.0.1:1/db", "database unreachable"},
		{"postgres://u:" + secret + "%zz@127.0.0.1/db", "malformed DSN"},
		{"postgres://u:" + secret + "@127.0.0.1:notaport/db", "malformed DSN"},
		{"mysql://u:" + secret + "@127.0.0.1:1/db", "database unreachable"},
		{"mysql://u:" + secret + "@with@127.0.0.1:1/db", "not percent-encoded"},
		{"postgres://u:" + secret + "@with@127.0.0.1:1/db", "not percent-encoded"},
		{"postgres://u:" + secret + "/x@127.0.0.1:1/db", "not percent-encoded"},
		{"mysql://u:" + secret + "@/db", "no host"},
		{"mysql://u:" + secret + "@127.0.0.1:3306", "no database name"},
		{"mysql://u:" + secret + "@127.0.0.1:3306/", "no database name"},
		{"mysql://u:" + secret + "@127.0.0.1:3306/db?timeout=soon", "bad query parameters"},
		{"mysql://u:" + secret + "%zz@127.0.0.1:3306/db", "malformed"},
		{"mysql://u@127.0.0.1:3306/db?password=%27" + secret + "%27", "password in a query parameter"},
		{"mysql://u@127.0.0.1:3306/db?PWD=" + secret + "&tls=false", "password in a query parameter"},
	}
	for _, c := range cases {
		t.Run(c.dsn, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Open(ctx, c.dsn, 0)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", c.dsn)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open(%q) = %q; want it to say %q", c.dsn, err, c.want)
			}
			if strings.Contains(err.Error(), "Secr3t") {
				t.Errorf("Open(%q) error leaks the password: %q", c.dsn, err)
			}
		})
	}
}

// silentServer accepts TCP connections and never answers, like a
// database that hangs.
func silentServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestOpenFailsFastOnASilentServer(t *testing.T) {
	old := pingTimeout
	pingTimeout = 300 * time.Millisecond
	t.Cleanup(func() { pingTimeout = old })
	addr := silentServer(t)
	for _, dsn := range []string{
		"postgres://u:" + secret + "@" + addr + "/db?sslmode=disable",
		"mysql://u:" + secret + "@" + addr + "/db",
	} {
		start := time.Now()
		_, err := Open(context.Background(), dsn, 0)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Open(%q) took %v to fail", dsn, took)
		}
		if !strings.Contains(err.Error(), "database unreachable") || strings.Contains(err.Error(), secret) {
			t.Errorf("Open(%q) = %q", dsn, err)
		}
	}
}

// exercise appends more messages than historyLimit and checks History's
// default page is historyLimit long.
func exercise(t *testing.T, s chat.Store, historyLimit int) {
	t.Helper()
	ctx := context.Background()
	for i := range historyLimit + 2 {
		if _, err := s.Append(ctx, chat.Message{RoomID: "storedsn", ConnectionID: "c", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.History(ctx, "storedsn", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != historyLimit || got[len(got)-1].Message != fmt.Sprint(historyLimit+1) {
		t.Fatalf("History(0, 0) = %d messages; want the newest %d", len(got), historyLimit)
	}
}

func TestOpenMemory(t *testing.T) {
	s, err := Open(context.Background(), "memory", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*chat.MemoryStore); !ok {
		t.Fatalf("memory opened a %T", s)
	}
	exercise(t, s, 3)
}

func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	for _, dsn := range []string{
		"sqlite:" + filepath.Join(dir, "a.db"),
		"sqlite://" + filepath.Join(dir, "b.db"), // sqlite:///abs/path
		"SQLite:" + filepath.Join(dir, "c.db"),
	} {
		s, err := Open(context.Background(), dsn, 4)
		if err != nil {
			t.Fatalf("Open(%q): %v", dsn, err)
		}
		if _, ok := s.(*chatsqlite.Store); !ok {
			t.Fatalf("%s opened a %T", dsn, s)
		}
		exercise(t, s, 4)
		s.Close()
	}
}

func TestOpenPostgres(t *testing.T) {
	dsn := testsvc.PostgresDSN(t)
	for _, scheme := range []string{"postgres://", "postgresql://", "POSTGRES://", "PostgreSQL://"} {
		t.Run(scheme, func(t *testing.T) {
			table := testsvc.TableName(t, "olsdsn")
			t.Cleanup(func() {
				conn, err := pgx.Connect(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				if _, err := conn.Exec(context.Background(), `DROP TABLE IF EXISTS "`+table+`"`); err != nil {
					t.Fatal(err)
				}
			})
			u := scheme + strings.SplitN(dsn, "://", 2)[1]
			s, err := open(context.Background(), u, 5, table)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.(*chatpostgres.Store); !ok {
				t.Fatalf("%s opened a %T", u, s)
			}
			exercise(t, s, 5)
		})
	}
}

func TestOpenMySQL(t *testing.T) {
	cfg, err := drivermysql.ParseDSN(testsvc.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql", User: url.UserPassword(cfg.User, cfg.Passwd), Host: cfg.Addr, Path: "/" + cfg.DBName}
	if cfg.Passwd == "" {
		u.User = url.User(cfg.User)
	}
	table := testsvc.TableName(t, "olsdsn")
	t.Cleanup(func() {
		db, err := sql.Open("mysql", testsvc.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("DROP TABLE IF EXISTS `" + table + "`"); err != nil {
			t.Fatal(err)
		}
	})
	s, err := open(context.Background(), u.String(), 6, table)
	if err != nil {
		t.Fatalf("Open(%s): %v", redact.DSN(u.String()), err)
	}
	defer s.Close()
	if _, ok := s.(*chatmysql.Store); !ok {
		t.Fatalf("%s opened a %T", redact.DSN(u.String()), s)
	}
	exercise(t, s, 6)
}

func TestMySQLConfig(t *testing.T) {
	cases := []struct {
		dsn                   string
		user, pass, addr, db  string
		wantTLS, wantInterval bool
	}{
		{dsn: "mysql://root@db.example/chat", user: "root", addr: "db.example:3306", db: "chat"},
		{dsn: "mysql://app:p%40ss%2Fw:rd@10.0.0.5:3307/chat", user: "app", pass: "p@ss/w:rd", addr: "10.0.0.5:3307", db: "chat"},
		{dsn: "mysql://app:pw@[::1]:3306/chat?tls=true", user: "app", pass: "pw", addr: "[::1]:3306", db: "chat", wantTLS: true},
	}
	for _, c := range cases {
		t.Run(c.dsn, func(t *testing.T) {
			cfg, err := mysqlConfig(c.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.User != c.user || cfg.Passwd != c.pass || cfg.Addr != c.addr || cfg.DBName != c.db || cfg.Net != "tcp" {
				t.Errorf("config = user %q pass %q addr %q db %q net %q", cfg.User, cfg.Passwd, cfg.Addr, cfg.DBName, cfg.Net)
			}
			if (cfg.TLSConfig == "true") != c.wantTLS {
				t.Errorf("tls = %q", cfg.TLSConfig)
			}
			if cfg.Timeout <= 0 {
				t.Error("no dial timeout set")
			}
		})
	}
}

package mysql

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/tcpproxy"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// newProxiedStore opens a store on table through a new proxy, and stores
// "first" through it.
func newProxiedStore(t *testing.T, table string) (*Store, *tcpproxy.Proxy) {
	t.Helper()
	dsn := testsvc.MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Net != "tcp" {
		t.Skip("the test database is not reached over TCP; the proxy tests need it")
	}
	p := tcpproxy.Start(t, cfg.Addr)
	dropOnCleanup(t, dsn, table)
	t.Cleanup(p.Restore) // first: the table cannot be dropped while a hung session locks it
	cfg.Addr = p.Addr()
	s := storetest.Open(t, func(ctx context.Context) (*Store, error) { return NewFromConfig(ctx, cfg, &Options{TableName: table}) })
	if _, err := s.Append(storetest.Ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "first"}); err != nil {
		t.Fatal(err)
	}
	return s, p
}

// checkNeverStored is storetest.NeverStored, counting the rows on a
// connection of its own.
func checkNeverStored(t *testing.T, s *Store, table, text string) {
	t.Helper()
	storetest.NeverStored(t, s, s.core.Doubtful, func(ctx context.Context) (int, error) {
		var n int
		err := openDB(t, testsvc.MySQLDSN(t)).QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quote(table)+" WHERE message = ?", text).Scan(&n)
		return n, err
	})
}

func TestAppendFailsByItsDeadlineWhenTheDatabaseHangs(t *testing.T) {
	table := testsvc.TableName(t, "olshang")
	s, p := newProxiedStore(t, table)
	p.Hang()
	storetest.AppendFailsByDeadline(t, s, "hung")
	p.Restore()
	checkNeverStored(t, s, table, "hung")
}

func TestUnansweredCommitIsUndone(t *testing.T) {
	// The database hangs just before COMMIT: COMMIT is sent, held by the
	// proxy, and delivered, so committed, after the caller was told "not
	// stored". The store must hide the rows and delete them.
	table := testsvc.TableName(t, "olshang")
	s, p := newProxiedStore(t, table)
	var once sync.Once
	s.beforeCommit = func() { once.Do(p.Hang) }
	storetest.AppendFailsByDeadline(t, s, "committed late")
	testsvc.WaitFor(t, "the unanswered COMMIT's row to be in doubt", 10*time.Second, func() bool { return s.core.Doubtful() == 1 })
	p.Restore()
	checkNeverStored(t, s, table, "committed late")
}

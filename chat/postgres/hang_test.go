package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// checkNeverStored is storetest.NeverStored, counting the rows on a
// connection of its own.
func checkNeverStored(t *testing.T, s *Store, table, text string) {
	t.Helper()
	storetest.NeverStored(t, s, s.core.Doubtful, func(ctx context.Context) (int, error) {
		conn, err := pgx.Connect(ctx, testsvc.PostgresDSN(t))
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		var n int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM `+quote(table)+` WHERE message = $1`, text).Scan(&n)
		return n, err
	})
}

func TestAppendFailsByItsDeadlineWhenTheDatabaseHangs(t *testing.T) {
	table := testsvc.TableName(t, "olshang")
	s, p := newProxiedStore(t, nil, Options{TableName: table})
	t.Cleanup(p.Restore) // first: the table cannot be dropped while a hung session locks it
	p.Hang()
	storetest.AppendFailsByDeadline(t, s, "hung")
	p.Restore()
	checkNeverStored(t, s, table, "hung")
}

func TestUnansweredCommitIsUndone(t *testing.T) {
	// The database hangs between the INSERT and COMMIT: COMMIT is sent,
	// held by the proxy, and delivered, so committed, after the caller
	// was told "not stored". The store must hide the row and delete it.
	table := testsvc.TableName(t, "olshang")
	s, p := newProxiedStore(t, nil, Options{TableName: table})
	t.Cleanup(p.Restore) // first: the table cannot be dropped while a hung session locks it
	var once sync.Once
	s.beforeCommit = func() { once.Do(p.Hang) }
	storetest.AppendFailsByDeadline(t, s, "committed late")
	testsvc.WaitFor(t, "the unanswered COMMIT's row to be in doubt", 10*time.Second, func() bool { return s.core.Doubtful() == 1 })
	p.Restore()
	checkNeverStored(t, s, table, "committed late")
}

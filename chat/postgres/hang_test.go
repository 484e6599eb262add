package postgres

import (
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// checkNeverStored waits until the store has nothing in doubt, then
// checks, on a connection of its own, that no row holds text, and that
// the store goes on working.
func checkNeverStored(t *testing.T, s *Store, table, text string) {
	t.Helper()
	ctx := storetest.Ctx(t)
	testsvc.WaitFor(t, "the doubtful rows to be undone", 25*time.Second, func() bool { return s.core.Doubtful() == 0 })
	conn, err := pgx.Connect(ctx, testsvc.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+quote(table)+` WHERE message = $1`, text).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the message whose Append failed is stored (%d rows)", n)
	}
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "after"}); err != nil {
		t.Fatalf("Append once the database answers again: %v", err)
	}
	got, err := s.History(ctx, "r", 0, 0)
	if err != nil || len(got) != 2 || got[0].Message != "first" || got[1].Message != "after" {
		t.Fatalf("History = %+v, %v; want first, after", got, err)
	}
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

package mysql

import (
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/internal/testsvc"
)

func TestOutbox(t *testing.T) {
	f := chattest.OutboxFixture{
		Open: func(t *testing.T) (chat.Store, chat.Store) {
			a := newTestStore(t, nil)
			dsn := testsvc.MySQLDSN(t)
			for _, name := range []func(string, int) string{sqlstore.OutboxTableName, sqlstore.OutboxLocksTableName,
				sqlstore.OutboxMarksTableName, sqlstore.OutboxOwnersTableName} {
				dropOnCleanup(t, dsn, name(a.table, maxIdentLen))
			}
			return a, openTable(t, dsn, a.table)
		},
		Exec:         func(t *testing.T, q string) { exec(t, testsvc.MySQLDSN(t), q) },
		BeforeCommit: func(s chat.Store, hook func()) { s.(*Store).beforeCommit = hook },
	}
	chattest.RunOutbox(t, f)
	chattest.RunLedger(t, f)
}

package mysql

import (
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/internal/testsvc"
)

func TestDocs(t *testing.T) {
	chattest.RunDocs(t, chattest.DocsFixture{
		Open: func(t *testing.T) (chat.Store, chat.Store) {
			a := newTestStore(t, nil)
			dsn := testsvc.MySQLDSN(t)
			dropOnCleanup(t, dsn, sqlstore.DocsTableName(a.table, maxIdentLen))
			return a, openTable(t, dsn, a.table)
		},
	})
}

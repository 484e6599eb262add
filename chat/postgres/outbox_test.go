package postgres

import (
	"context"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/chat/internal/sqlstore"
	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

func TestOutbox(t *testing.T) {
	f := chattest.OutboxFixture{
		Open: func(t *testing.T) (chat.Store, chat.Store) {
			a := newTestStore(t, nil)
			for _, name := range []func(string, int) string{sqlstore.OutboxTableName, sqlstore.OutboxLocksTableName,
				sqlstore.OutboxMarksTableName, sqlstore.OutboxOwnersTableName} {
				dropOnCleanup(t, testsvc.PostgresDSN(t), name(a.table, maxIdentLen))
			}
			b := storetest.Open(t, func(ctx context.Context) (*Store, error) {
				return New(ctx, testsvc.PostgresDSN(t), &Options{TableName: a.table})
			})
			return a, b
		},
		Exec:         func(t *testing.T, q string) { exec(t, testsvc.PostgresDSN(t), q) },
		BeforeCommit: func(s chat.Store, hook func()) { s.(*Store).beforeCommit = hook },
	}
	chattest.RunOutbox(t, f)
	chattest.RunLedger(t, f)
}

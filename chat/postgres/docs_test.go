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

func TestDocs(t *testing.T) {
	chattest.RunDocs(t, chattest.DocsFixture{
		Open: func(t *testing.T) (chat.Store, chat.Store) {
			a := newTestStore(t, nil)
			dropOnCleanup(t, testsvc.PostgresDSN(t), sqlstore.DocsTableName(a.table, maxIdentLen))
			b := storetest.Open(t, func(ctx context.Context) (*Store, error) {
				return New(ctx, testsvc.PostgresDSN(t), &Options{TableName: a.table})
			})
			return a, b
		},
	})
}

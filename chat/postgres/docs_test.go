package postgres

import (
	"context"
	"strings"
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

// TestDocsLongTableName checks the documents table of a chat table whose
// name leaves no room for the suffix: shortened, not truncated by the
// server into another table's name.
func TestDocsLongTableName(t *testing.T) {
	table := testsvc.TableName(t, "olsdocs")
	table += strings.Repeat("x", maxIdentLen-len(table))
	s := newTestStore(t, &Options{TableName: table})
	docsTable := sqlstore.DocsTableName(table, maxIdentLen)
	dropOnCleanup(t, testsvc.PostgresDSN(t), docsTable)
	d, err := s.EnableDocs(storetest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d.Table() != docsTable || len(docsTable) > maxIdentLen {
		t.Fatalf("Table() = %q, want %q of at most %d characters", d.Table(), docsTable, maxIdentLen)
	}
	if err := d.AppendUpdates(storetest.Ctx(t), "r", [][]byte{[]byte("u")}); err != nil {
		t.Fatal(err)
	}
	if log, err := d.LoadDoc(storetest.Ctx(t), "r"); err != nil || len(log.Updates) != 1 {
		t.Fatalf("LoadDoc: %+v, %v; want the one update", log, err)
	}
}

package mysql

import (
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
			dsn := testsvc.MySQLDSN(t)
			dropOnCleanup(t, dsn, sqlstore.DocsTableName(a.table, maxIdentLen))
			return a, openTable(t, dsn, a.table)
		},
	})
}

// TestDocsLongTableName checks the documents table of a chat table whose
// name leaves no room for the suffix: shortened, not refused as too long.
func TestDocsLongTableName(t *testing.T) {
	table := testsvc.TableName(t, "olsdocs")
	table += strings.Repeat("x", 63-len(table))
	s := newTestStore(t, &Options{TableName: table})
	docsTable := sqlstore.DocsTableName(table, maxIdentLen)
	dropOnCleanup(t, testsvc.MySQLDSN(t), docsTable)
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

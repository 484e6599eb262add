package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
)

func TestDocs(t *testing.T) {
	chattest.RunDocs(t, chattest.DocsFixture{
		Open: func(t *testing.T) (chat.Store, chat.Store) {
			path := filepath.Join(t.TempDir(), "chat.db")
			return openFile(t, path, nil), openFile(t, path, nil)
		},
	})
}

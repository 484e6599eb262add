package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
)

func TestOutbox(t *testing.T) {
	var path string
	f := chattest.OutboxFixture{
		Open: func(t *testing.T) (chat.Store, chat.Store) {
			path = filepath.Join(t.TempDir(), "chat.db")
			return openFile(t, path, nil), openFile(t, path, nil)
		},
		Exec: func(t *testing.T, q string) { exec(t, path, q) },
	}
	chattest.RunOutbox(t, f)
	chattest.RunLedger(t, f)
}

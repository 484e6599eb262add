package chattest

import (
	"context"
	"testing"

	"github.com/openlivesync/livesync/chat"
)

func testCanceledContext(t *testing.T, s chat.Store) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(canceled, chat.Message{RoomID: "canceled", ConnectionID: "c", Message: "never"}); err == nil {
		t.Fatal("Append with a canceled context succeeded")
	}
	if got := history(t, s, "canceled", 0, 0); len(got) != 0 {
		t.Fatalf("a refused Append was stored: %q", texts(got))
	}
	if _, err := s.History(canceled, "canceled", 0, 0); err == nil {
		t.Fatal("History with a canceled context succeeded")
	}
	if p, ok := s.(chat.Pager); ok {
		if _, _, err := p.HistoryBefore(canceled, "canceled", "", 0); err == nil {
			t.Fatal("HistoryBefore with a canceled context succeeded")
		}
	}
}

func testPing(t *testing.T, s chat.Store) {
	p, ok := s.(chat.Pinger)
	if !ok {
		t.Skip("store does not implement chat.Pinger")
	}
	if err := p.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testClose(t *testing.T, s chat.Store) {
	seed(t, s, "closing", 3)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := ctx(t)
	_, err := s.Append(c, chat.Message{RoomID: "closing", ConnectionID: "c", Message: "late"})
	requireErrClosed(t, "Append", err)
	_, err = s.History(c, "closing", 0, 0)
	requireErrClosed(t, "History", err)
	if b, ok := s.(chat.BatchAppender); ok {
		_, err = b.AppendBatch(c, []chat.Message{{RoomID: "closing", ConnectionID: "c", Message: "late"}})
		requireErrClosed(t, "AppendBatch", err)
	}
	if p, ok := s.(chat.Pinger); ok {
		requireErrClosed(t, "Ping", p.Ping(c))
	}
	if p, ok := s.(chat.Pager); ok {
		_, _, err = p.HistoryBefore(c, "closing", "", 0)
		requireErrClosed(t, "HistoryBefore", err)
	}
	if d, ok := s.(chat.Deleter); ok {
		_, err = d.Delete(c, "closing", "1")
		requireErrClosed(t, "Delete", err)
	}
	_ = s.Close() // a second Close must not panic or hang
}

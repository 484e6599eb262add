package chat_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
)

func TestMemoryStoreConformance(t *testing.T) {
	chattest.Run(t, func(t *testing.T) chat.Store {
		s := chat.NewMemoryStore(&chat.MemoryOptions{MaxPerRoom: 5000})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func BenchmarkMemoryStore(b *testing.B) {
	chattest.Bench(b, func(b *testing.B) chat.Store {
		s := chat.NewMemoryStore(&chat.MemoryOptions{MaxPerRoom: 5000})
		b.Cleanup(func() { s.Close() })
		return s
	})
}

func TestMemoryStoreKeepsLastMaxPerRoom(t *testing.T) {
	const keep = 10
	ctx := context.Background()
	s := chat.NewMemoryStore(&chat.MemoryOptions{MaxPerRoom: keep})
	defer s.Close()
	for i := range 25 {
		if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(ctx, chat.Message{RoomID: "other", ConnectionID: "c", Message: "x"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		limit, offset int
		want          []string
	}{
		{0, 0, []string{"15", "16", "17", "18", "19", "20", "21", "22", "23", "24"}},
		{100, 0, []string{"15", "16", "17", "18", "19", "20", "21", "22", "23", "24"}},
		{3, 0, []string{"22", "23", "24"}},
		{3, 8, []string{"15", "16"}},
		{3, 10, nil},
	}
	for _, c := range cases {
		got, err := s.History(ctx, "r", c.limit, c.offset)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, m := range got {
			texts = append(texts, m.Message)
		}
		if fmt.Sprint(texts) != fmt.Sprint(c.want) {
			t.Errorf("History(r, %d, %d) = %v, want %v", c.limit, c.offset, texts, c.want)
		}
	}
	if got, _ := s.History(ctx, "other", 0, 0); len(got) != 1 {
		t.Errorf("trimming one room touched another: %d messages", len(got))
	}
}

func TestMemoryStoreDocs(t *testing.T) {
	chattest.RunDocs(t, chattest.DocsFixture{
		Open: func(t *testing.T) (chat.Store, chat.Store) {
			s := chat.NewMemoryStore(nil)
			t.Cleanup(func() { s.Close() })
			return s, s
		},
	})
}

package chattest

import (
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

func requireDeleter(t *testing.T, s chat.Store) chat.Deleter {
	t.Helper()
	d, ok := s.(chat.Deleter)
	if !ok {
		t.Skip("store does not implement chat.Deleter")
	}
	return d
}

func deleteOne(t *testing.T, d chat.Deleter, room, id string) bool {
	t.Helper()
	found, err := d.Delete(ctx(t), room, id)
	if err != nil {
		t.Fatalf("Delete(%q, %q): %v", room, id, err)
	}
	return found
}

// without returns ms minus the messages at the indexes drop.
func without(ms []protocol.StoredChatMessage, drop ...int) []protocol.StoredChatMessage {
	skip := map[int]bool{}
	for _, i := range drop {
		skip[i] = true
	}
	var out []protocol.StoredChatMessage
	for i, m := range ms {
		if !skip[i] {
			out = append(out, m)
		}
	}
	return out
}

// testDelete: a deleted message leaves History and HistoryBefore, the
// others keep their order, its id still pages HistoryBefore from where
// it was, a second Delete (or one naming another room's
// message, or nothing) reports not found and changes nothing, and the
// deleted id is not given to a later message.
func testDelete(t *testing.T, s chat.Store) {
	d := requireDeleter(t, s)
	all := seed(t, s, "del", 6)
	other := seed(t, s, "del-other", 2)

	if !deleteOne(t, d, "del", all[2].ID) {
		t.Fatalf("Delete of message %s reported it not found", all[2].ID)
	}
	sameMessages(t, history(t, s, "del", 10, 0), without(all, 2))
	if deleteOne(t, d, "del", all[2].ID) {
		t.Error("a second Delete of the same message reported it found")
	}
	if deleteOne(t, d, "del", other[0].ID) {
		t.Error("Delete of another room's message reported it found")
	}
	sameMessages(t, history(t, s, "del-other", 10, 0), other)
	for _, id := range []string{"", "no-such-message", "' OR '1'='1", "1\x00", "🙂"} {
		if deleteOne(t, d, "del", id) {
			t.Errorf("Delete(%q) reported a message found", id)
		}
	}
	if deleteOne(t, d, "del-none", all[3].ID) {
		t.Error("Delete in a room with no messages reported a message found")
	}

	// The newest and the oldest go too; paging skips them.
	if !deleteOne(t, d, "del", all[5].ID) || !deleteOne(t, d, "del", all[0].ID) {
		t.Fatal("Delete of the newest or the oldest message reported it not found")
	}
	want := without(all, 0, 2, 5)
	sameMessages(t, history(t, s, "del", 10, 0), want)
	sameMessages(t, history(t, s, "del", 2, 1), want[:2])
	if p, ok := s.(chat.Pager); ok {
		got, more := historyBefore(t, p, "del", want[2].ID, 1)
		sameMessages(t, got, want[1:2])
		if !more {
			t.Error("HistoryBefore: hasMore false with an older message left")
		}
		// A deleted message's id is still a cursor: a client whose oldest
		// loaded message was deleted scrolls back from where it was.
		for _, c := range []struct {
			deleted int
			want    []protocol.StoredChatMessage
		}{{2, want[:1]}, {5, want}, {0, nil}} {
			got, more := historyBefore(t, p, "del", all[c.deleted].ID, 10)
			sameMessages(t, got, c.want)
			if more {
				t.Errorf("HistoryBefore(deleted message %d): hasMore true with nothing older left", c.deleted)
			}
		}
	}

	// The id of the deleted newest message is not reused.
	next := appendOne(t, s, chat.Message{RoomID: "del", ConnectionID: "c", Message: "after"})
	for _, m := range all {
		if m.ID == next.ID {
			t.Fatalf("a message stored after deletions got the deleted id %s", next.ID)
		}
	}
	sameMessages(t, history(t, s, "del", 10, 0), append(want, next))
}

package chattest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// writerOf parses the "w<writer>/<seq>" texts of the concurrent cases.
func writerOf(text string) (writer, seq int, err error) {
	if _, err := fmt.Sscanf(text, "w%d/%d", &writer, &seq); err != nil {
		return 0, 0, fmt.Errorf("unexpected message %q in the room", text)
	}
	return writer, seq, nil
}

// perWriterOrder reports an error unless each writer's messages appear in
// ms in the order that writer appended them.
func perWriterOrder(ms []protocol.StoredChatMessage) error {
	last := make(map[int]int)
	for _, m := range ms {
		w, seq, err := writerOf(m.Message)
		if err != nil {
			return err
		}
		if prev, ok := last[w]; ok && seq <= prev {
			return fmt.Errorf("writer %d: message %d listed after its message %d", w, seq, prev)
		}
		last[w] = seq
	}
	return nil
}

func testConcurrentAppends(t *testing.T, s chat.Store) {
	const writers, perWriter = 50, 20
	const room = "concurrent"
	c := ctx(t)

	returned := make([][]protocol.StoredChatMessage, writers)
	errs := make(chan error, writers+4)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				m, err := s.Append(c, chat.Message{RoomID: room, ConnectionID: fmt.Sprintf("c%d", w), Message: fmt.Sprintf("w%d/%d", w, i)})
				if err != nil {
					errs <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
				returned[w] = append(returned[w], m)
			}
		}()
	}
	// Readers racing the writers must never see one writer's messages out
	// of order, however much of the room they see. Each reads a bounded
	// number of times so readers cannot starve the writers.
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for range 25 {
				got, err := s.History(c, room, writers*perWriter, 0)
				if err == nil {
					err = perWriterOrder(got)
				}
				if err != nil {
					errs <- fmt.Errorf("concurrent History: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	all := history(t, s, room, writers*perWriter, 0)
	if len(all) != writers*perWriter {
		t.Fatalf("History has %d messages, want %d", len(all), writers*perWriter)
	}
	requireUnique(t, all)
	if err := perWriterOrder(all); err != nil {
		t.Fatal(err)
	}

	// What History lists is exactly what Append returned.
	byID := make(map[string]protocol.StoredChatMessage, len(all))
	for _, m := range all {
		byID[m.ID] = m
	}
	for w, ms := range returned {
		if len(ms) != perWriter {
			t.Fatalf("writer %d stored %d messages, want %d", w, len(ms), perWriter)
		}
		for _, m := range ms {
			got, ok := byID[m.ID]
			if !ok {
				t.Fatalf("Append returned ID %q (%q) that History does not list", m.ID, m.Message)
			}
			sameMessage(t, got, m)
		}
	}

	// Every reader sees one sequence, and paging walks that same sequence.
	seqs := make([][]protocol.StoredChatMessage, 4)
	var rg sync.WaitGroup
	readErrs := make(chan error, len(seqs))
	for i := range seqs {
		rg.Add(1)
		go func() {
			defer rg.Done()
			got, err := s.History(c, room, writers*perWriter, 0)
			if err != nil {
				readErrs <- err
			}
			seqs[i] = got
		}()
	}
	rg.Wait()
	close(readErrs)
	for err := range readErrs {
		t.Fatal(err)
	}
	for i, seq := range seqs {
		if fmt.Sprint(ids(seq)) != fmt.Sprint(ids(all)) {
			t.Fatalf("reader %d saw a different order than the first read", i)
		}
	}
	var paged []protocol.StoredChatMessage
	for offset := 0; offset < len(all); offset += 100 {
		paged = append(history(t, s, room, 100, offset), paged...)
	}
	if fmt.Sprint(ids(paged)) != fmt.Sprint(ids(all)) {
		t.Fatal("pages of 100 put together differ from the full history")
	}
}

func testAppendBatch(t *testing.T, s chat.Store) {
	b, ok := s.(chat.BatchAppender)
	if !ok {
		t.Skip("store does not implement chat.BatchAppender")
	}
	c := ctx(t)
	empty, err := b.AppendBatch(c, nil)
	if err != nil || len(empty) != 0 {
		t.Fatalf("AppendBatch(nil) = %v, %v; want nothing and no error", empty, err)
	}
	before := appendOne(t, s, chat.Message{RoomID: "batch", ConnectionID: "c", Message: "before"})
	msgs := make([]chat.Message, 300) // more than one group-commit batch
	for i := range msgs {
		msgs[i] = chat.Message{RoomID: "batch", ConnectionID: "c", UserID: "u", Message: fmt.Sprintf("b%03d", i)}
		if i%3 == 0 {
			msgs[i].Metadata = []byte(fmt.Sprintf(`{"i":%d}`, i))
		}
	}
	got, err := b.AppendBatch(c, msgs)
	if err != nil {
		t.Fatalf("AppendBatch: %v", err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("AppendBatch returned %d messages for %d", len(got), len(msgs))
	}
	for i, m := range got {
		want := protocol.StoredChatMessage{ID: m.ID, RoomID: "batch", ConnectionID: "c", UserID: "u", Message: msgs[i].Message, Metadata: msgs[i].Metadata, CreatedAt: m.CreatedAt}
		sameMessage(t, m, want)
	}
	after := appendOne(t, s, chat.Message{RoomID: "batch", ConnectionID: "c", Message: "after"})
	want := append(append([]protocol.StoredChatMessage{before}, got...), after)
	requireUnique(t, want)
	sameMessages(t, history(t, s, "batch", 1000, 0), want)

	// A batch that is refused is refused whole.
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.AppendBatch(canceled, msgs[:5]); err == nil {
		t.Fatal("AppendBatch with a canceled context succeeded")
	}
	sameMessages(t, history(t, s, "batch", 1000, 0), want)
}

func testConcurrentBatches(t *testing.T, s chat.Store) {
	b, ok := s.(chat.BatchAppender)
	if !ok {
		t.Skip("store does not implement chat.BatchAppender")
	}
	const batches, size = 12, 25
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, batches)
	for w := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]chat.Message, size)
			for i := range msgs {
				msgs[i] = chat.Message{RoomID: "batches", ConnectionID: "c", Message: fmt.Sprintf("w%d/%d", w, i)}
			}
			if _, err := b.AppendBatch(c, msgs); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendBatch: %v", err)
	}
	all := history(t, s, "batches", batches*size, 0)
	if len(all) != batches*size {
		t.Fatalf("History has %d messages, want %d", len(all), batches*size)
	}
	// Each batch is one contiguous run in its own order: batches do not
	// interleave.
	for i := 0; i < len(all); i += size {
		w, _, err := writerOf(all[i].Message)
		if err != nil {
			t.Fatal(err)
		}
		for j := range size {
			gw, seq, err := writerOf(all[i+j].Message)
			if err != nil {
				t.Fatal(err)
			}
			if gw != w || seq != j {
				t.Fatalf("position %d holds %q; want batch w%d's message %d (batches interleaved or reordered)", i+j, all[i+j].Message, w, j)
			}
		}
	}
}

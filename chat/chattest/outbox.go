package chattest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// OutboxFixture is what RunOutbox needs of a store package.
type OutboxFixture struct {
	// Open returns two stores on the same chat table (and so the same
	// outbox), as two nodes of a cluster would have, both closed when t
	// ends.
	Open func(t *testing.T) (a, b chat.Store)
	// Exec runs a statement on the stores' database behind their back.
	// Table names in it are unquoted.
	Exec func(t *testing.T, query string)
	// BeforeCommit, when set, makes s call hook after its commit wrote
	// the outbox entries and before it sends COMMIT, so that a test can
	// hold a transaction open there. Stores whose writers take turns
	// (SQLite) leave it nil: no commit can interleave with another.
	BeforeCommit func(s chat.Store, hook func())
}

// outboxEncode writes an entry per message, its body the stored message.
func outboxEncode(m protocol.StoredChatMessage) (chat.OutboxEntry, bool) {
	body, _ := json.Marshal(m)
	return chat.OutboxEntry{ID: "msg_" + m.ID, Type: "chat.message", Key: "room:" + m.RoomID, Body: body, Created: time.UnixMilli(m.CreatedAt)}, true
}

func enable(t *testing.T, s chat.Store) chat.Outbox {
	t.Helper()
	st, ok := s.(chat.OutboxStore)
	if !ok {
		t.Fatalf("%T is not a chat.OutboxStore", s)
	}
	ob, err := st.EnableOutbox(ctx(t), outboxEncode)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// claim claims from ob and fails t on an error.
func claim(t *testing.T, ob chat.Outbox, lease time.Duration) (chat.OutboxEntry, bool) {
	t.Helper()
	e, ok, err := ob.Claim(ctx(t), lease)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

func depth(t *testing.T, ob chat.Outbox) int {
	t.Helper()
	n, _, err := ob.Stats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// RunOutbox checks a chat.OutboxStore: entries commit and roll back with
// their messages, claims keep each key's order and never hand one
// leased entry to two claimers, and ClaimEarly and Hurry bring retries
// forward without breaking either.
func RunOutbox(t *testing.T, f OutboxFixture) {
	t.Run("CommittedMessageLeavesExactlyOneEntry", func(t *testing.T) {
		s, _ := f.Open(t)
		ob := enable(t, s)
		m, err := s.Append(ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "hello", Metadata: json.RawMessage(`{"a":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		if n := depth(t, ob); n != 1 {
			t.Fatalf("outbox depth %d after one append, want 1", n)
		}
		e, ok := claim(t, ob, time.Minute)
		if !ok || e.ID != "msg_"+m.ID || e.Key != "room:r" || e.Type != "chat.message" {
			t.Fatalf("claimed %+v, %v; want the entry of message %s", e, ok, m.ID)
		}
		var back protocol.StoredChatMessage
		if err := json.Unmarshal(e.Body, &back); err != nil || back.ID != m.ID || back.CreatedAt != m.CreatedAt || back.Message != "hello" {
			t.Fatalf("entry body %s (%v), want the stored message %+v", e.Body, err, m)
		}
		if err := ob.Done(ctx(t), e); err != nil {
			t.Fatal(err)
		}
		if n := depth(t, ob); n != 0 {
			t.Fatalf("outbox depth %d after Done, want 0", n)
		}
	})

	t.Run("BatchWritesAnEntryPerMessageInOrder", func(t *testing.T) {
		s, _ := f.Open(t)
		ob := enable(t, s)
		b, ok := s.(chat.BatchAppender)
		if !ok {
			t.Skip("no AppendBatch")
		}
		msgs := make([]chat.Message, 5)
		for i := range msgs {
			msgs[i] = chat.Message{RoomID: "r", ConnectionID: "c", Message: fmt.Sprint(i)}
		}
		stored, err := b.AppendBatch(ctx(t), msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range stored {
			e, ok := claim(t, ob, time.Minute)
			if !ok || e.ID != "msg_"+m.ID {
				t.Fatalf("claimed %q (%v), want msg_%s: one key's entries in order", e.ID, ok, m.ID)
			}
			if err := ob.Done(ctx(t), e); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("FailedOutboxWriteStoresNoMessage", func(t *testing.T) {
		s, _ := f.Open(t)
		ob := enable(t, s)
		f.Exec(t, "DROP TABLE "+ob.Table())
		if _, err := s.Append(ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "lost"}); err == nil {
			t.Fatal("append succeeded with no outbox table")
		}
		h, err := s.History(ctx(t), "r", 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 0 {
			t.Fatalf("history %v: the message was stored without its outbox entry", h)
		}
		enable(t, s) // creates the table again
		if n := depth(t, ob); n != 0 {
			t.Fatalf("outbox depth %d, want 0", n)
		}
	})

	t.Run("FailedMessageWritesNoEntry", func(t *testing.T) {
		s, _ := f.Open(t)
		ob := enable(t, s)
		for _, m := range []chat.Message{
			{RoomID: "r", ConnectionID: "c", Message: "bad", Metadata: json.RawMessage(`{`)},
			{RoomID: "r", ConnectionID: "c", Message: "nul\x00"},
		} {
			if _, err := s.Append(ctx(t), m); err == nil {
				t.Fatalf("append of %q succeeded", m.Message)
			}
		}
		if n := depth(t, ob); n != 0 {
			t.Fatalf("outbox depth %d after refused appends, want 0", n)
		}
	})

	t.Run("ClaimKeepsEachKeysOrder", func(t *testing.T) {
		s, _ := f.Open(t)
		ob := enable(t, s)
		now := time.Now()
		for _, e := range []chat.OutboxEntry{
			{ID: "a1", Key: "room:a", Type: "member.joined", Body: []byte(`{}`), Created: now},
			{ID: "a2", Key: "room:a", Type: "member.left", Body: []byte(`{}`), Created: now},
			{ID: "b1", Key: "room:b", Type: "member.joined", Body: []byte(`{}`), Created: now},
		} {
			if err := ob.Add(ctx(t), e); err != nil {
				t.Fatal(err)
			}
		}
		a1, _ := claim(t, ob, time.Minute)
		b1, _ := claim(t, ob, time.Minute)
		if a1.ID != "a1" || b1.ID != "b1" {
			t.Fatalf("claimed %q then %q, want a1 then b1 (a2 waits for a1)", a1.ID, b1.ID)
		}
		if e, ok := claim(t, ob, time.Minute); ok {
			t.Fatalf("claimed %q while a1 is in flight", e.ID)
		}
		// A retry not yet due keeps a2 behind a1.
		a1.Attempts, a1.Due = 1, now.Add(time.Hour)
		if err := ob.Retry(ctx(t), a1); err != nil {
			t.Fatal(err)
		}
		if e, ok := claim(t, ob, time.Minute); ok {
			t.Fatalf("claimed %q while a1 waits for its retry", e.ID)
		}
		// Once due, a1 comes back with its attempts.
		a1.Due = now.Add(-time.Second)
		if err := ob.Retry(ctx(t), a1); err != nil {
			t.Fatal(err)
		}
		again, ok := claim(t, ob, time.Minute)
		if !ok || again.ID != "a1" || again.Attempts != 1 {
			t.Fatalf("claimed %+v, %v; want a1 with 1 attempt", again, ok)
		}
		if err := ob.Done(ctx(t), again); err != nil {
			t.Fatal(err)
		}
		if a2, ok := claim(t, ob, time.Minute); !ok || a2.ID != "a2" {
			t.Fatalf("claimed %q, %v after a1 was done, want a2", a2.ID, ok)
		}
	})

	t.Run("AddBatchKeepsEachKeysOrder", func(t *testing.T) {
		s, _ := f.Open(t)
		ob := enable(t, s)
		ba, ok := ob.(interface {
			AddBatch(context.Context, []chat.OutboxEntry) error
		})
		if !ok {
			t.Skipf("%T has no AddBatch", ob)
		}
		// More than one INSERT's worth, over two keys, interleaved.
		const n = 250
		now := time.Now()
		var es []chat.OutboxEntry
		for i := range n {
			key := []string{"room:a", "room:b"}[i%2]
			es = append(es, chat.OutboxEntry{ID: fmt.Sprint(key, "-", i), Key: key, Type: "member.joined", Body: []byte(`{}`), Created: now})
		}
		if err := ba.AddBatch(ctx(t), es); err != nil {
			t.Fatal(err)
		}
		if d := depth(t, ob); d != n {
			t.Fatalf("outbox depth %d, want %d", d, n)
		}
		next := map[string]int{"room:a": 0, "room:b": 1}
		for range n {
			e, ok := claim(t, ob, time.Minute)
			if !ok {
				t.Fatal("nothing to claim while entries remain")
			}
			if want := fmt.Sprint(e.Key, "-", next[e.Key]); e.ID != want {
				t.Fatalf("claimed %s, want %s next of its key", e.ID, want)
			}
			next[e.Key] += 2
			if err := ob.Done(ctx(t), e); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("EntryCommittedFirstWaitsForAnOlderOneOfItsKey", func(t *testing.T) {
		if f.BeforeCommit == nil {
			t.Skip("commits do not interleave")
		}
		testInterleavedCommits(t, f)
	})

	t.Run("SecondClaimerDoesNotGetALeasedEntry", func(t *testing.T) {
		s1, s2 := f.Open(t)
		ob1, ob2 := enable(t, s1), enable(t, s2)
		if _, err := s1.Append(ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "once"}); err != nil {
			t.Fatal(err)
		}
		e, ok := claim(t, ob1, time.Hour)
		if !ok {
			t.Fatal("first claimer got nothing")
		}
		if got, ok := claim(t, ob2, time.Hour); ok {
			t.Fatalf("second claimer got %q, leased to the first", got.ID)
		}
		// A claimer that dies holds its lease until it ends; a lease of
		// zero has ended already, so the other node takes the entry over.
		f.Exec(t, "UPDATE "+ob1.Table()+" SET lease_until = 0")
		got, ok := claim(t, ob2, time.Hour)
		if !ok || got.ID != e.ID {
			t.Fatalf("after the lease ended the second claimer got %q, %v; want %q", got.ID, ok, e.ID)
		}
	})

	t.Run("ClaimEarlyTakesTheFirstRetryDue", func(t *testing.T) { testClaimEarly(t, f) })
	t.Run("HurryMakesRetriesDueNow", func(t *testing.T) { testHurry(t, f) })
}

// testInterleavedCommits: a message's transaction wrote its outbox entry
// and has not committed yet when another node adds an entry of the same
// key (a member.joined of the room, say), which would get the later seq
// yet commit first. The later entry must not be handed out before the
// older one: neither while the older is invisible, nor beside it once it
// commits.
func testInterleavedCommits(t *testing.T, f OutboxFixture) {
	s1, s2 := f.Open(t)
	enable(t, s1)
	ob2 := enable(t, s2)
	held, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	unhold := func() { released.Do(func() { close(release) }) }
	t.Cleanup(unhold) // a failing test lets the transaction end, and the stores close
	f.BeforeCommit(s1, func() { once.Do(func() { close(held); <-release }) })
	appended := make(chan error, 1)
	go func() {
		_, err := s1.Append(ctx(t), chat.Message{RoomID: "r", ConnectionID: "c", Message: "older"})
		appended <- err
	}()
	<-held
	added := make(chan error, 1)
	go func() {
		added <- ob2.Add(ctx(t), chat.OutboxEntry{ID: "newer", Type: "member.left", Key: "room:r", Body: []byte(`{}`), Created: time.Now()})
	}()
	// An Add that does not wait for the older transaction returns at
	// once; give it the time to, so that a claim would see its entry.
	select {
	case err := <-added:
		if err != nil {
			t.Fatal(err)
		}
		added <- nil
	case <-time.After(200 * time.Millisecond):
	}
	if e, ok := claim(t, ob2, time.Minute); ok {
		t.Fatalf("claimed %q while the older entry of its key was not committed", e.ID)
	}
	unhold()
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	first, ok := claim(t, ob2, time.Minute)
	if !ok || first.ID == "newer" {
		t.Fatalf("claimed %q (%v) first, want the older message's entry", first.ID, ok)
	}
	if e, ok := claim(t, ob2, time.Minute); ok {
		t.Fatalf("claimed %q while %q of its key is in flight", e.ID, first.ID)
	}
	if err := ob2.Done(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	if e, ok := claim(t, ob2, time.Minute); !ok || e.ID != "newer" {
		t.Fatalf("claimed %q (%v) after the older one was done, want newer", e.ID, ok)
	}
}

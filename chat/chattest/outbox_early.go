package chattest

import (
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// The cases of a receiver coming back: while it is down, the sender
// probes it with the entry waiting longest for nothing (ClaimEarly), and
// once it answers, makes the backlog due at once (Hurry).

// addEntries adds an entry per id, with key "room:"+the id's first byte,
// in order.
func addEntries(t *testing.T, ob chat.Outbox, ids ...string) {
	t.Helper()
	for _, id := range ids {
		e := chat.OutboxEntry{ID: id, Key: "room:" + id[:1], Type: "member.joined", Body: []byte(`{}`), Created: time.Now()}
		if err := ob.Add(ctx(t), e); err != nil {
			t.Fatal(err)
		}
	}
}

// claimEarly claims early from ob and fails t on an error.
func claimEarly(t *testing.T, ob chat.Outbox, lease time.Duration) (chat.OutboxEntry, bool) {
	t.Helper()
	e, ok, err := ob.ClaimEarly(ctx(t), lease)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

// retryAt claims the head of want's key, checks it is want, and puts it
// back with one attempt made, due at due.
func retryAt(t *testing.T, ob chat.Outbox, want string, due time.Time) chat.OutboxEntry {
	t.Helper()
	e, ok := claim(t, ob, time.Minute)
	if !ok || e.ID != want {
		t.Fatalf("claimed %q (%v), want %s", e.ID, ok, want)
	}
	e.Attempts, e.Due = 1, due
	if err := ob.Retry(ctx(t), e); err != nil {
		t.Fatal(err)
	}
	return e
}

// testClaimEarly: ClaimEarly leases the retry due first that heads its
// key and is not leased, whichever node waits for it, with its attempts
// and due time, so that a Retry with them puts it back unchanged; it
// never takes an entry never attempted or one behind its key's head.
func testClaimEarly(t *testing.T, f OutboxFixture) {
	s1, s2 := f.Open(t)
	ob1, ob2 := enable(t, s1), enable(t, s2)
	now := time.Now()
	addEntries(t, ob1, "a1", "a2", "b1")
	// Millisecond due times: the table keeps no finer.
	dueA := now.Add(2 * time.Hour).Truncate(time.Millisecond)
	dueB := now.Add(time.Hour).Truncate(time.Millisecond)
	retryAt(t, ob1, "a1", dueA)
	retryAt(t, ob1, "b1", dueB)
	addEntries(t, ob1, "c1") // due now, never attempted: Claim's, not ClaimEarly's
	b1, ok := claimEarly(t, ob2, time.Minute)
	if !ok || b1.ID != "b1" || b1.Attempts != 1 || !b1.Due.Equal(dueB) {
		t.Fatalf("claimed early %+v, %v; want b1 with 1 attempt, due %v", b1, ok, dueB)
	}
	if e, ok := claimEarly(t, ob1, time.Minute); !ok || e.ID != "a1" {
		t.Fatalf("claimed early %q, %v; want a1, b1 being leased", e.ID, ok)
	}
	if e, ok := claimEarly(t, ob1, time.Minute); ok {
		t.Fatalf("claimed early %q: a2 is behind a1, c1 never attempted", e.ID)
	}
	if c1, ok := claim(t, ob1, time.Minute); !ok || c1.ID != "c1" {
		t.Fatalf("claimed %q, %v; want c1, the only entry due", c1.ID, ok)
	}
	if e, ok := claim(t, ob1, time.Minute); ok {
		t.Fatalf("claimed %q while a1 and b1 are leased", e.ID)
	}
	// A probe that failed puts b1 back as it was: still waiting for its
	// hour, and the first to probe again.
	if err := ob2.Retry(ctx(t), b1); err != nil {
		t.Fatal(err)
	}
	if e, ok := claim(t, ob1, time.Minute); ok {
		t.Fatalf("claimed %q: b1 is due in an hour", e.ID)
	}
	if e, ok := claimEarly(t, ob1, time.Minute); !ok || e.ID != "b1" || e.Attempts != 1 || !e.Due.Equal(dueB) {
		t.Fatalf("claimed early %+v, %v; want b1 unchanged", e, ok)
	}
}

// testHurry: Hurry makes every entry waiting for a retry and not leased
// due now, whichever node wrote it, keeping its attempts, its Due and
// each key's order; an entry leased stays its claimer's. A hurried entry
// put back by Retry as it was waits for its Due again.
func testHurry(t *testing.T, f OutboxFixture) {
	s1, s2 := f.Open(t)
	ob1, ob2 := enable(t, s1), enable(t, s2)
	later := time.Now().Add(time.Hour)
	addEntries(t, ob1, "a1", "a2", "b1", "c1")
	retryAt(t, ob1, "a1", later)
	retryAt(t, ob1, "b1", later)
	c1 := retryAt(t, ob1, "c1", later)
	if e, ok := claimEarly(t, ob1, time.Minute); !ok || e.ID != "a1" {
		t.Fatalf("claimed early %q, %v; want a1, the first due of equals", e.ID, ok)
	}
	n, err := ob2.Hurry(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("hurried %d entries, want b1 and c1 (a1 is leased)", n)
	}
	got := map[string]int{}
	for {
		e, ok := claim(t, ob2, time.Minute)
		if !ok {
			break
		}
		if _, again := got[e.ID]; again {
			t.Fatalf("%s put back as it was is claimable again before its Due", e.ID)
		}
		got[e.ID] = e.Attempts
		if e.Due.UnixMilli() != later.UnixMilli() {
			t.Fatalf("hurried %s claimed with Due %v, want the time its retry was due, %v", e.ID, e.Due, later)
		}
		if e.ID == "b1" { // tried early and failed: back as it was
			if err := ob2.Retry(ctx(t), e); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := ob2.Done(ctx(t), e); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got["b1"] != 1 || got["c1"] != c1.Attempts {
		t.Fatalf("claimed %v after Hurry, want b1 and c1 with 1 attempt each (a2 waits for a1)", got)
	}
	if n, err := ob1.Hurry(ctx(t)); n != 1 || err != nil {
		t.Fatalf("second Hurry: %d entries, %v; want b1, put back to wait", n, err)
	}
}

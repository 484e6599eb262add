package chattest

import (
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// ledgerTTL is the sweeps' ttl: an owner is dead once this passed since
// its last beat. The tests sleep past it (ledgerDeath) to make owners
// dead; they never assert how long anything took.
const (
	ledgerTTL   = 50 * time.Millisecond
	ledgerDeath = 3 * ledgerTTL
)

// ledger enables s's outbox and returns it as a chat.OutboxLedger,
// skipping t when it is not one.
func ledger(t *testing.T, s chat.Store) (chat.Outbox, chat.OutboxLedger) {
	t.Helper()
	ob := enable(t, s)
	l, ok := ob.(chat.OutboxLedger)
	if !ok {
		t.Skipf("%T is not a chat.OutboxLedger", ob)
	}
	return ob, l
}

// beat beats for owner and reports whether its beat was found.
func beat(t *testing.T, l chat.OutboxLedger, owner string) bool {
	t.Helper()
	found, err := l.Beat(ctx(t), owner)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// mark writes es and marks, failing t on an error.
func mark(t *testing.T, l chat.OutboxLedger, es []chat.OutboxEntry, marks ...chat.OutboxMark) {
	t.Helper()
	if err := l.AddMarked(ctx(t), es, marks); err != nil {
		t.Fatal(err)
	}
}

// entry is an entry of its own, id on key.
func entry(id, key string) chat.OutboxEntry {
	return chat.OutboxEntry{ID: id, Key: key, Type: "test", Body: []byte(`{}`), Created: time.Now()}
}

// sweeping records what compensate was given and returns an entry per
// mark ("left:" and its name, on its key).
type sweeping struct {
	mu    sync.Mutex
	dead  map[string][]chat.OutboxMark // by owner
	held  map[string]map[string]bool   // by owner
	calls map[string]int               // by owner
}

// newSweeping is a sweeping that saw nothing yet.
func newSweeping() *sweeping {
	return &sweeping{dead: map[string][]chat.OutboxMark{}, held: map[string]map[string]bool{}, calls: map[string]int{}}
}

// compensate is the sweep's compensate.
func (w *sweeping) compensate(dead []chat.OutboxMark, held map[string]bool) []chat.OutboxEntry {
	w.mu.Lock()
	defer w.mu.Unlock()
	var es []chat.OutboxEntry
	for _, m := range dead {
		es = append(es, entry("left:"+m.Name, m.Key))
	}
	if len(dead) > 0 {
		w.dead[dead[0].Owner], w.held[dead[0].Owner] = dead, held
		w.calls[dead[0].Owner]++
	}
	return es
}

// marksOf is owner's marks as compensate got them, by name, the value
// as a string.
func (w *sweeping) marksOf(owner string) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	for _, m := range w.dead[owner] {
		out[m.Name] = m.Key + "=" + string(m.Value)
	}
	return out
}

// sweep sweeps, for self, the owners dead for ledgerTTL, compensating
// with w, and fails t on an error.
func sweep(t *testing.T, l chat.OutboxLedger, self string, w *sweeping) int {
	t.Helper()
	n, err := l.Sweep(ctx(t), self, ledgerTTL, w.compensate)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// claimAll claims and completes every entry of ob, and returns their ids
// by key, in the order claimed.
func claimAll(t *testing.T, ob chat.Outbox) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for {
		e, ok := claim(t, ob, time.Minute)
		if !ok {
			return out
		}
		out[e.Key] = append(out[e.Key], e.ID)
		if err := ob.Done(ctx(t), e); err != nil {
			t.Fatal(err)
		}
	}
}

// never is a compensate that fails t if it is called: no owner with
// marks is dead.
func never(t *testing.T) func([]chat.OutboxMark, map[string]bool) []chat.OutboxEntry {
	return func(dead []chat.OutboxMark, _ map[string]bool) []chat.OutboxEntry {
		t.Errorf("compensate called for %+v", dead)
		return nil
	}
}

// v is a mark's value.
func v(s string) []byte { return []byte(s) }

// RunLedger checks a chat.OutboxLedger on two stores of one table (two
// nodes): marks are written with their entries, beats tell the living
// from the dead, and a dead owner's marks are compensated once, in their
// keys' order.
func RunLedger(t *testing.T, f OutboxFixture) {
	t.Run("AddMarkedWritesEntriesAndMarks", func(t *testing.T) {
		s, _ := f.Open(t)
		ob, l := ledger(t, s)
		beat(t, l, "A")
		beat(t, l, "B")
		mark(t, l, []chat.OutboxEntry{entry("e1", "room:r"), entry("e2", "room:r")},
			chat.OutboxMark{Owner: "A", Name: "m", Key: "room:r", Value: v("1")},
			chat.OutboxMark{Owner: "A", Name: "m", Key: "room:r", Value: v("2")},
			chat.OutboxMark{Owner: "A", Name: "gone", Key: "room:g", Value: v("x")},
			chat.OutboxMark{Owner: "B", Name: "m", Key: "room:r", Value: v("b")},
			chat.OutboxMark{Owner: "B", Name: "gone", Key: "room:g", Value: v("b")})
		mark(t, l, nil,
			chat.OutboxMark{Owner: "A", Name: "m", Key: "room:r", Value: v("3")},
			chat.OutboxMark{Owner: "A", Name: "gone", Key: "room:g"},
			chat.OutboxMark{Owner: "A", Name: "set-cleared", Key: "room:s", Value: v("x")},
			chat.OutboxMark{Owner: "A", Name: "set-cleared", Key: "room:s"})
		if got := claimAll(t, ob); !slices.Equal(got["room:r"], []string{"e1", "e2"}) || len(got) != 1 {
			t.Fatalf("claimed %v, want e1 then e2 of room:r", got)
		}
		time.Sleep(ledgerDeath)
		w := newSweeping()
		if n := sweep(t, l, "S", w); n != 2 {
			t.Fatalf("swept %d owners, want A and B", n)
		}
		if got, want := w.marksOf("A"), map[string]string{"m": "room:r=3"}; !maps.Equal(got, want) {
			t.Fatalf("A's marks %v, want %v: the last value set, cleared marks gone", got, want)
		}
		if got, want := w.marksOf("B"), map[string]string{"m": "room:r=b", "gone": "room:g=b"}; !maps.Equal(got, want) {
			t.Fatalf("B's marks %v, want %v: another owner's marks of one name are its own", got, want)
		}
		// Whichever was swept first saw the other hold m; A's gone was
		// cleared.
		if w.held["A"]["m"] == w.held["B"]["m"] || w.held["B"]["gone"] {
			t.Fatalf("held elsewhere: A %v, B %v; want m for the first swept, gone for none", w.held["A"], w.held["B"])
		}
	})

	t.Run("BeatFindsItsRowUntilSwept", func(t *testing.T) {
		s, _ := f.Open(t)
		_, l := ledger(t, s)
		if beat(t, l, "A") {
			t.Fatal("first beat found a beat")
		}
		// Quick beats share a millisecond: a beat that changes no value
		// found the row all the same.
		for i := range 50 {
			if !beat(t, l, "A") {
				t.Fatalf("beat %d did not find the owner's row", i+2)
			}
		}
		time.Sleep(ledgerDeath)
		if n := sweep(t, l, "S", newSweeping()); n != 1 {
			t.Fatalf("swept %d owners, want A", n)
		}
		if beat(t, l, "A") {
			t.Fatal("beat after the owner was swept found a beat")
		}
		if !beat(t, l, "A") {
			t.Fatal("beat after the first again did not find the owner's row")
		}
	})

	t.Run("SweepCompensatesADeadOwnerOnceInKeyOrder", func(t *testing.T) { testSweep(t, f) })

	t.Run("RacingSweepersCompensateEachOwnerOnce", func(t *testing.T) { testRacingSweepers(t, f) })

	t.Run("OwnersMarkingAtOnceAllCommit", func(t *testing.T) { testConcurrentMarks(t, f) })

	t.Run("EntryOnAnUnmarkedKeyFailsTheSweep", func(t *testing.T) {
		s, _ := f.Open(t)
		ob, l := ledger(t, s)
		beat(t, l, "A")
		mark(t, l, nil, chat.OutboxMark{Owner: "A", Name: "m1", Key: "room:r", Value: v("1")})
		time.Sleep(ledgerDeath)
		n, err := l.Sweep(ctx(t), "S", ledgerTTL, func([]chat.OutboxMark, map[string]bool) []chat.OutboxEntry {
			return []chat.OutboxEntry{entry("left", "room:r"), entry("stray", "room:other")}
		})
		if err == nil || n != 0 {
			t.Fatalf("sweep with a stray key: %d swept, error %v; want 0 and an error", n, err)
		}
		if d := depth(t, ob); d != 0 {
			t.Fatalf("outbox depth %d after the failed sweep, want 0", d)
		}
		w := newSweeping()
		if n := sweep(t, l, "S", w); n != 1 || w.marksOf("A")["m1"] != "room:r=1" {
			t.Fatalf("swept %d owners, A's marks %v; want A with m1 left in place", n, w.marksOf("A"))
		}
	})

	t.Run("RetireRemovesMarksAndBeat", func(t *testing.T) {
		s, _ := f.Open(t)
		_, l := ledger(t, s)
		beat(t, l, "A")
		mark(t, l, nil, chat.OutboxMark{Owner: "A", Name: "m1", Key: "room:r", Value: v("1")})
		if err := l.Retire(ctx(t), "A"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ledgerDeath)
		if n, err := l.Sweep(ctx(t), "S", ledgerTTL, never(t)); n != 0 || err != nil {
			t.Fatalf("sweep after Retire: %d swept, error %v; want nothing", n, err)
		}
		if beat(t, l, "A") {
			t.Fatal("beat after Retire found a beat")
		}
	})
}

package chattest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// testSweep: owner A dies holding a room mark and a user mark that a live
// owner B holds too; B's sweep compensates A once, behind the room's
// earlier entry, and leaves B's marks alone.
func testSweep(t *testing.T, f OutboxFixture) {
	a, b := f.Open(t)
	ob, la := ledger(t, a)
	_, lb := ledger(t, b)
	beat(t, la, "A")
	beat(t, lb, "B")
	mark(t, la, []chat.OutboxEntry{entry("joined", "room:r")},
		chat.OutboxMark{Owner: "A", Name: "m1", Key: "room:r", Value: v("in r")},
		chat.OutboxMark{Owner: "A", Name: "user\nu", Key: "user:u", Value: v("online")})
	mark(t, lb, nil, chat.OutboxMark{Owner: "B", Name: "user\nu", Key: "user:u", Value: v("online")})
	time.Sleep(ledgerDeath)
	beat(t, lb, "B")
	w := newSweeping()
	if n := sweep(t, lb, "B", w); n != 1 {
		t.Fatalf("swept %d owners, want A", n)
	}
	if got, want := w.marksOf("A"), map[string]string{"m1": "room:r=in r", "user\nu": "user:u=online"}; !maps.Equal(got, want) {
		t.Fatalf("compensated A's marks %v, want %v", got, want)
	}
	if held := w.held["A"]; !held["user\nu"] || held["m1"] {
		t.Fatalf("held elsewhere %v, want user\\nu alone", held)
	}
	got := claimAll(t, ob)
	if want := map[string][]string{"room:r": {"joined", "left:m1"}, "user:u": {"left:user\nu"}}; !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("claimed %q, want %q: the sweep's entries behind the key's earlier ones", got, want)
	}
	for _, l := range []chat.OutboxLedger{la, lb} {
		if n, err := l.Sweep(ctx(t), "B", ledgerTTL, never(t)); n != 0 || err != nil {
			t.Fatalf("second sweep: %d swept, error %v; want nothing", n, err)
		}
	}
	// A's marks went with it: back and dead again, it has none.
	if beat(t, la, "A") {
		t.Fatal("A's beat survived the sweep")
	}
	time.Sleep(ledgerDeath)
	beat(t, lb, "B")
	if n, err := la.Sweep(ctx(t), "B", ledgerTTL, never(t)); n != 1 || err != nil {
		t.Fatalf("sweep of A with no marks: %d swept, error %v; want A", n, err)
	}
	// B's mark of the same name is still B's.
	time.Sleep(ledgerDeath)
	w = newSweeping()
	if n := sweep(t, la, "S", w); n != 1 || w.marksOf("B")["user\nu"] != "user:u=online" || w.held["B"]["user\nu"] {
		t.Fatalf("swept %d, B's marks %v held elsewhere %v; want B's user\\nu, held by no one else", n, w.marksOf("B"), w.held["B"])
	}
}

// testRacingSweepers: two nodes sweep the same dead owners at once; each
// owner is compensated by one of them, once.
func testRacingSweepers(t *testing.T, f OutboxFixture) {
	a, b := f.Open(t)
	ob, la := ledger(t, a)
	_, lb := ledger(t, b)
	const owners = 8
	for i := range owners {
		o := fmt.Sprint("D", i)
		beat(t, la, o)
		mark(t, la, nil, chat.OutboxMark{Owner: o, Name: "n", Key: fmt.Sprint("room:", i%3), Value: v(o)})
	}
	time.Sleep(ledgerDeath)
	w := newSweeping()
	ns := make([]int, 2)
	errs := make([]error, 2)
	c := ctx(t)
	var wg sync.WaitGroup
	for i, l := range []chat.OutboxLedger{la, lb} {
		wg.Go(func() { ns[i], errs[i] = l.Sweep(c, fmt.Sprint("S", i), ledgerTTL, w.compensate) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if ns[0]+ns[1] != owners {
		t.Fatalf("swept %d and %d owners, want %d in all", ns[0], ns[1], owners)
	}
	for i := range owners {
		if c := w.calls[fmt.Sprint("D", i)]; c != 1 {
			t.Fatalf("owner D%d compensated %d times, want once", i, c)
		}
	}
	if d := depth(t, ob); d != owners {
		t.Fatalf("outbox depth %d, want an entry per owner", d)
	}
}

// testConcurrentMarks: owners on two nodes set and clear marks at once,
// none of their keys shared; every transaction commits (none deadlocks).
func testConcurrentMarks(t *testing.T, f OutboxFixture) {
	a, b := f.Open(t)
	_, la := ledger(t, a)
	_, lb := ledger(t, b)
	const owners, rounds = 4, 20
	errs := make([]error, owners)
	c := ctx(t)
	var wg sync.WaitGroup
	for i := range owners {
		l := []chat.OutboxLedger{la, lb}[i%2]
		wg.Go(func() {
			o := fmt.Sprint("W", i)
			for r := range rounds {
				var value []byte
				if r%2 == 0 {
					value = v(o)
				}
				m := chat.OutboxMark{Owner: o, Name: fmt.Sprint("n", r/2), Key: fmt.Sprint("room:", i, "-", r/2), Value: value}
				if errs[i] = l.AddMarked(c, []chat.OutboxEntry{entry(o, m.Key)}, []chat.OutboxMark{m}); errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

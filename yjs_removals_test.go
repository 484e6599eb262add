package livesync

import "testing"

// TestRemovalsStayBounded: a document remembers at most maxRemovals
// removals, the latest, whatever the churn of clients that come back.
func TestRemovalsStayBounded(t *testing.T) {
	var r removals
	for i := range uint64(10 * maxRemovals) {
		r.add(i, 1)
		if i%3 == 0 {
			r.forget(i)
		}
		if i%5 == 0 {
			r.add(i/2, 2) // one removed again
		}
	}
	if len(r.clock) > maxRemovals || len(r.order) > 2*maxRemovals+1 {
		t.Fatalf("%d removals remembered, order of %d; bound %d", len(r.clock), len(r.order), maxRemovals)
	}
	last := uint64(10*maxRemovals - 2) // one not forgotten (not a multiple of 3)
	if last%3 == 0 {
		last--
	}
	if _, ok := r.clock[last]; !ok {
		t.Fatalf("the latest removal (%d) is forgotten", last)
	}
	for c := range r.clock {
		found := false
		for _, o := range r.order {
			found = found || o == c
		}
		if !found {
			t.Fatalf("client %d remembered but not in order: it could never be evicted", c)
		}
	}
}

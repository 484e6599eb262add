package livesynctest

import (
	"fmt"
	"testing"

	"github.com/openlivesync/livesync/protocol"
)

// errorsOf is a testing.TB that records Errorf instead of failing.
type errorsOf struct {
	testing.TB
	got []string
}

func (e *errorsOf) Helper() {}

func (e *errorsOf) Errorf(format string, args ...any) {
	e.got = append(e.got, fmt.Sprintf(format, args...))
}

// TestViewApply: deltas that fit the view are applied silently; a join of
// a member already there, and a leave or update of one missing, are each
// reported.
func TestViewApply(t *testing.T) {
	v := View{"a": {ConnectionID: "a"}}
	rec := &errorsOf{TB: t}
	v.Apply(rec, protocol.PresenceUpdatedPayload{
		Joined:  []protocol.PresenceEntry{{ConnectionID: "b"}},
		Updated: []protocol.PresenceEntry{{ConnectionID: "a", Presence: []byte(`{"x":1}`)}},
	})
	v.Apply(rec, protocol.PresenceUpdatedPayload{Left: []string{"b"}})
	if len(rec.got) != 0 || !v.Is("a") || string(v["a"].Presence) != `{"x":1}` {
		t.Fatalf("fitting deltas: errors %q, view %v", rec.got, v)
	}
	v.Apply(rec, protocol.PresenceUpdatedPayload{
		Joined:  []protocol.PresenceEntry{{ConnectionID: "a"}},
		Left:    []string{"gone"},
		Updated: []protocol.PresenceEntry{{ConnectionID: "never"}},
	})
	if len(rec.got) != 3 {
		t.Fatalf("errors %q, want one each for the join, the leave and the update", rec.got)
	}
	if !v.Is("a", "never") || v.Is("a") || !v.Is("never", "a", "a") {
		t.Fatalf("Is over %v", v.IDs())
	}
}

package livesynctest

import (
	"maps"
	"slices"
	"testing"

	"github.com/openlivesync/livesync/protocol"
)

// View is one member's picture of its room by connection id: the
// room_joined snapshot with every presence_updated since applied.
type View map[string]protocol.PresenceEntry

// Apply applies a presence delta, failing t (without stopping it) when
// the delta does not fit the view: a join of a member already in it, or
// a leave or update of one it lacks.
func (v View) Apply(t testing.TB, p protocol.PresenceUpdatedPayload) {
	t.Helper()
	for _, e := range p.Joined {
		if _, dup := v[e.ConnectionID]; dup {
			t.Errorf("joined %s, already in view", e.ConnectionID)
		}
		v[e.ConnectionID] = e
	}
	for _, id := range p.Left {
		if _, ok := v[id]; !ok {
			t.Errorf("left %s, not in view", id)
		}
		delete(v, id)
	}
	for _, e := range p.Updated {
		if _, ok := v[e.ConnectionID]; !ok {
			t.Errorf("updated %s, not in view", e.ConnectionID)
		}
		v[e.ConnectionID] = e
	}
}

// Is reports whether the view holds exactly the members ids.
func (v View) Is(ids ...string) bool {
	return slices.Equal(v.IDs(), slices.Compact(slices.Sorted(slices.Values(ids))))
}

// IDs returns the connection ids of the view's members, sorted.
func (v View) IDs() []string {
	return slices.Sorted(maps.Keys(v))
}

package livesync

// A client whose awareness state was removed (its connection ended, or
// it said goodbye) is remembered by every peer at the removal's clock:
// y-protocols ignores a later state of that client at that clock or
// below. A provider whose socket was cut comes back with its client id
// and the clock it had, below the removal's (clock + 1), and its cursor
// would stay hidden until its renewals, one every 15 s, passed it. So
// the server remembers the removals too, and answers such a state, to its
// sender only, with the removal: y-protocols then takes its own state for
// removed by a peer, raises its clock past the removal's and sends the
// state again, which every peer accepts. Every node that applies a
// removal (its own peer's, or another node's, relayed or swept)
// remembers it, since the provider may come back through any of them,
// or through one that never saw it: see relayedAwarenessLocked.

// maxRemovals bounds the removals a document remembers: the oldest go
// first. A peer can make removals only as fast as it can announce client
// ids (yMaxOwnedClients per connection), and a removal forgotten costs
// only the wait for a renewal.
const maxRemovals = 4096

// removals are a document's remembered removals, by client id, with
// their order for eviction. The zero value is empty. ydoc.mu guards it.
type removals struct {
	clock map[uint64]uint64
	order []uint64 // client ids, oldest removal first; may hold forgotten ones
}

// add remembers that client was removed at clock.
func (r *removals) add(client, clock uint64) {
	if r.clock == nil {
		r.clock = make(map[uint64]uint64)
	}
	if _, ok := r.clock[client]; !ok {
		r.order = append(r.order, client)
	}
	r.clock[client] = clock
	// Every remembered client is in order, so this ends before it is
	// empty.
	for len(r.clock) > maxRemovals {
		delete(r.clock, r.order[0])
		r.order = r.order[1:]
	}
	if len(r.order) > 2*maxRemovals {
		r.compact()
	}
}

// compact drops from order the clients forgotten since (and the older of
// two places of one client), keeping it within twice what it stands for.
func (r *removals) compact() {
	last := make(map[uint64]int, len(r.clock))
	for i, c := range r.order {
		last[c] = i
	}
	kept := make([]uint64, 0, len(r.clock))
	for i, c := range r.order {
		if _, ok := r.clock[c]; ok && last[c] == i {
			kept = append(kept, c)
		}
	}
	r.order = kept
}

// forget drops client's removal: it has a state again.
func (r *removals) forget(client uint64) {
	delete(r.clock, client)
	if len(r.clock) == 0 {
		r.order = nil
	}
}

// outdated splits entries into those that may be recorded and, for each
// state of a client without one known (aware) and at or below its
// removal's clock, the removal to answer it with.
func (r *removals) outdated(aware map[uint64]yAware, entries []yAwarenessEntry) (kept, answers []yAwarenessEntry) {
	if len(r.clock) == 0 {
		return entries, nil
	}
	for i, e := range entries {
		removed, ok := r.clock[e.client]
		_, known := aware[e.client]
		if !ok || known || e.state == "null" || e.clock > removed {
			if answers != nil {
				kept = append(kept, e)
			}
			continue
		}
		if answers == nil {
			kept = append(make([]yAwarenessEntry, 0, len(entries)), entries[:i]...)
		}
		answers = append(answers, yAwarenessEntry{client: e.client, clock: removed, state: "null"})
	}
	if answers == nil {
		return entries, nil
	}
	return kept, answers
}

// relayedAwarenessLocked records an awareness update of owner's clients
// that another node relayed (payload, as relayed). A provider may come
// back through a node that never saw its removal (one where the document
// was not open then), which takes its stale state for new and relays it.
// The nodes that remember the removal keep that state from their peers,
// whose y-protocols would ignore it, and relay the removal back as if
// from owner: the node where owner is connected applies it and sends it
// to the provider, which answers as above, and the others drop the stale
// state. A removal is never answered, so this cannot loop.
func (d *ydoc) relayedAwarenessLocked(owner, user string, entries []yAwarenessEntry, payload []byte) {
	kept, answers := d.removed.outdated(d.aware, entries)
	if len(answers) > 0 {
		d.relayLocked(docRelayAwareness, owner+"\t"+user, encodeYAwareness(answers))
		if len(kept) == 0 {
			return
		}
		payload = encodeYAwareness(kept)
	}
	d.awarenessLocked(owner, user, kept, yAwarenessUpdateFrame(payload), 0)
}

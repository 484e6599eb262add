package livesync

import (
	"strconv"
	"time"
)

// Awareness (y-protocols awareness.js) is each client's ephemeral state:
// cursors, selections, names. The server keeps the latest state of every
// client id so that a joiner sees everyone at once, and the connection
// that first announced a client id owns it: when that connection ends,
// here or on another node, the state is removed for everyone. Another
// connection of the same user (a provider reconnecting with its client
// id before its old socket is known dead) takes the client over; one of
// another user cannot change or remove it, so that no member can forge
// or hide someone else's cursor and name.

// yAware is one client's last known awareness state.
type yAware struct {
	clock uint64
	state string
	// owner is the id of the connection that announced the client, on
	// this node or another, and user its user (awarenessUser).
	owner, user string
	// asked is when its owner was last asked to renew it (see
	// yjs_renewals.go).
	asked time.Time
}

// awarenessUser is how awareness records the user of a connection: the
// user id quoted (so it holds no tab or newline and travels in a relay's
// header), `""` for anonymous connections, which can therefore take
// each other's clients over, as any peer could before ownership.
func awarenessUser(u *UserInfo) string { return strconv.Quote(userID(u)) }

// claimLocked returns entries without those that would change a client
// owner, of user, may not change: one owned by a connection of another
// user. A client owned by another connection of the same user passes to
// owner when its entry changes it; an entry that changes nothing (peers
// echo the states they receive) passes as it is. The result shares
// entries' memory when nothing is left out.
func (d *ydoc) claimLocked(owner, user string, entries []yAwarenessEntry) []yAwarenessEntry {
	var kept []yAwarenessEntry
	for i, e := range entries {
		known, ok := d.aware[e.client]
		switch {
		case !ok, known.owner == owner, !e.changes(known):
		case known.user != user:
			if kept == nil {
				kept = append(make([]yAwarenessEntry, 0, len(entries)), entries[:i]...)
			}
			continue
		default:
			d.disownLocked(known.owner)
			d.owned[owner]++
			known.owner = owner
			d.aware[e.client] = known
		}
		if kept != nil {
			kept = append(kept, e)
		}
	}
	if kept == nil {
		return entries
	}
	return kept
}

// awareness records an awareness update from owner (a connection of this
// node, or of another when relayed) and sends frame, the message as
// received, to every local peer, the sender included: a provider that
// hears nothing for 30 s reconnects, and a lone peer's own renewals
// (every 15 s) are what keeps it connected, since browsers do not surface
// pings. A message that changes nothing (peers re-send the states they
// receive, with the same clock) is not sent on. limit bounds the client
// ids owner may introduce (0: no bound, for what another node checked).
// It reports whether the message changed anything.
func (d *ydoc) awarenessLocked(owner, user string, entries []yAwarenessEntry, frame []byte, limit int) (bool, error) {
	if kept := d.claimLocked(owner, user, entries); len(kept) < len(entries) {
		entries, frame = kept, yAwarenessFrame(kept)
	}
	fresh := false
	for _, e := range entries {
		known, ok := d.aware[e.client]
		switch {
		case ok && !e.changes(known):
		case e.state == "null":
			if ok {
				delete(d.aware, e.client)
				d.disownLocked(known.owner)
				d.removed.add(e.client, e.clock)
				fresh = true
			}
		case !ok:
			if limit > 0 && d.owned[owner] >= limit {
				return fresh, errTooManyClients
			}
			d.removed.forget(e.client)
			d.owned[owner]++
			d.aware[e.client] = yAware{clock: e.clock, state: e.state, owner: owner, user: user}
			fresh = true
		default:
			known.clock, known.state = e.clock, e.state
			d.aware[e.client] = known
			fresh = true
		}
	}
	if fresh {
		for p := range d.peers {
			p.send(frame)
		}
	}
	return fresh, nil
}

// awareness handles an awareness message of local peer c: update is its
// payload (the awareness update), frame the whole message as a frame.
// allow is asked, once, when the message would change anything (an echo
// of states known changes nothing and costs no relay): false drops the
// message, and awareness reports that with dropped. A dropped state
// loses nothing lasting: a provider's next message carries its whole
// state, and it renews it every 15 s.
func (d *ydoc) awareness(c *conn, entries []yAwarenessEntry, update, frame []byte, allow func() bool) (dropped bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	user := awarenessUser(c.user)
	kept := d.claimLocked(c.id, user, entries)
	kept, removals := d.removed.outdated(d.aware, kept)
	if len(removals) > 0 {
		c.send(yAwarenessFrame(removals))
		d.renewOthersLocked(c) // a provider back: it ignores what it saw before (yjs_renewals.go)
	}
	if len(kept) < len(entries) {
		entries, frame, update = kept, yAwarenessFrame(kept), encodeYAwareness(kept)
	}
	if !d.awarenessChangesLocked(entries) {
		return false, nil
	}
	if !allow() {
		return true, nil
	}
	var newcomers []yAwarenessEntry // states of clients not held: see yjs_renewals.go
	for _, e := range entries {
		if _, held := d.aware[e.client]; !held && e.state != "null" {
			newcomers = append(newcomers, e)
		}
	}
	fresh, err := d.awarenessLocked(c.id, user, entries, frame, yMaxOwnedClients)
	if fresh {
		d.relayLocked(docRelayAwareness, c.id+"\t"+user, update)
	}
	if asks := d.renewEntriesLocked(c.id, newcomers); len(asks) > 0 {
		c.send(yAwarenessFrame(asks))
		if len(d.peers) == 1 {
			// The document was not open here: c may be a provider back,
			// whose removal this node forgot with the document.
			d.renewOthersLocked(c)
		}
	}
	return false, err
}

// awarenessChangesLocked reports whether awarenessLocked would record
// any of entries, by the same rules.
func (d *ydoc) awarenessChangesLocked(entries []yAwarenessEntry) bool {
	for _, e := range entries {
		known, ok := d.aware[e.client]
		if ok && e.changes(known) || !ok && e.state != "null" {
			return true
		}
	}
	return false
}

// changes reports whether e changes known, the recorded state of its
// client: a removal as new as it, or a newer state.
func (e yAwarenessEntry) changes(known yAware) bool {
	if e.state == "null" {
		return e.clock >= known.clock
	}
	return e.clock > known.clock
}

func (d *ydoc) disownLocked(owner string) {
	if d.owned[owner]--; d.owned[owner] <= 0 {
		delete(d.owned, owner)
	}
}

// dropOwnerLocked removes the awareness states owner introduced and tells
// the local peers they are gone (state null, clock + 1).
func (d *ydoc) dropOwnerLocked(owner string) {
	if d.owned[owner] == 0 {
		return
	}
	var gone []yAwarenessEntry
	for id, a := range d.aware {
		if a.owner == owner {
			gone = append(gone, yAwarenessEntry{client: id, clock: a.clock + 1, state: "null"})
			delete(d.aware, id)
			d.removed.add(id, a.clock+1)
		}
	}
	delete(d.owned, owner)
	if len(gone) > 0 && len(d.peers) > 0 {
		f := yAwarenessFrame(gone)
		for p := range d.peers {
			p.send(f)
		}
	}
}

// awarenessFrameLocked is an awareness message with the known states, as
// many as fit in budget bytes. A joiner (or a query) is sent them at
// once, as a snapshot (see conn.sendSnapshot), so what it is sent must
// fit its send queue, whatever the number of peers and the size of their
// states: the states left out reach it when their clients renew them
// (every 15 s) or change them.
func (d *ydoc) awarenessFrameLocked(budget int) []byte {
	entries := make([]yAwarenessEntry, 0, len(d.aware))
	for id, a := range d.aware {
		// 24: the most the client id, clock and length can take.
		if size := 24 + len(a.state); size <= budget {
			budget -= size
			entries = append(entries, yAwarenessEntry{client: id, clock: a.clock, state: a.state})
		}
	}
	return yAwarenessFrame(entries)
}

// awarenessBudget is the most a joiner's (or a query's) awareness frame
// may hold: half the send queue, leaving the rest for what is relayed
// while the joiner reads it.
func (s *Server) awarenessBudget() int { return s.limits.SendQueueBytes / 2 }

// queryAwareness sends c the known awareness states.
func (d *ydoc) queryAwareness(c *conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c.sendSnapshot(d.awarenessFrameLocked(d.srv.awarenessBudget()))
}

package livesync

// Awareness (y-protocols awareness.js) is each client's ephemeral state:
// cursors, selections, names. The server keeps the latest state of every
// client id so that a joiner sees everyone at once, and the connection
// that first announced a client id owns it: when that connection ends,
// here or on another node, the state is removed for everyone.

// yAware is one client's last known awareness state.
type yAware struct {
	clock uint64
	state string
	// owner is the id of the connection that announced the client, on
	// this node or another.
	owner string
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
func (d *ydoc) awarenessLocked(owner string, entries []yAwarenessEntry, frame []byte, limit int) (bool, error) {
	fresh := false
	for _, e := range entries {
		known, ok := d.aware[e.client]
		switch {
		case e.state == "null":
			if ok && e.clock >= known.clock {
				delete(d.aware, e.client)
				d.disownLocked(known.owner)
				fresh = true
			}
		case !ok:
			if limit > 0 && d.owned[owner] >= limit {
				return fresh, errTooManyClients
			}
			d.owned[owner]++
			d.aware[e.client] = yAware{clock: e.clock, state: e.state, owner: owner}
			fresh = true
		case e.clock > known.clock:
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
	if !d.awarenessChangesLocked(entries) {
		return false, nil
	}
	if !allow() {
		return true, nil
	}
	fresh, err := d.awarenessLocked(c.id, entries, frame, yMaxOwnedClients)
	if fresh {
		d.relayLocked(docRelayAwareness, c.id, update)
	}
	return false, err
}

// awarenessChangesLocked reports whether awarenessLocked would record
// any of entries, by the same rules.
func (d *ydoc) awarenessChangesLocked(entries []yAwarenessEntry) bool {
	for _, e := range entries {
		known, ok := d.aware[e.client]
		switch {
		case e.state == "null":
			if ok && e.clock >= known.clock {
				return true
			}
		case !ok, e.clock > known.clock:
			return true
		}
	}
	return false
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

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
func (d *ydoc) awareness(c *conn, entries []yAwarenessEntry, update, frame []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fresh, err := d.awarenessLocked(c.id, entries, frame, yMaxOwnedClients)
	if fresh {
		d.relayLocked(docRelayAwareness, c.id, update)
	}
	return err
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

// awarenessFrameLocked is an awareness message with every known state.
func (d *ydoc) awarenessFrameLocked() []byte {
	entries := make([]yAwarenessEntry, 0, len(d.aware))
	for id, a := range d.aware {
		entries = append(entries, yAwarenessEntry{client: id, clock: a.clock, state: a.state})
	}
	return yAwarenessFrame(entries)
}

// queryAwareness sends c every known awareness state.
func (d *ydoc) queryAwareness(c *conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c.send(d.awarenessFrameLocked())
}

package livesync

import "time"

// A y-protocols peer ignores a state of a client at a clock it has seen
// already, even when it no longer shows that client: a provider whose
// socket closes removes every other client's state but keeps their
// clocks, and so does every peer for a client that was removed. Two
// cases then leave cursors hidden until their clients renew them (every
// 15 s):
//
//   - A provider comes back to a server that does not hold its state (the
//     server restarted, or the document was closed and opened again): its
//     state arrives at the clock the peers saw, and they ignore it.
//   - A provider comes back while the others stay: the server sends it
//     their states at the clocks it saw before its socket closed, and it
//     ignores them.
//
// y-protocols answers a removal of its own state at its own clock by
// raising its clock and sending the state again, which every peer takes.
// So the server asks for that: the first state of a client it does not
// hold is answered, to its sender only, with such a removal (the sender
// sends the state again above every peer's clock); and when a provider
// comes back (its state outdated by a remembered removal, see removals,
// or its node had closed the document, and with it the removal: the
// first peer of a document a node opens may be one), the other peers
// are asked the same for their clients, each client at
// most once per renewEvery: this node's, and through the broker every
// other node's. A provider that comes back before its old socket is known
// dead is not told from a peer echoing the states it receives (y-websocket
// sends them back), so its peers' cursors wait for their renewals.

// renewEvery bounds how often a client is asked to renew: a renewal
// costs a message to every peer, as the client's own renewals do every
// 15 s.
const renewEvery = 2 * time.Second

// renewEntriesLocked returns, for the states of clients the document did
// not hold that owner announced (newcomers) and that it now holds as
// owner's at their clock, a removal at that clock: what makes their
// provider send them again above it.
func (d *ydoc) renewEntriesLocked(owner string, newcomers []yAwarenessEntry) []yAwarenessEntry {
	var asks []yAwarenessEntry
	for _, e := range newcomers {
		if a, ok := d.aware[e.client]; ok && a.owner == owner && a.clock == e.clock {
			asks = append(asks, yAwarenessEntry{client: e.client, clock: e.clock, state: "null"})
		}
	}
	return asks
}

// renewOthersLocked asks every peer but c, on this node and the others,
// to renew the states of the clients it owns (c came back).
func (d *ydoc) renewOthersLocked(c *conn) {
	d.renewPeersLocked(c)
	d.relayLocked(docRelayRenew, "", nil)
}

// renewPeersLocked asks every local peer but c (nil: every one) to renew
// the states of the clients it owns, but those asked less than
// renewEvery ago.
func (d *ydoc) renewPeersLocked(c *conn) {
	local := make(map[string]*conn, len(d.peers))
	for p := range d.peers {
		if p != c {
			local[p.id] = p
		}
	}
	now := time.Now()
	asks := make(map[*conn][]yAwarenessEntry)
	for id, a := range d.aware {
		if p := local[a.owner]; p != nil && now.Sub(a.asked) >= renewEvery {
			asks[p] = append(asks[p], yAwarenessEntry{client: id, clock: a.clock, state: "null"})
			a.asked = now
			d.aware[id] = a
		}
	}
	for p, entries := range asks {
		p.send(yAwarenessFrame(entries))
	}
}

package livesync

import (
	"errors"
	"sync"

	"github.com/openlivesync/livesync/yupdate"
)

// ydoc is one shared document, held in memory: its state as one merged
// Yjs update plus the updates received since, the connections editing it,
// and the awareness states (cursors) they announced.
//
// Every frame to the document's peers is queued under mu, so that each
// peer sees the document's messages in one order, and a joiner's sync
// step 1 and snapshot come before any update relayed after its arrival.
type ydoc struct {
	name string

	mu      sync.Mutex
	state   []byte   // the merged update; emptyYUpdate for a new document
	pending [][]byte // updates since state was merged, in arrival order
	pendBy  int64    // bytes in pending
	peers   map[*conn]struct{}
	// aware is the latest awareness state of each client id, and the
	// connection that first announced it (which owns it: its end removes
	// the state for everyone). Removed states are forgotten.
	aware map[uint64]yAware
	owned map[*conn]int // client ids each connection owns
	gone  bool          // forgotten: its last peer left (see leave)
}

// yAware is one client's last known awareness state.
type yAware struct {
	clock uint64
	state string
	owner *conn
}

// emptyYUpdate is the update of an empty document: no structs, no deletes.
var emptyYUpdate = []byte{0, 0}

// Compaction: pending updates are merged into state when there are
// yCompactCount of them, or when they weigh as much as state (at least
// yCompactBytes). A merge costs the whole document, so merging on every
// keystroke would make typing cost grow with the document; merging when
// the pending updates double its size keeps the cost per byte received
// constant, and a sync step 1 (which needs one update to diff) merges
// whatever is pending.
const (
	yCompactCount = 512
	yCompactBytes = 64 << 10
	// yMaxOwnedClients bounds the awareness client ids one connection may
	// introduce (a provider has one); beyond it the connection is closed.
	yMaxOwnedClients = 32
)

// acquireDoc returns the document name, creating it (empty) when needed.
// A document lives while it has peers: kept in memory only, it is
// forgotten when its last peer leaves (as y-websocket's server does
// without persistence), so that documents nobody edits any more hold no
// memory and a client cannot pile up documents by visiting names.
func (s *Server) acquireDoc(name string) *ydoc {
	s.docsMu.Lock()
	defer s.docsMu.Unlock()
	if s.docs == nil {
		s.docs = make(map[string]*ydoc)
	}
	d := s.docs[name]
	if d == nil {
		d = &ydoc{name: name, state: emptyYUpdate, peers: make(map[*conn]struct{}),
			aware: make(map[uint64]yAware), owned: make(map[*conn]int)}
		s.docs[name] = d
	}
	return d
}

// compactLocked merges the pending updates into state. d.mu held. On a
// merge error (which the checks on arrival should make impossible) the
// pending updates are kept, so nothing is lost, and the error returned.
func (d *ydoc) compactLocked() error {
	if len(d.pending) == 0 {
		return nil
	}
	parts := make([][]byte, 0, len(d.pending)+1)
	parts = append(parts, d.state)
	parts = append(parts, d.pending...)
	merged, err := yupdate.MergeUpdates(parts)
	if err != nil {
		return err
	}
	d.state = merged
	clear(d.pending)
	d.pending, d.pendBy = d.pending[:0], 0
	return nil
}

// join adds c to the document's peers and queues what a new peer is sent
// first: the server's sync step 1 (its state vector, so that the client
// answers with what the server lacks) and the awareness states known.
func (d *ydoc) join(c *conn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return errDocGone
	}
	if err := d.compactLocked(); err != nil {
		return err
	}
	sv, err := yupdate.EncodeStateVectorFromUpdate(d.state)
	if err != nil {
		return err
	}
	d.peers[c] = struct{}{}
	c.send(ySyncFrame(ySyncStep1, sv))
	if len(d.aware) > 0 {
		c.send(d.awarenessFrameLocked())
	}
	return nil
}

// snapshot returns the document as one merged update.
func (d *ydoc) snapshot() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.compactLocked()
	return d.state, err
}

// apply adds update, which decoded, to the document and relays it to the
// other peers as frame (whose tail is the update). It refuses an update
// that would take the document beyond limit bytes.
func (d *ydoc) apply(from *conn, update, frame []byte, limit int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if int64(len(d.state))+d.pendBy+int64(len(update)) > limit {
		return errDocTooLarge
	}
	d.pending = append(d.pending, update)
	d.pendBy += int64(len(update))
	for p := range d.peers {
		if p != from {
			p.send(frame)
		}
	}
	if len(d.pending) >= yCompactCount || d.pendBy >= max(int64(len(d.state)), yCompactBytes) {
		if err := d.compactLocked(); err != nil {
			from.srv.log.Error("document merge failed; updates kept unmerged", "doc", d.name, "err", err)
		}
	}
	return nil
}

// awareness records an awareness update from c and relays frame, the
// message as received, to every peer including c: a provider that hears
// nothing for 30 s reconnects, and a lone peer's own renewals (every 15 s)
// are what keeps it connected, since browsers do not surface pings. A
// message that changes nothing (peers re-send the states they receive,
// with the same clock) is not relayed.
func (d *ydoc) awareness(c *conn, entries []yAwarenessEntry, frame []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fresh := false
	for _, e := range entries {
		known, ok := d.aware[e.client]
		switch {
		case e.state == "null":
			if ok && e.clock >= known.clock {
				delete(d.aware, e.client)
				d.disown(known.owner)
				fresh = true
			}
		case !ok:
			if d.owned[c] >= yMaxOwnedClients {
				return errTooManyClients
			}
			d.owned[c]++
			d.aware[e.client] = yAware{clock: e.clock, state: e.state, owner: c}
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
	return nil
}

func (d *ydoc) disown(owner *conn) {
	if d.owned[owner]--; d.owned[owner] <= 0 {
		delete(d.owned, owner)
	}
}

// awarenessFrameLocked is an awareness message with every known state.
// d.mu held.
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

// leave removes c, and tells the remaining peers that the awareness
// clients c introduced are gone (state null, clock + 1), so that its
// cursors vanish at once rather than after y-protocols' 30 s timeout.
func (d *ydoc) leave(c *conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.peers[c]; !ok {
		return
	}
	delete(d.peers, c)
	var gone []yAwarenessEntry
	if d.owned[c] > 0 {
		for id, a := range d.aware {
			if a.owner == c {
				gone = append(gone, yAwarenessEntry{client: id, clock: a.clock + 1, state: "null"})
				delete(d.aware, id)
			}
		}
		delete(d.owned, c)
	}
	if len(gone) > 0 && len(d.peers) > 0 {
		f := yAwarenessFrame(gone)
		for p := range d.peers {
			p.send(f)
		}
	}
	if len(d.peers) == 0 {
		// Nobody left to sync with, and nowhere to keep it: forget it. A
		// joiner that found it before it was gone gets errDocGone and
		// acquires a new one.
		d.gone = true
		s := c.srv
		s.docsMu.Lock()
		if s.docs[d.name] == d {
			delete(s.docs, d.name)
		}
		s.docsMu.Unlock()
	}
}

// errDocGone is join's answer for a document forgotten since it was
// acquired (its last peer left): acquire it again.
var errDocGone = errors.New("document forgotten: its last peer left")

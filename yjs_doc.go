package livesync

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/openlivesync/livesync/yupdate"
)

// ydoc is one shared document open on this node: its state as one merged
// Yjs update plus the updates received since, the connections editing it,
// the awareness states (cursors) known, and what is not stored yet.
//
// Every frame to the document's peers is queued under mu, so that each
// peer sees the document's messages in one order, and a joiner's sync
// step 1 and snapshot come before any update relayed after its arrival.
type ydoc struct {
	name string
	srv  *Server
	// ready is closed once load has run; loadErr is its outcome.
	ready   chan struct{}
	loadErr error
	// subscribed: load subscribed to the document's traffic in the
	// cluster, which forgetting it withdraws. Set before ready.
	subscribed bool

	mu      sync.Mutex
	state   []byte   // the merged update; emptyYUpdate for a new document
	sv      []byte   // state's encoded state vector, nil until needed (see stateVectorLocked)
	pending [][]byte // updates since state was merged
	pendBy  int64    // bytes in pending
	peers   map[*conn]struct{}
	holds   int  // peers and API calls holding it open (openDoc)
	gone    bool // forgotten: nothing holds it (see closeDoc)
	// idle merges the pending updates once the document has been quiet
	// for yIdleMerge, so that an idle document holds one merged update.
	idle *time.Timer
	// changes are what OnDocUpdated has not observed yet.
	changes docChanges

	// Awareness: see yjs_awareness.go.
	aware   map[uint64]yAware
	owned   map[string]int // client ids each connection (local or remote) owns
	removed removals       // the clocks at which clients were removed

	// Storage: see yjs_persist.go.
	unstored   [][]byte // accepted from this node's peers, not stored yet
	writing    bool     // a store writer runs (and holds the document in memory)
	storedRows int      // updates the store holds, as last known
	storedBy   int64    // their bytes
	compacting bool
	// reserved is the bytes of API updates being stored (reserve): they
	// count toward the document's size until applied or given up.
	reserved int64
}

// emptyYUpdate is the update of an empty document: no structs, no deletes.
var emptyYUpdate = []byte{0, 0}

// Compaction in memory: pending updates are merged into state when there
// are yCompactCount of them, or when they weigh as much as state (at
// least yCompactBytes). A merge costs the whole document, so merging on
// every keystroke would make typing cost grow with the document; merging
// when the pending updates double its size keeps the cost per byte
// received constant, and a sync step 1 (which needs one update to diff)
// merges whatever is pending.
const (
	yCompactCount = 512
	yCompactBytes = 64 << 10
	yIdleMerge    = time.Second
	// yMaxOwnedClients bounds the awareness client ids one connection may
	// introduce (a provider has one); beyond it the connection is closed.
	yMaxOwnedClients = 32
)

func newYDoc(s *Server, name string) *ydoc {
	return &ydoc{name: name, srv: s, ready: make(chan struct{}), state: emptyYUpdate,
		peers: make(map[*conn]struct{}), aware: make(map[uint64]yAware),
		owned: make(map[string]int)}
}

// hold takes one more hold on d, unless it is being forgotten.
func (d *ydoc) hold() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return false
	}
	d.holds++
	return true
}

// load fills a new document: it subscribes to the document's traffic in
// the cluster first, so that an update another node relays while the
// store is read is not missed (it lands in pending, and merging is
// order-free), then reads the store, then asks the other nodes for what
// the store lacks (what their peers sent and they have not stored yet).
func (d *ydoc) load(ctx context.Context) error {
	s := d.srv
	ctx, cancel := context.WithTimeout(ctx, docLoadTimeout)
	defer cancel()
	if s.broker != nil {
		d.subscribe(ctx)
	}
	var stored [][]byte
	if s.docs.store != nil {
		log, err := s.docs.store.LoadDoc(ctx, d.name)
		if err != nil {
			return errors.Join(errDocUnavailable, err)
		}
		stored = log.Updates
		d.mu.Lock()
		d.storedRows, d.storedBy = len(log.Updates), log.Bytes
		d.mu.Unlock()
	}
	d.mu.Lock()
	var err error
	var sv []byte
	if len(stored) == 1 && len(d.pending) == 0 {
		// A compacted snapshot, merged and collected already: its state
		// vector, which the first peer needs, tells that it reads.
		sv, err = yupdate.EncodeStateVectorFromUpdate(stored[0])
	}
	if len(stored) == 1 && len(d.pending) == 0 && err == nil {
		d.state, d.sv = stored[0], sv
	} else {
		d.pending = append(stored, d.pending...)
		for _, u := range stored {
			d.pendBy += int64(len(u))
		}
		err = d.compactLocked()
	}
	if err == nil && s.broker != nil {
		d.askPeersLocked(docRelayQuery)
	}
	if err == nil {
		d.maybeCompactStoreLocked()
	}
	d.mu.Unlock()
	return err
}

// compactLocked merges the pending updates into state. d.mu held. Where
// the merge fails (which the checks on arrival should make impossible),
// what does not merge is left out (see salvageLocked), so that the
// document stays open; the store keeps it. The error it returns is nil.
func (d *ydoc) compactLocked() error {
	if len(d.pending) == 0 {
		return nil
	}
	parts := make([][]byte, 0, len(d.pending)+1)
	parts = append(parts, d.state)
	parts = append(parts, d.pending...)
	merged, err := d.srv.docs.merge(d.name, parts)
	if err != nil {
		merged = d.salvageLocked(parts, err)
	}
	if cap(merged) > len(merged)+len(merged)/2 {
		merged = bytes.Clone(merged) // an idle document costs its size, not its buffer's
	}
	d.state, d.sv = merged, nil
	clear(d.pending)
	d.pending, d.pendBy = d.pending[:0], 0
	return nil
}

// salvageLocked merges parts (the state, then updates) when merging them
// failed with cause, leaving out, counted and logged, those that do not
// merge: a corrupt stored update must not make the document unopenable
// for every peer. Those that do not decode are left out first, in one
// pass; should the rest still not merge, they are merged one at a time.
// d.mu held.
func (d *ydoc) salvageLocked(parts [][]byte, cause error) []byte {
	ds := &d.srv.docs
	decoded := make([][]byte, 0, len(parts))
	for _, u := range parts {
		if _, err := yupdate.Canonical(u); err == nil {
			decoded = append(decoded, u)
		}
	}
	kept := len(decoded)
	merged, err := ds.merge(d.name, append(decoded, emptyYUpdate))
	if err != nil {
		merged, kept = emptyYUpdate, 0
		for _, u := range decoded {
			if m, err := ds.merge(d.name, [][]byte{merged, u}); err == nil {
				merged = m
				kept++
			}
		}
	}
	left := len(parts) - kept
	ds.metrics.fallbacks.Add(float64(left))
	d.srv.log.Error("document updates left out: they do not merge", "doc", d.name, "updates", left, "of", len(parts), "err", cause)
	return merged
}

// join adds c to the document's peers and queues what a new peer is sent
// first: the server's sync step 1 (its state vector, so that the client
// answers with what the server lacks) and the awareness states known.
func (d *ydoc) join(c *conn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.compactLocked(); err != nil {
		return err
	}
	sv, err := d.stateVectorLocked()
	if err != nil {
		return err
	}
	d.peers[c] = struct{}{}
	if s := d.srv; s.broker != nil {
		s.broker.SetMember(docRoom(d.name), c.id, docPeerEntry(c))
	}
	c.send(ySyncFrame(ySyncStep1, sv))
	if len(d.aware) > 0 {
		c.sendSnapshot(d.awarenessFrameLocked(d.srv.awarenessBudget())) // as large as the peers make it: no backlog of c's
	}
	return nil
}

// stateVectorLocked returns the state vector of d.state, encoded; pending
// updates are not in it. d.mu held.
func (d *ydoc) stateVectorLocked() ([]byte, error) {
	if d.sv == nil {
		sv, err := yupdate.EncodeStateVectorFromUpdate(d.state)
		if err != nil {
			return nil, err
		}
		d.sv = sv
	}
	return d.sv, nil
}

// snapshot returns the document as one merged update.
func (d *ydoc) snapshot() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.compactLocked()
	return d.state, err
}

// apply adds update, which decoded, from peer from to the document: it
// is relayed to the other peers here as frame (whose tail is the update),
// to the other nodes of the cluster, and stored. It refuses an update
// that would take the document beyond limit bytes.
func (d *ydoc) apply(from *conn, update, frame []byte, limit int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.fitsLocked(int64(len(update)), limit) {
		return errDocTooLarge
	}
	d.acceptLocked(from, update, frame)
	d.storeLocked(update)
	return nil
}

// fitsLocked reports whether n more bytes keep the document within limit,
// counting the API updates reserved. Pending updates count their raw
// size, which merging shrinks (an insert and its later delete merge to
// a few bytes): before refusing, it merges them and looks again, so a
// document is refused when its merged size is full, not half of it.
// d.mu held.
func (d *ydoc) fitsLocked(n, limit int64) bool {
	fits := func() bool { return int64(len(d.state))+d.pendBy+d.reserved+n <= limit }
	if fits() || len(d.pending) == 0 {
		return fits()
	}
	d.compactLocked()
	return fits()
}

// acceptLocked adds update, from peer from (nil for the API), to the
// document and relays it here and to the other nodes. d.mu held.
func (d *ydoc) acceptLocked(from *conn, update, frame []byte) {
	d.srv.docs.metrics.updatesIn.Inc()
	d.noteChangeLocked(len(update))
	d.addLocked(update, frame, from)
	var fromID string
	if from != nil {
		fromID = from.id
	}
	d.relayLocked(docRelayUpdate, fromID, update)
}

// addLocked adds update to pending and sends frame to every peer but
// from. d.mu held.
func (d *ydoc) addLocked(update, frame []byte, from *conn) {
	d.pending = append(d.pending, update)
	d.pendBy += int64(len(update))
	n := 0
	for p := range d.peers {
		if p != from {
			p.send(frame)
			n++
		}
	}
	d.srv.docs.metrics.updatesOut.Add(float64(n))
	if len(d.pending) >= yCompactCount || d.pendBy >= max(int64(len(d.state)), yCompactBytes) {
		d.mergeLocked()
		return
	}
	if d.idle == nil {
		d.idle = time.AfterFunc(yIdleMerge, d.mergeWhenIdle)
	} else {
		d.idle.Reset(yIdleMerge)
	}
}

// mergeWhenIdle merges the pending updates of a document that has been
// quiet for yIdleMerge.
func (d *ydoc) mergeWhenIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mergeLocked()
}

// mergeLocked is compactLocked, logging a failure.
func (d *ydoc) mergeLocked() {
	if err := d.compactLocked(); err != nil {
		d.srv.log.Error("document merge failed; updates kept unmerged", "doc", d.name, "err", err)
	}
}

// leave removes c, and tells the remaining peers (here and, through its
// departure from the cluster's registry, on the other nodes) that the
// awareness clients c introduced are gone, so that its cursors vanish at
// once rather than after y-protocols' 30 s timeout.
func (d *ydoc) leave(c *conn) {
	d.mu.Lock()
	_, ok := d.peers[c]
	if ok {
		delete(d.peers, c)
		d.dropOwnerLocked(c.id)
		if s := d.srv; s.broker != nil {
			s.broker.RemoveMember(docRoom(d.name), c.id)
		}
	}
	d.mu.Unlock()
	if ok {
		// A kick retried after the first emptied the document finds
		// the room known, as it does after a room's members leave.
		d.srv.recent.note(d.name)
		d.srv.closeDoc(d)
	}
}

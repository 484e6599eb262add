package livesync

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/openlivesync/livesync/yupdate"
)

// A document's traffic crosses the cluster through the broker as the
// traffic of a room of its own, docRoom(name), which no client can join:
// room ids are printable, and its name starts with a control character.
// Its peers are that room's members in the broker's registry, so that
// their departure, including a dead node's sweep, reaches every node and
// removes their cursors; its messages are relayed events, opaque to the
// broker:
//
//	'u' from "\n" update        an update a peer sent (from: its connection)
//	'a' owner "\t" user "\n" awareness
//	                            an awareness update of owner's clients (or,
//	                            from a node that remembers their removal, an
//	                            answer to owner's stale states: yjs_removals.go)
//	'q' "\n" state vector       a node opened or resynchronised the document:
//	                            send me what I lack, and ask me for the same
//	'r' "\n" state vector       a node answering a 'q': send me what I lack
//	'n' "\n"                    a provider came back here: ask your peers to
//	                            renew their states (yjs_renewals.go)
//
// The asking back ('r') is what heals a split after an outage: each
// node resynchronises on its own, and the first to ask may do so before
// the other has subscribed again, so that its 'q' is lost; the other's
// later 'q' then reaches it, and its 'r' gets it what it lacks.
//
// Only the node whose peer sent an update stores it; the others hold it
// in memory. Merging is order-free and idempotent, so an update that
// arrives twice, or after a snapshot that holds it, changes nothing.
const (
	docRelayUpdate    = 'u'
	docRelayAwareness = 'a'
	docRelayQuery     = 'q'
	docRelayAskBack   = 'r'
	docRelayRenew     = 'n'

	docRoomPrefix = "\x1fyjs\x1f"
)

// docPeerEntry is a document peer's entry in the broker's registry: its
// user, which a kick by userId through another node matches and counts.
func docPeerEntry(c *conn) []byte {
	b, _ := json.Marshal(struct {
		UserID string `json:"userId,omitempty"`
	}{userID(c.user)})
	return b
}

// docRoom is the broker's room of document name.
func docRoom(name string) string { return docRoomPrefix + name }

// docName is the document of a broker room, when it is one.
func docName(room string) (string, bool) { return strings.CutPrefix(room, docRoomPrefix) }

// subscribe subscribes to the document's traffic. A failure is logged and
// left to the broker's resynchronisation (Resync), as for rooms.
func (d *ydoc) subscribe(ctx context.Context) {
	s := d.srv
	room := docRoom(d.name)
	if err := s.broker.Subscribe(ctx, room); err != nil {
		s.log.Debug("cluster: document subscription pending", "doc", d.name, "err", err)
	}
	d.subscribed = true
}

// reconcileRemote reads the document's peers on other nodes from the
// registry and removes the cursors of owners that are neither there nor
// here: their departures may have been lost.
func (d *ydoc) reconcileRemote(ctx context.Context) {
	st, err := d.srv.broker.RoomState(ctx, docRoom(d.name))
	if err != nil {
		return
	}
	present := make(map[string]bool, len(st.Members))
	for _, m := range st.Members {
		present[m.ConnID] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.peers {
		present[p.id] = true
	}
	for owner := range d.owned {
		if !present[owner] {
			d.dropOwnerLocked(owner)
		}
	}
}

// relayLocked publishes one of the document's messages to the other
// nodes. d.mu held, so that each node's messages of a document go out in
// the order their effects were applied here.
func (d *ydoc) relayLocked(kind byte, from string, payload []byte) {
	b := d.srv.broker
	if b == nil {
		return
	}
	msg := make([]byte, 0, len(from)+len(payload)+2)
	msg = append(msg, kind)
	msg = append(msg, from...)
	msg = append(msg, '\n')
	msg = append(msg, payload...)
	b.PublishEvent(docRoom(d.name), msg)
}

// askPeersLocked asks the other nodes for what this node lacks: its state
// vector, which they answer with the difference; with kind docRelayQuery
// they also ask back.
func (d *ydoc) askPeersLocked(kind byte) {
	if sv, err := d.stateVectorLocked(); err == nil {
		d.relayLocked(kind, "", sv)
	}
}

// docRelayed handles a document message another node published.
func (s *Server) docRelayed(name string, msg []byte) {
	d := s.lookupDoc(name)
	if d == nil || len(msg) < 2 {
		return // not open here: the store and the next open have it
	}
	kind := msg[0]
	from, payload, ok := bytes.Cut(msg[1:], []byte{'\n'})
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch kind {
	case docRelayUpdate:
		f := ySyncFrame(ySyncUpdate, payload)
		d.addLocked(f[len(f)-len(payload):], f, nil)
	case docRelayAwareness:
		owner, user, _ := strings.Cut(string(from), "\t")
		entries, err := decodeYAwareness(payload)
		if err == nil {
			d.relayedAwarenessLocked(owner, user, entries, payload)
		}
	case docRelayQuery:
		d.answerLocked(payload)
		d.relayLocalAwarenessLocked()
		d.askPeersLocked(docRelayAskBack)
	case docRelayRenew:
		d.renewPeersLocked(nil)
	case docRelayAskBack:
		d.answerLocked(payload)
		// The asking node may have dropped this node's cursors while the
		// registry missed its peers (after an outage): send them again.
		d.relayLocalAwarenessLocked()
	}
}

// answerLocked answers another node's query (its state vector sv) with
// what it lacks.
func (d *ydoc) answerLocked(sv []byte) {
	if err := d.compactLocked(); err != nil {
		return
	}
	want, err := yupdate.DecodeStateVector(sv)
	if err != nil {
		return
	}
	if diff, err := yupdate.DiffUpdateState(d.state, want); err == nil && !bytes.Equal(diff, emptyYUpdate) {
		d.relayLocked(docRelayUpdate, "", diff)
	}
}

// relayLocalAwarenessLocked publishes the awareness states of this node's
// peers, one message per owner.
func (d *ydoc) relayLocalAwarenessLocked() {
	byOwner := make(map[string][]yAwarenessEntry) // by owner and user, as relayed
	local := make(map[string]bool, len(d.peers))
	for p := range d.peers {
		local[p.id] = true
	}
	for id, a := range d.aware {
		if local[a.owner] {
			from := a.owner + "\t" + a.user
			byOwner[from] = append(byOwner[from], yAwarenessEntry{client: id, clock: a.clock, state: a.state})
		}
	}
	for from, entries := range byOwner {
		d.relayLocked(docRelayAwareness, from, encodeYAwareness(entries))
	}
}

// docPeerRemoved says a peer of document name on another node is gone
// (it left, or its node died): its cursors vanish.
func (s *Server) docPeerRemoved(name, connID string) {
	if d := s.lookupDoc(name); d != nil {
		d.mu.Lock()
		d.dropOwnerLocked(connID)
		d.mu.Unlock()
	}
}

// resyncDocs follows a possible loss of cluster traffic (or this node
// having been swept as dead): each open document reloads its remote
// peers, asks again for what it lacks, and publishes its peers' cursors
// again, which the other nodes may have removed.
func (s *Server) resyncDocs() {
	for _, d := range s.openDocs() {
		<-d.ready
		if !d.subscribed {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
		d.reconcileRemote(ctx)
		cancel()
		d.mu.Lock()
		if err := d.compactLocked(); err == nil {
			d.askPeersLocked(docRelayQuery)
		}
		d.relayLocalAwarenessLocked()
		d.mu.Unlock()
	}
}

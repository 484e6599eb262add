package livesync

import (
	"strings"
	"sync"

	"github.com/openlivesync/livesync/protocol"
)

// A connection id names the node it was made on: a client's is the
// node's id, "-" and a number; the HTTP API's is "server-" and the node's
// id. With a store per node (Options.StorePerNode) ids of messages are per
// node, so a message is named by its id and its sender's node, and only
// that node's store holds it.

// nodeOf returns the node id connection id connID was made on.
func nodeOf(connID string) string {
	if node, ok := strings.CutPrefix(connID, "server-"); ok {
		return node
	}
	node, _, _ := strings.Cut(connID, "-")
	return node
}

// isNodeID reports whether s has the form of a node id (randomID(4)):
// a connection id migrated from the Node.js package names no node.
func isNodeID(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// sameNode reports whether connection ids a and b were made on one node.
func sameNode(a, b string) bool { return nodeOf(a) == nodeOf(b) }

// pastNodes remembers the node ids this node's own store names besides
// its own: a node that restarts with its store (a SQLite file) gets a new
// id, and the messages its earlier runs stored keep their senders' ids.
// It learns them from the messages it reads from its store, so that a
// deletion naming such a message is carried out here. Bounded, as each
// restart adds one.
type pastNodes struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

// maxPastNodes bounds pastNodes: past that, the oldest runs' messages,
// deleted through another node, are left to their own node's API.
const maxPastNodes = 256

// learn records the nodes of the senders of msgs, read from this node's
// own store.
func (p *pastNodes) learn(msgs []protocol.StoredChatMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range msgs {
		node := nodeOf(msgs[i].ConnectionID)
		if _, ok := p.ids[node]; ok || !isNodeID(node) || len(p.ids) >= maxPastNodes {
			continue
		}
		if p.ids == nil {
			p.ids = make(map[string]struct{})
		}
		p.ids[node] = struct{}{}
	}
}

// has reports whether node is one of this node's past ids.
func (p *pastNodes) has(node string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.ids[node]
	return ok
}

package livesync

import (
	"bytes"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
)

// docBase is the document endpoint's base URL of the server whose
// WebSocket URL is wsURL.
func docBase(s *Server, wsURL string) string {
	return strings.TrimSuffix(wsURL, s.opts.Path) + DocPath
}

// noDocStore is a chat store that keeps no documents: a node then holds
// a document in memory only, which is what the other nodes must ask it
// for.
type noDocStore struct{ chat.Store }

func TestDocCluster(t *testing.T) { forRedisModes(t, testDocCluster) }

// Peers of one document on two nodes see each other's updates and
// cursors, and a peer's cursor vanishes on the other node when it leaves.
func testDocCluster(t *testing.T, e *clusterEnv) {
	store := newSharedStore(t)
	s1, u1 := e.node(e.addr, store, nil)
	s2, u2 := e.node(e.addr, store, nil)
	a := livesynctest.DialSynced(t, docBase(s1, u1)+"doc")
	b := livesynctest.DialSynced(t, docBase(s2, u2)+"doc")

	a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, "from a")))
	b.ReadUntil(nil, func(st, _ []byte) bool { return st != nil && livesynctest.HasClock(t, st, 1, 6) })
	b.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(2, 0, "from b")))
	a.ReadUntil(nil, func(st, _ []byte) bool { return st != nil && livesynctest.HasClock(t, st, 2, 6) })

	b.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 2, Clock: 1, State: `{"cursor":3}`}))
	a.ReadUntil(nil, func(_, aw []byte) bool { return bytes.Contains(aw, []byte(`{"cursor":3}`)) })
	b.WS.Close()
	a.ReadUntil(nil, func(_, aw []byte) bool {
		entries, err := decodeYAwareness(aw)
		return err == nil && len(entries) == 1 && entries[0].client == 2 && entries[0].state == "null"
	})
}

func TestDocClusterAsksPeers(t *testing.T) { forRedisModes(t, testDocClusterAsksPeers) }

// A node that opens a document asks the nodes that have it open for what
// its store lacks: here nothing is stored, so all of it.
func testDocClusterAsksPeers(t *testing.T, e *clusterEnv) {
	store := noDocStore{newSharedStore(t)}
	s1, u1 := e.node(e.addr, store, nil)
	s2, u2 := e.node(e.addr, store, nil)
	a := livesynctest.DialSynced(t, docBase(s1, u1)+"doc")
	a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, "only in memory")))
	a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 1, Clock: 1, State: `{"name":"a"}`}))
	a.ReadUntil(nil, func(_, aw []byte) bool { return aw != nil }) // its echo: applied

	c := livesynctest.DialDoc(t, docBase(s2, u2)+"doc")
	st := c.Handshake(nil)
	if !livesynctest.HasClock(t, st, 1, 14) {
		c.ReadUntil(st, func(st, _ []byte) bool { return st != nil && livesynctest.HasClock(t, st, 1, 14) })
	}
}

// A peer's cursor vanishes on the other nodes when its node is cut off
// and swept as dead, and comes back when the node returns.
func TestDocClusterResyncAsksBack(t *testing.T) { forRedisModes(t, testDocClusterResyncAsksBack) }

// After an outage each node resynchronises on its own, and the first to
// ask the others for what it lacks may ask before they have subscribed
// again: its query is lost. The later node's query still heals both
// sides, since the nodes it asks ask back. Here each node holds an
// update the other never heard of, and only the second node asks.
func testDocClusterResyncAsksBack(t *testing.T, e *clusterEnv) {
	store := noDocStore{newSharedStore(t)}
	s1, u1 := e.node(e.addr, store, nil)
	s2, u2 := e.node(e.addr, store, nil)
	a := livesynctest.DialSynced(t, docBase(s1, u1)+"doc")
	b := livesynctest.DialSynced(t, docBase(s2, u2)+"doc")
	unheard := func(s *Server, update []byte) {
		d := s.lookupDoc("doc")
		d.mu.Lock()
		defer d.mu.Unlock()
		f := ySyncFrame(ySyncUpdate, update)
		d.addLocked(f[len(f)-len(update):], f, nil) // sent to local peers only, as during an outage
	}
	unheard(s1, livesynctest.TextUpdate(1, 0, "during the outage, on 1"))
	unheard(s2, livesynctest.TextUpdate(2, 0, "during the outage, on 2"))
	s2.resyncDocs()
	a.ReadUntil(nil, func(st, _ []byte) bool { return st != nil && livesynctest.HasClock(t, st, 2, 23) })
	b.ReadUntil(nil, func(st, _ []byte) bool { return st != nil && livesynctest.HasClock(t, st, 1, 23) })
}

func TestDocClusterNodeLost(t *testing.T) { forRedisModes(t, testDocClusterNodeLost) }

func testDocClusterNodeLost(t *testing.T, e *clusterEnv) {
	store := newSharedStore(t)
	s1, u1 := e.node(e.addr, store, nil)
	cut := e.link()
	s2, u2 := e.node(cut.Addr(), store, nil)
	a := livesynctest.DialSynced(t, docBase(s1, u1)+"doc")
	c := livesynctest.DialSynced(t, docBase(s2, u2)+"doc")
	c.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 9, Clock: 1, State: `{"name":"c"}`}))
	a.ReadUntil(nil, func(_, aw []byte) bool { return bytes.Contains(aw, []byte(`{"name":"c"}`)) })

	cut.Cut()
	a.ReadUntil(nil, func(_, aw []byte) bool {
		entries, err := decodeYAwareness(aw)
		return err == nil && len(entries) == 1 && entries[0].client == 9 && entries[0].state == "null"
	})
	cut.Restore()
	a.ReadUntil(nil, func(_, aw []byte) bool { return bytes.Contains(aw, []byte(`{"name":"c"}`)) })
}

package livesync

import (
	"bytes"
	"fmt"
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

// A peer's cursor vanishes on the other nodes when its node is cut off
// and swept as dead, and comes back when the node returns. Its node
// publishes its state again then, at the clock it had, below the
// removal's, which the other nodes' peers would ignore: they answer it
// with the removal, which the peer answers, as y-protocols does, with
// its state above it.
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
	c.ReadUntil(nil, func(_, aw []byte) bool {
		entries, err := decodeYAwareness(aw)
		return err == nil && len(entries) == 1 && entries[0] == (yAwarenessEntry{9, 2, "null"})
	})
	c.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 9, Clock: 3, State: `{"name":"c"}`}))
	a.ReadUntil(nil, func(_, aw []byte) bool {
		entries, err := decodeYAwareness(aw)
		if err == nil && len(entries) == 1 && entries[0].client == 9 && entries[0].clock < 3 {
			t.Fatalf("a got the stale state %+v, which y-protocols ignores", entries[0])
		}
		return err == nil && len(entries) == 1 && entries[0] == (yAwarenessEntry{9, 3, `{"name":"c"}`})
	})
}

func TestDocClusterAwarenessAfterRemoval(t *testing.T) {
	forRedisModes(t, testDocClusterAwarenessAfterRemoval)
}

// A provider whose socket was cut on one node may come back through
// another (behind a load balancer): one that applied the removal too (the
// watcher's), or one where the document was not even open, which knows
// nothing of it and takes the provider's stale state for new. Either
// way the provider is answered with the removal, and the watcher never
// gets the stale state (which its y-protocols would ignore) but the one
// the provider sends next, above the removal's clock.
func testDocClusterAwarenessAfterRemoval(t *testing.T, e *clusterEnv) {
	store := newSharedStore(t)
	s1, u1 := e.node(e.addr, store, nil)
	s2, u2 := e.node(e.addr, store, nil)
	s3, u3 := e.node(e.addr, store, nil)
	for i, back := range []string{"the watcher's node", "a node without the document"} {
		t.Run(back, func(t *testing.T) {
			doc := fmt.Sprint("doc-", i)
			a := livesynctest.DialSynced(t, docBase(s1, u1)+doc)
			b := livesynctest.DialSynced(t, docBase(s2, u2)+doc)
			a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 1, State: `{"cursor":1}`}))
			b.ReadUntil(nil, func(_, aw []byte) bool { return bytes.Contains(aw, []byte(`{"cursor":1}`)) })
			a.WS.Close()
			b.ReadUntil(nil, func(_, aw []byte) bool {
				entries, err := decodeYAwareness(aw)
				return err == nil && len(entries) == 1 && entries[0] == (yAwarenessEntry{7, 2, "null"})
			})

			url := docBase(s2, u2) + doc
			if back != "the watcher's node" {
				url = docBase(s3, u3) + doc
			}
			a = livesynctest.DialSynced(t, url)
			a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 1, State: `{"cursor":1}`}))
			a.ReadUntil(nil, func(_, aw []byte) bool {
				entries, err := decodeYAwareness(aw)
				return err == nil && len(entries) == 1 && entries[0] == (yAwarenessEntry{7, 2, "null"})
			})
			// What y-protocols does with a removal of its own state.
			a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 3, State: `{"cursor":1}`}))
			b.ReadUntil(nil, func(_, aw []byte) bool {
				entries, err := decodeYAwareness(aw)
				if err != nil || len(entries) != 1 || entries[0].client != 7 {
					t.Fatalf("watcher got %+v (%v)", entries, err)
				}
				if entries[0].clock < 3 {
					t.Fatalf("watcher got the stale state %+v, which y-protocols ignores", entries[0])
				}
				return true
			})
		})
	}
}

package livesync

import (
	"bytes"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/tcpproxy"
	"github.com/openlivesync/livesync/yupdate"
)

// docBase is the document endpoint's base URL of the server whose
// WebSocket URL is wsURL.
func docBase(s *Server, wsURL string) string {
	return strings.TrimSuffix(wsURL, s.opts.Path) + DocPath
}

// readUntil reads messages, merging the updates into state, until done
// accepts the merged state or the awareness message just read (the other
// argument is nil), and returns the state.
func (c *yClient) readUntil(state []byte, done func(state, awareness []byte) bool) []byte {
	c.t.Helper()
	if state == nil {
		state = emptyYUpdate
	}
	for {
		m := c.read()
		switch {
		case m.typ == yMsgSync && m.sub != ySyncStep1:
			merged, err := yupdate.MergeUpdates([][]byte{state, m.payload})
			if err != nil {
				c.t.Fatal(err)
			}
			if state = merged; done(state, nil) {
				return state
			}
		case m.typ == yMsgAwareness:
			if done(nil, m.payload) {
				return state
			}
		}
	}
}

// hasClock reports whether update holds client's structs up to clock.
func hasClock(t *testing.T, update []byte, client, clock uint64) bool {
	t.Helper()
	sv, err := yupdate.StateVectorFromUpdate(update)
	if err != nil {
		t.Fatal(err)
	}
	return sv[client] >= clock
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
	a := dialDoc(t, docBase(s1, u1)+"doc")
	a.handshake(nil)
	b := dialDoc(t, docBase(s2, u2)+"doc")
	b.handshake(nil)

	a.write(ySync(ySyncUpdate, yText(1, 0, "from a")))
	b.readUntil(nil, func(st, _ []byte) bool { return st != nil && hasClock(t, st, 1, 6) })
	b.write(ySync(ySyncUpdate, yText(2, 0, "from b")))
	a.readUntil(nil, func(st, _ []byte) bool { return st != nil && hasClock(t, st, 2, 6) })

	b.write(yAwarenessMsg(yAwarenessEntry{client: 2, clock: 1, state: `{"cursor":3}`}))
	a.readUntil(nil, func(_, aw []byte) bool { return bytes.Contains(aw, []byte(`{"cursor":3}`)) })
	b.ws.Close()
	a.readUntil(nil, func(_, aw []byte) bool {
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
	a := dialDoc(t, docBase(s1, u1)+"doc")
	a.handshake(nil)
	a.write(ySync(ySyncUpdate, yText(1, 0, "only in memory")))
	a.write(yAwarenessMsg(yAwarenessEntry{client: 1, clock: 1, state: `{"name":"a"}`}))
	a.readUntil(nil, func(_, aw []byte) bool { return aw != nil }) // its echo: applied

	c := dialDoc(t, docBase(s2, u2)+"doc")
	st := c.handshake(nil)
	if !hasClock(t, st, 1, 14) {
		c.readUntil(st, func(st, _ []byte) bool { return st != nil && hasClock(t, st, 1, 14) })
	}
}

// A peer's cursor vanishes on the other nodes when its node is cut off
// and swept as dead, and comes back when the node returns.
func TestDocClusterNodeLost(t *testing.T) {
	e := newClusterEnv(t)
	store := newSharedStore(t)
	s1, u1 := e.node(e.addr, store, nil)
	cut := tcpproxy.Start(t, e.addr)
	s2, u2 := e.node(cut.Addr(), store, nil)
	a := dialDoc(t, docBase(s1, u1)+"doc")
	a.handshake(nil)
	c := dialDoc(t, docBase(s2, u2)+"doc")
	c.handshake(nil)
	c.write(yAwarenessMsg(yAwarenessEntry{client: 9, clock: 1, state: `{"name":"c"}`}))
	a.readUntil(nil, func(_, aw []byte) bool { return bytes.Contains(aw, []byte(`{"name":"c"}`)) })

	cut.Cut()
	a.readUntil(nil, func(_, aw []byte) bool {
		entries, err := decodeYAwareness(aw)
		return err == nil && len(entries) == 1 && entries[0].client == 9 && entries[0].state == "null"
	})
	cut.Restore()
	a.readUntil(nil, func(_, aw []byte) bool { return bytes.Contains(aw, []byte(`{"name":"c"}`)) })
}

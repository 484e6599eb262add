package livesync

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/openlivesync/livesync/chat"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// TestClusterModerationKickDocPeer: a user whose only connection is a
// peer of the room's document on node A is kicked through node B, and
// counted the same whichever node is asked; a retry through node A once
// the document closed there answers 0.
func TestClusterModerationKickDocPeer(t *testing.T) {
	forRedisModes(t, testClusterModerationKickDocPeer)
}

func testClusterModerationKickDocPeer(t *testing.T, e *clusterEnv) {
	_, nodes := moderationNodes(t, e, 2)
	a, b := nodes[0], nodes[1]
	docURL := "ws" + a.base[len("http"):] + DocPath + "r?u="
	p1 := livesynctest.DialSynced(t, docURL+"ud1")
	p2 := livesynctest.DialSynced(t, docURL+"ud2")
	livesynctest.WaitFor(t, "node B to see the document's peers", func() bool {
		st, err := b.s.broker.RoomState(context.Background(), docRoom("r"))
		return err == nil && len(st.Members) == 2
	})
	if k := kickResult(t, b, "r", `{"userId":"ud1"}`); k.Kicked != 1 {
		t.Fatalf("kick through node B answered %+v, want the peer on node A", k)
	}
	if code := p1.ExpectClose(); code != protocol.CloseKicked {
		t.Fatalf("peer closed with %d", code)
	}
	if k := kickResult(t, a, "r", `{"userId":"ud2"}`); k.Kicked != 1 {
		t.Fatalf("kick through node A answered %+v", k)
	}
	if code := p2.ExpectClose(); code != protocol.CloseKicked {
		t.Fatalf("peer closed with %d", code)
	}
	// The node its peers were on knows the room once they are gone: a
	// kick retried there answers 0, not 404.
	p3 := livesynctest.DialSynced(t, "ws"+a.base[len("http"):]+DocPath+"r2?u=ud3")
	livesynctest.WaitFor(t, "node B to see the document's peer", func() bool {
		st, err := b.s.broker.RoomState(context.Background(), docRoom("r2"))
		return err == nil && len(st.Members) == 1
	})
	if k := kickResult(t, b, "r2", `{"userId":"ud3"}`); k.Kicked != 1 {
		t.Fatalf("kick through node B answered %+v", k)
	}
	p3.ExpectClose()
	livesynctest.WaitFor(t, "the document to close on node A", func() bool { return a.s.lookupDoc("r2") == nil })
	if k := kickResult(t, a, "r2", `{"userId":"ud3"}`); k.Kicked != 0 {
		t.Fatalf("retried kick through node A answered %+v", k)
	}
}

// TestClusterModerationDeletePerNodeStores: in a cluster whose nodes each
// have their own store, a message stored on node A is deleted from A's
// store through node B (204), and through A from A's store alone: node
// B's own message of the same id stays.
func TestClusterModerationDeletePerNodeStores(t *testing.T) {
	forRedisModes(t, testClusterModerationDeletePerNodeStores)
}

func testClusterModerationDeletePerNodeStores(t *testing.T, e *clusterEnv) {
	nodes := perNodeNodes(t, e, 2, nil)
	a, b := nodes[0], nodes[1]
	onA, onB := livesynctest.Dial(t, a.ws), livesynctest.Dial(t, b.ws)
	onA.Join("r", nil)
	onB.Join("r", nil)
	fromA := postChats(t, a, "r", "a1", "a2")
	fromB := postChats(t, b, "r", "b1") // b1 has a1's id, in B's store
	if fromB[0].ID != fromA[0].ID {
		t.Fatalf("ids %s and %s: the test wants per-node ids to collide", fromB[0].ID, fromA[0].ID)
	}
	livesynctest.WaitFor(t, "node B to hear node A's chat", func() bool { return len(recentTexts(b.s, "r")) == 3 })

	if r := b.api(t, http.MethodDelete, roomPath("r", "/chat/"+fromA[1].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE through node B = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "node A's store to drop a2", func() bool { return slices.Equal(storedTexts(t, a.s, "r"), []string{"a1"}) })
	if r := a.api(t, http.MethodDelete, roomPath("r", "/chat/"+fromA[0].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE through node A = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "node A's store to drop a1", func() bool { return len(storedTexts(t, a.s, "r")) == 0 })
	// b1, node B's message of the same id, is another message: it stays.
	postChats(t, a, "r", "sync") // the deletion reached B before this
	livesynctest.WaitFor(t, "node B to hear the next message", func() bool { return slices.Contains(recentTexts(b.s, "r"), "sync") })
	if got := storedTexts(t, b.s, "r"); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("node B's store %q, want b1 kept", got)
	}
}

// perNodeNodes starts n nodes of a cluster whose nodes each have their
// own memory store, with the HTTP API and users given by the URL; edit
// changes each node's options first.
func perNodeNodes(t *testing.T, e *clusterEnv, n int, edit func(*Options)) []*opsServer {
	return perNodeNodesAt(t, e, e.addr, n, edit)
}

// perNodeNodesAt is perNodeNodes with the nodes reaching Redis at addr
// (a link of e's, which the test cuts).
func perNodeNodesAt(t *testing.T, e *clusterEnv, addr string, n int, edit func(*Options)) []*opsServer {
	out := make([]*opsServer, n)
	for i := range out {
		opts := e.nodeOptions(addr, chat.NewMemoryStore(nil), nil)
		opts.OnAuth, opts.StorePerNode = usersByQuery, true
		if edit != nil {
			edit(opts)
		}
		out[i] = startOpsServer(t, opts, testAPIKey)
	}
	return out
}

// storedTexts is room id's messages in s's own store.
func storedTexts(t *testing.T, s *Server, id string) []string {
	t.Helper()
	msgs, err := s.store.History(context.Background(), id, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	return chatTexts(msgs)
}

// TestClusterModerationDeletePerNodeByHistory: with a store per node, the
// message a DELETE names is the one the recent history of the node asked
// holds: another node's message is deleted from that node's store, and
// the node asked keeps its own message of the same id, which its recent
// history no longer holds.
func TestClusterModerationDeletePerNodeByHistory(t *testing.T) {
	forRedisModes(t, testClusterModerationDeletePerNodeByHistory)
}

func testClusterModerationDeletePerNodeByHistory(t *testing.T, e *clusterEnv) {
	nodes := perNodeNodes(t, e, 2, func(o *Options) { o.HistoryLimit = 1 })
	a, b := nodes[0], nodes[1]
	onA, onB := livesynctest.Dial(t, a.ws), livesynctest.Dial(t, b.ws)
	onA.Join("r", nil)
	onB.Join("r", nil)
	fromA := postChats(t, a, "r", "a1")
	livesynctest.WaitFor(t, "node B to hear a1", func() bool { return slices.Equal(recentTexts(b.s, "r"), []string{"a1"}) })
	fromB := postChats(t, b, "r", "b1") // b1 has a1's id; A's recent history keeps b1 alone
	if fromB[0].ID != fromA[0].ID {
		t.Fatalf("ids %s and %s: the test wants per-node ids to collide", fromB[0].ID, fromA[0].ID)
	}
	livesynctest.WaitFor(t, "node A to hear b1", func() bool { return slices.Equal(recentTexts(a.s, "r"), []string{"b1"}) })

	if r := a.api(t, http.MethodDelete, roomPath("r", "/chat/"+fromB[0].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE through node A = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "node B's store to drop b1", func() bool { return len(storedTexts(t, b.s, "r")) == 0 })
	if got := storedTexts(t, a.s, "r"); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("node A's store %q, want a1 kept: it is not the message A's history named", got)
	}
}

// TestClusterModerationDeletePerNodeAfterRoomClosed: with a store per
// node, a message whose sender's room has closed on its node is deleted
// through that node from its store and from the recent history of the
// nodes where the room lives on.
func TestClusterModerationDeletePerNodeAfterRoomClosed(t *testing.T) {
	forRedisModes(t, testClusterModerationDeletePerNodeAfterRoomClosed)
}

func testClusterModerationDeletePerNodeAfterRoomClosed(t *testing.T, e *clusterEnv) {
	nodes := perNodeNodes(t, e, 2, nil)
	a, b := nodes[0], nodes[1]
	onA, onB := livesynctest.Dial(t, a.ws+"?u=ua"), livesynctest.Dial(t, b.ws)
	onA.Join("r", nil)
	onB.Join("r", nil)
	onA.Send(protocol.MsgSendChat, map[string]string{"message": "a1"})
	var m protocol.StoredChatMessage
	if err := json.Unmarshal(onA.NextOf(protocol.MsgChatMessage).Payload, &m); err != nil {
		t.Fatal(err)
	}
	livesynctest.WaitFor(t, "node B to hear a1", func() bool { return slices.Equal(recentTexts(b.s, "r"), []string{"a1"}) })
	onA.Close()
	livesynctest.WaitFor(t, "the room to close on node A", func() bool { return a.s.lookupRoom("r") == nil })

	if r := a.api(t, http.MethodDelete, roomPath("r", "/chat/"+m.ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE through node A = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "node B's recent history to drop a1", func() bool { return len(recentTexts(b.s, "r")) == 0 })
	if got := storedTexts(t, a.s, "r"); len(got) != 0 {
		t.Fatalf("node A's store %q, want a1 deleted", got)
	}
}

// TestClusterModerationDeletePerNodeAfterRestart: a node restarted with
// its store (a new node id, its earlier messages named by the old one)
// deletes from its store a message of its earlier run that a DELETE
// through another node names.
func TestClusterModerationDeletePerNodeAfterRestart(t *testing.T) {
	forRedisModes(t, testClusterModerationDeletePerNodeAfterRestart)
}

func testClusterModerationDeletePerNodeAfterRestart(t *testing.T, e *clusterEnv) {
	kept := newSharedStore(t) // the restarted node's store, as a SQLite file would be
	nodeA := func(t *testing.T) *opsServer {
		return perNodeNodes(t, e, 1, func(o *Options) { o.Store = kept })[0]
	}
	b := perNodeNodes(t, e, 1, nil)[0]
	onB := livesynctest.Dial(t, b.ws)
	onB.Join("r", nil)
	var m protocol.StoredChatMessage
	t.Run("first run", func(t *testing.T) { // the node stops when it ends
		m = postChats(t, nodeA(t), "r", "a1")[0]
		livesynctest.WaitFor(t, "node B to hear a1", func() bool { return slices.Equal(recentTexts(b.s, "r"), []string{"a1"}) })
	})
	a2 := nodeA(t)
	livesynctest.Dial(t, a2.ws).Join("r", nil) // reads a1 from its store

	if r := b.api(t, http.MethodDelete, roomPath("r", "/chat/"+m.ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE through node B = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "the restarted node's store to drop a1", func() bool { return len(storedTexts(t, a2.s, "r")) == 0 })
	if got := recentTexts(b.s, "r"); len(got) != 0 {
		t.Fatalf("node B's recent history %q", got)
	}
}

package livesync

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/openlivesync/livesync/chat"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// TestClusterModerationKickDocPeer: a user whose only connection is a
// peer of the room's document on node A is kicked through node B, and
// counted the same whichever node is asked.
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
}

// TestClusterModerationDeletePerNodeStores: in a cluster whose nodes each
// have their own store, a message stored on node A is deleted from A's
// store through node B (204), and through A from A's store alone: node
// B's own message of the same id stays.
func TestClusterModerationDeletePerNodeStores(t *testing.T) {
	forRedisModes(t, testClusterModerationDeletePerNodeStores)
}

func testClusterModerationDeletePerNodeStores(t *testing.T, e *clusterEnv) {
	node := func() *opsServer {
		opts := e.nodeOptions(e.addr, chat.NewMemoryStore(nil), nil)
		opts.OnAuth, opts.StorePerNode = usersByQuery, true
		return startOpsServer(t, opts, testAPIKey)
	}
	a, b := node(), node()
	onA, onB := livesynctest.Dial(t, a.ws), livesynctest.Dial(t, b.ws)
	onA.Join("r", nil)
	onB.Join("r", nil)
	fromA := postChats(t, a, "r", "a1", "a2")
	stored := func(s *Server) []string {
		msgs, err := s.store.History(context.Background(), "r", 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		return chatTexts(msgs)
	}
	fromB := postChats(t, b, "r", "b1") // b1 has a1's id, in B's store
	if fromB[0].ID != fromA[0].ID {
		t.Fatalf("ids %s and %s: the test wants per-node ids to collide", fromB[0].ID, fromA[0].ID)
	}
	livesynctest.WaitFor(t, "node B to hear node A's chat", func() bool { return len(recentTexts(b.s, "r")) == 3 })

	if r := b.api(t, http.MethodDelete, roomPath("r", "/chat/"+fromA[1].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE through node B = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "node A's store to drop a2", func() bool { return slices.Equal(stored(a.s), []string{"a1"}) })
	if r := a.api(t, http.MethodDelete, roomPath("r", "/chat/"+fromA[0].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE through node A = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "node A's store to drop a1", func() bool { return len(stored(a.s)) == 0 })
	// b1, node B's message of the same id, is another message: it stays.
	postChats(t, a, "r", "sync") // the deletion reached B before this
	livesynctest.WaitFor(t, "node B to hear the next message", func() bool { return slices.Contains(recentTexts(b.s, "r"), "sync") })
	if got := stored(b.s); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("node B's store %q, want b1 kept", got)
	}
}

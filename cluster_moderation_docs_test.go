package livesync

import (
	"context"
	"testing"

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

package livesync

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// moderationCluster is a cluster on Redis whose nodes share one chat
// store, each with the HTTP API and users given by the URL (usersByQuery).
type moderationCluster struct {
	e     *clusterEnv
	store sharedStore
}

func newModerationCluster(t *testing.T, e *clusterEnv) *moderationCluster {
	return &moderationCluster{e, newSharedStore(t)}
}

// node starts one more node.
func (c *moderationCluster) node(t *testing.T) *opsServer {
	opts := c.e.nodeOptions(c.e.addr, c.store, nil)
	opts.OnAuth = usersByQuery
	return startOpsServer(t, opts, testAPIKey)
}

// moderationNodes starts a cluster of n such nodes.
func moderationNodes(t *testing.T, e *clusterEnv, n int) (*moderationCluster, []*opsServer) {
	c := newModerationCluster(t, e)
	out := make([]*opsServer, n)
	for i := range out {
		out[i] = c.node(t)
	}
	return c, out
}

// recentTexts is room id's recent history on s, what a joiner there gets.
func recentTexts(s *Server, id string) []string {
	r := s.lookupRoom(id)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return chatTexts(r.history)
}

// TestClusterModerationDelete: a message deleted through one node leaves
// the recent history of another node where the room is live, so a joiner
// there, and get_chat_history there, no longer see it.
func TestClusterModerationDelete(t *testing.T) { forRedisModes(t, testClusterModerationDelete) }

func testClusterModerationDelete(t *testing.T, e *clusterEnv) {
	_, nodes := moderationNodes(t, e, 2)
	a, b := nodes[0], nodes[1]
	onA, onB := livesynctest.Dial(t, a.ws), livesynctest.Dial(t, b.ws)
	onA.Join("r", nil)
	onB.Join("r", nil)
	msgs := postChats(t, a, "r", "one", "two", "three")
	livesynctest.WaitFor(t, "the chat to reach node B", func() bool { return len(recentTexts(b.s, "r")) == 3 })

	if r := a.api(t, http.MethodDelete, roomPath("r", "/chat/"+msgs[0].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", r.status, r.body)
	}
	want := []string{"two", "three"}
	livesynctest.WaitFor(t, "node B to drop the message", func() bool { return slices.Equal(recentTexts(b.s, "r"), want) })
	if got := recentTexts(a.s, "r"); !slices.Equal(got, want) {
		t.Fatalf("node A's recent history %q", got)
	}
	later := livesynctest.Dial(t, b.ws)
	if got := chatTexts(later.Join("r", nil).ChatHistory); !slices.Equal(got, want) {
		t.Fatalf("a joiner on node B got %q, want %q", got, want)
	}
	if got := historyTexts(later); !slices.Equal(got, want) {
		t.Fatalf("get_chat_history on node B %q, want %q", got, want)
	}
	// Deleted through node B, a message leaves node A's history too; the
	// node that answers 404 for a message gone is any of them.
	if r := b.api(t, http.MethodDelete, roomPath("r", "/chat/"+msgs[2].ID), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE on node B = %d %s", r.status, r.body)
	}
	livesynctest.WaitFor(t, "node A to drop the message", func() bool { return slices.Equal(recentTexts(a.s, "r"), []string{"two"}) })
	a.api(t, http.MethodDelete, roomPath("r", "/chat/"+msgs[2].ID), "").wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
}

// TestClusterModerationKickAndBan: a kick sent to node A closes members on
// node B, counted in the answer; everyone sees them leave; the ban made on
// A refuses the user's join on B, and on a node started afterwards.
func TestClusterModerationKickAndBan(t *testing.T) { forRedisModes(t, testClusterModerationKickAndBan) }

func testClusterModerationKickAndBan(t *testing.T, e *clusterEnv) {
	cluster, nodes := moderationNodes(t, e, 2)
	a, b := nodes[0], nodes[1]
	watchA := livesynctest.Dial(t, a.ws+"?u=wa")
	watchA.Join("r", nil)
	target := livesynctest.Dial(t, b.ws+"?u=ub")
	target.Join("r", nil)
	anon := livesynctest.Dial(t, b.ws)
	anon.Join("r", nil)
	watchB := livesynctest.Dial(t, b.ws+"?u=wb")
	watchB.Join("r", nil)
	for _, w := range []*livesynctest.Client{watchA, watchB} {
		w.Until("everyone", func() bool { return len(w.View) == 4 }, w.Track)
	}

	// By user id, with a ban.
	k := kickResult(t, a, "r", `{"userId":"ub","reason":"cool off","banSeconds":600}`)
	if k.Kicked != 1 || !slices.Equal(k.Banned, []string{"ub"}) {
		t.Fatalf("kick on node A answered %+v, want 1 kicked on node B, ub banned", k)
	}
	waitKicked(t, target, "cool off")
	expectLeft(watchA, target.ID)
	expectLeft(watchB, target.ID)
	// The ban went out before the kick, on the same subscription: node B
	// has it by now.
	back := livesynctest.Dial(t, b.ws+"?u=ub")
	back.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r"})
	back.ExpectError(protocol.CodeForbidden)
	back.Join("elsewhere", nil)

	// By connection id, anonymous, across nodes.
	if k := kickResult(t, a, "r", fmt.Sprintf(`{"connectionId":%q}`, anon.ID)); k.Kicked != 1 || k.Banned != nil {
		t.Fatalf("kick of an anonymous connection answered %+v", k)
	}
	waitKicked(t, anon, defaultKickReason)
	expectLeft(watchA, anon.ID)
	// Gone already: 0, from either node.
	if k := kickResult(t, b, "r", fmt.Sprintf(`{"connectionId":%q}`, anon.ID)); k.Kicked != 0 {
		t.Fatalf("second kick answered %+v", k)
	}
	// Each node counts the connections it removed, and the node asked
	// the bans it made.
	if ka, kb, ba, bb := a.s.Stats().Kicks, b.s.Stats().Kicks, a.s.Stats().Bans, b.s.Stats().Bans; ka != 0 || kb != 2 || ba != 1 || bb != 0 {
		t.Fatalf("kicks A %d B %d, bans A %d B %d; want B's 2 kicks, A's 1 ban", ka, kb, ba, bb)
	}

	// A node started after the ban loads it (in the background, once
	// subscribed), and refuses the user's join.
	c := cluster.node(t)
	livesynctest.WaitFor(t, "the new node to load the ban", func() bool { return c.s.bans.banned("r", "ub") })
	third := livesynctest.Dial(t, c.ws+"?u=ub")
	third.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r"})
	third.ExpectError(protocol.CodeForbidden)
	// A room known only through the registry (its member is on B) is no
	// 404 on A.
	if k := kickResult(t, a, "r", `{"userId":"nobody"}`); k.Kicked != 0 {
		t.Fatalf("kick of nobody answered %+v", k)
	}
	a.api(t, http.MethodPost, roomPath("nowhere", "/kick"), `{"userId":"ub"}`).wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)

	// The ban ends on node B by its own clock.
	b.s.bans.skew.Store(int64(11 * time.Minute))
	back.Join("r", nil)
}

// TestClusterAPIPresence: GET …/presence lists a room's members on every
// node alike, a node where the room has no member included.
func TestClusterAPIPresence(t *testing.T) { forRedisModes(t, testClusterAPIPresence) }

func testClusterAPIPresence(t *testing.T, e *clusterEnv) {
	_, nodes := moderationNodes(t, e, 2)
	a, b := nodes[0], nodes[1]
	member := livesynctest.Dial(t, a.ws+"?u=ua")
	member.Join("r", map[string]any{"cursor": 1})
	var page struct {
		Presence map[string]protocol.PresenceEntry `json:"presence"`
	}
	livesynctest.WaitFor(t, "node B's API to list node A's member", func() bool {
		r := b.api(t, http.MethodGet, roomPath("r", "/presence"), "")
		if r.status != http.StatusOK {
			t.Fatalf("GET presence on node B = %d %s", r.status, r.body)
		}
		r.decode(t, &page)
		return len(page.Presence) == 1
	})
	if e := page.Presence[member.ID]; e.UserID != "ua" || string(e.Presence) != `{"cursor":1}` {
		t.Fatalf("node B lists %+v", page.Presence)
	}
}

// TestClusterBanOutlivesRedis: Redis comes back empty after an outage,
// which loses the bans it held; the nodes write back those in force, so
// that a node started afterwards, which reads them from Redis, refuses
// the banned user too.
func TestClusterBanOutlivesRedis(t *testing.T) { forRedisModes(t, testClusterBanOutlivesRedis) }

func testClusterBanOutlivesRedis(t *testing.T, e *clusterEnv) {
	proxy := e.link()
	store := newSharedStore(t)
	node := func(addr string) *opsServer {
		opts := e.nodeOptions(addr, store, nil)
		opts.OnAuth = usersByQuery
		return startOpsServer(t, opts, testAPIKey)
	}
	a := node(proxy.Addr())
	livesynctest.Dial(t, a.ws+"?u=ub").Join("r", nil)
	if k := kickResult(t, a, "r", `{"userId":"ub","banSeconds":600}`); !slices.Equal(k.Banned, []string{"ub"}) {
		t.Fatalf("kick answered %+v", k)
	}
	proxy.Cut()
	e.wipe() // and Redis lost everything, the bans with it
	livesynctest.WaitFor(t, "the node to notice the outage", func() bool { return a.s.broker.Healthy() != nil })
	proxy.Restore()
	livesynctest.WaitFor(t, "the node to recover", func() bool { return a.s.broker.Healthy() == nil })

	c := node(e.addr)
	livesynctest.WaitFor(t, "a node started after the outage to load the ban", func() bool { return c.s.bans.banned("r", "ub") })
	back := livesynctest.Dial(t, c.ws+"?u=ub")
	back.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r"})
	back.ExpectError(protocol.CodeForbidden)
}

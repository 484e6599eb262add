package livesync

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// deleteVia sends DELETE of message id of room r through o, wanting one
// of the statuses.
func deleteVia(t *testing.T, o *opsServer, id string, want ...int) {
	t.Helper()
	if r := o.api(t, http.MethodDelete, roomPath("r", "/chat/"+id), ""); !slices.Contains(want, r.status) {
		t.Fatalf("DELETE %s = %d %s, want one of %v", id, r.status, r.body, want)
	}
}

// settled returns once node watcher has applied the deletions owner's
// node sent before: the deletion of a message of owner's, posted now and
// deleted through owner, leaves watcher's recent history after them.
func settled(t *testing.T, owner, watcher *opsServer) {
	t.Helper()
	m := postChats(t, owner, "r", "marker")[0]
	livesynctest.WaitFor(t, "the marker to reach the other node", func() bool { return slices.Contains(recentTexts(watcher.s, "r"), "marker") })
	deleteVia(t, owner, m.ID, http.StatusNoContent)
	livesynctest.WaitFor(t, "the marker's deletion to reach the other node", func() bool { return !slices.Contains(recentTexts(watcher.s, "r"), "marker") })
}

// TestClusterModerationDeletePerNodeRetry: with a store per node, a
// repeated DELETE names the message the first named, not another node's
// (or the asked node's own) message of the same id.
func TestClusterModerationDeletePerNodeRetry(t *testing.T) {
	// Each case on a cluster of its own: a node hears the deletions of
	// the last minutes when it starts (see broker/redis keepDeletions),
	// and those of another case would name its messages.
	cases := map[string]func(t *testing.T, e *clusterEnv){}
	cases["own message"] = func(t *testing.T, e *clusterEnv) {
		nodes := perNodeNodes(t, e, 2, nil)
		a, b := nodes[0], nodes[1]
		livesynctest.Dial(t, a.ws).Join("r", nil)
		livesynctest.Dial(t, b.ws).Join("r", nil)
		a1 := postChats(t, a, "r", "a1")[0]
		livesynctest.WaitFor(t, "node B to hear a1", func() bool { return slices.Contains(recentTexts(b.s, "r"), "a1") })
		b1 := postChats(t, b, "r", "b1")[0] // a1's id, in B's store
		deleteVia(t, b, b1.ID, http.StatusNoContent)
		deleteVia(t, b, b1.ID, http.StatusNoContent, http.StatusNotFound) // the retry: done either way
		if b1.ID != a1.ID {
			t.Fatalf("ids %s and %s: the test wants per-node ids to collide", a1.ID, b1.ID)
		}
		settled(t, b, a)
		if got := storedTexts(t, a.s, "r"); !slices.Equal(got, []string{"a1"}) {
			t.Fatalf("node A's store %q after B's DELETE of b1 and its retry, want a1 kept", got)
		}
	}
	cases["another node's message"] = func(t *testing.T, e *clusterEnv) {
		nodes := perNodeNodes(t, e, 2, func(o *Options) { o.HistoryLimit = 1 })
		a, b := nodes[0], nodes[1]
		livesynctest.Dial(t, a.ws).Join("r", nil)
		livesynctest.Dial(t, b.ws).Join("r", nil)
		postChats(t, a, "r", "a1")
		livesynctest.WaitFor(t, "node B to hear a1", func() bool { return slices.Equal(recentTexts(b.s, "r"), []string{"a1"}) })
		b1 := postChats(t, b, "r", "b1")[0] // a1's id; A's recent history keeps b1 alone
		livesynctest.WaitFor(t, "node A to hear b1", func() bool { return slices.Equal(recentTexts(a.s, "r"), []string{"b1"}) })
		deleteVia(t, a, b1.ID, http.StatusNoContent)
		deleteVia(t, a, b1.ID, http.StatusNoContent, http.StatusNotFound)
		livesynctest.WaitFor(t, "node B's store to drop b1", func() bool { return len(storedTexts(t, b.s, "r")) == 0 })
		if got := storedTexts(t, a.s, "r"); !slices.Equal(got, []string{"a1"}) {
			t.Fatalf("node A's store %q after the DELETE of b1 and its retry, want a1 kept", got)
		}
	}
	cases["through another node"] = func(t *testing.T, e *clusterEnv) {
		nodes := perNodeNodes(t, e, 3, nil)
		a, b, c := nodes[0], nodes[1], nodes[2]
		for _, n := range nodes {
			livesynctest.Dial(t, n.ws).Join("r", nil)
		}
		c1 := postChats(t, c, "r", "c1")[0]
		livesynctest.WaitFor(t, "node A to hear c1", func() bool { return slices.Contains(recentTexts(a.s, "r"), "c1") })
		b1 := postChats(t, b, "r", "b1")[0] // c1's id
		if b1.ID != c1.ID {
			t.Fatalf("ids %s and %s: the test wants per-node ids to collide", b1.ID, c1.ID)
		}
		livesynctest.WaitFor(t, "nodes A and C to hear b1", func() bool {
			return slices.Contains(recentTexts(a.s, "r"), "b1") && slices.Contains(recentTexts(c.s, "r"), "b1")
		})
		deleteVia(t, a, b1.ID, http.StatusNoContent) // names b1, the newest of that id
		livesynctest.WaitFor(t, "node C to forget b1", func() bool { return !slices.Contains(recentTexts(c.s, "r"), "b1") })
		// The retry, through another node (a load balancer's choice):
		// node C's own store would be asked at once.
		deleteVia(t, c, b1.ID, http.StatusNoContent, http.StatusNotFound)
		if got := storedTexts(t, c.s, "r"); !slices.Equal(got, []string{"c1"}) {
			t.Fatalf("node C's store %q after a retried DELETE of b1 through C, want c1 kept", got)
		}
	}
	cases["after the cluster was unreachable"] = func(t *testing.T, e *clusterEnv) {
		proxy := e.link()
		historyOfOne := func(o *Options) { o.HistoryLimit = 1 }
		a := perNodeNodesAt(t, e, proxy.Addr(), 1, historyOfOne)[0]
		b := perNodeNodes(t, e, 1, historyOfOne)[0]
		livesynctest.Dial(t, a.ws).Join("r", nil)
		livesynctest.Dial(t, b.ws).Join("r", nil)
		postChats(t, a, "r", "a1", "a2")
		livesynctest.WaitFor(t, "node B to hear a2", func() bool { return slices.Equal(recentTexts(b.s, "r"), []string{"a2"}) })
		b2 := postChats(t, b, "r", "b1", "b2")[1] // a2's id
		livesynctest.WaitFor(t, "node A to hear b2", func() bool { return slices.Equal(recentTexts(a.s, "r"), []string{"b2"}) })
		proxy.Cut()
		livesynctest.WaitFor(t, "node A to notice the outage", func() bool { return a.s.broker.Healthy() != nil })
		deleteVia(t, a, b2.ID, http.StatusServiceUnavailable) // another node's message, that node unreachable
		proxy.Restore()
		livesynctest.WaitFor(t, "node A to recover", func() bool { return a.s.broker.Healthy() == nil })
		deleteVia(t, a, b2.ID, http.StatusNoContent)
		livesynctest.WaitFor(t, "node B's store to drop b2", func() bool { return slices.Equal(storedTexts(t, b.s, "r"), []string{"b1"}) })
		if got := storedTexts(t, a.s, "r"); !slices.Equal(got, []string{"a1", "a2"}) {
			t.Fatalf("node A's store %q, want a1 a2 kept (the DELETE named B's b2)", got)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) { forRedisModes(t, cases[name]) })
	}
}

// TestClusterModerationDeletePerNodeOwnerWithoutMembers: with a store per
// node, a message a node holds in its store while it has no member in the
// room (posted through its API, or its members gone) is deleted from that
// store by a DELETE through another node.
func TestClusterModerationDeletePerNodeOwnerWithoutMembers(t *testing.T) {
	forRedisModes(t, func(t *testing.T, e *clusterEnv) {
		nodes := perNodeNodes(t, e, 2, nil)
		a, b := nodes[0], nodes[1]
		livesynctest.Dial(t, b.ws).Join("r", nil)
		m := postChats(t, a, "r", "system")[0]
		livesynctest.WaitFor(t, "node B to hear it", func() bool { return slices.Equal(recentTexts(b.s, "r"), []string{"system"}) })
		deleteVia(t, b, m.ID, http.StatusNoContent)
		livesynctest.WaitFor(t, "node A's store to drop it", func() bool { return len(storedTexts(t, a.s, "r")) == 0 })
	})
}

// TestClusterModerationDeletePerNodeWhileReconnecting: with a store per
// node, a deletion announced while the node whose store holds the message
// is reconnecting to Redis reaches it once it is back.
func TestClusterModerationDeletePerNodeWhileReconnecting(t *testing.T) {
	forRedisModes(t, func(t *testing.T, e *clusterEnv) {
		proxy := e.link()
		a, b := perNodeNodes(t, e, 1, nil)[0], perNodeNodesAt(t, e, proxy.Addr(), 1, nil)[0]
		livesynctest.Dial(t, a.ws).Join("r", nil)
		livesynctest.Dial(t, b.ws).Join("r", nil)
		m := postChats(t, b, "r", "b1")[0]
		livesynctest.WaitFor(t, "node A to hear b1", func() bool { return slices.Equal(recentTexts(a.s, "r"), []string{"b1"}) })
		proxy.Cut()
		livesynctest.WaitFor(t, "node B to notice the outage", func() bool { return b.s.broker.Healthy() != nil })
		deleteVia(t, a, m.ID, http.StatusNoContent)
		proxy.Restore()
		livesynctest.WaitFor(t, "node B's store to drop b1 once it is back", func() bool { return len(storedTexts(t, b.s, "r")) == 0 })
	})
}

// TestModerationDeleteSharedRetryResends: with a shared store, a DELETE
// whose deletion could not reach the other nodes is sent again by its
// retry, which the store answers 404.
func TestModerationDeleteSharedRetryResends(t *testing.T) {
	e := newClusterEnv(t)
	proxy := e.link()
	store := newSharedStore(t)
	start := func(addr string) *opsServer {
		opts := e.nodeOptions(addr, store, nil)
		opts.OnAuth = usersByQuery
		return startOpsServer(t, opts, testAPIKey)
	}
	a, b := start(proxy.Addr()), start(e.addr)
	livesynctest.Dial(t, a.ws).Join("r", nil)
	livesynctest.Dial(t, b.ws).Join("r", nil)
	m := postChats(t, b, "r", "m1")[0]
	livesynctest.WaitFor(t, "node A to hear m1", func() bool { return slices.Equal(recentTexts(a.s, "r"), []string{"m1"}) })
	proxy.Cut()
	livesynctest.WaitFor(t, "node A to notice the outage", func() bool { return a.s.broker.Healthy() != nil })
	deleteVia(t, a, m.ID, http.StatusNoContent) // the store deleted it
	proxy.Restore()
	livesynctest.WaitFor(t, "node A to recover", func() bool { return a.s.broker.Healthy() == nil })
	deleteVia(t, a, m.ID, http.StatusNotFound)
	livesynctest.WaitFor(t, "node B's recent history to drop m1", func() bool { return len(recentTexts(b.s, "r")) == 0 })
}

// TestPastNodesLearnsNodeIDsOnly: connection ids that name no node (rows
// migrated from the Node.js package) do not take pastNodes' room.
func TestPastNodesLearnsNodeIDsOnly(t *testing.T) {
	sentBy := func(connIDs ...string) []protocol.StoredChatMessage {
		out := make([]protocol.StoredChatMessage, len(connIDs))
		for i, c := range connIDs {
			out[i].ConnectionID = c
		}
		return out
	}
	var p pastNodes
	for i := range 2 * maxPastNodes {
		p.learn(sentBy(fmt.Sprintf("nodejs_conn_%d", i), strconv.Itoa(i)))
	}
	p.learn(sentBy("deadbeef-3", "server-0badcafe", ""))
	for _, node := range []string{"deadbeef", "0badcafe"} {
		if !p.has(node) {
			t.Fatalf("node id %s not learned", node)
		}
	}
	if p.has("nodejs_conn_1") || p.has("") {
		t.Fatal("learned a connection id that names no node")
	}
}

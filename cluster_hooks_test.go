package livesync

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
)

// hookRecord is one observation of a cluster test, with the node that
// made it.
type hookRecord struct {
	node   int
	kind   string // "join", "leave", "online", "offline"
	room   string
	conn   string
	user   string
	edge   bool // First on a join, Last on a leave
	online bool
}

// hookRecorder collects the observations of every node of a test.
type hookRecorder struct {
	mu  sync.Mutex
	all []hookRecord
}

func (h *hookRecorder) add(r hookRecord) {
	h.mu.Lock()
	h.all = append(h.all, r)
	h.mu.Unlock()
}

// count counts the records that match.
func (h *hookRecorder) count(match func(hookRecord) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.all {
		if match(r) {
			n++
		}
	}
	return n
}

// hooks are node i's observers, recording into h.
func (h *hookRecorder) hooks(i int, offlineDelay time.Duration) Hooks {
	member := func(kind string) func(context.Context, MemberEvent) {
		return func(_ context.Context, m MemberEvent) {
			h.add(hookRecord{node: i, kind: kind, room: m.RoomID, conn: m.ConnectionID, user: m.UserID, edge: m.First || m.Last})
		}
	}
	return Hooks{
		OnJoin:  member("join"),
		OnLeave: member("leave"),
		OnUser: func(_ context.Context, u UserEvent) {
			kind := "offline"
			if u.Online {
				kind = "online"
			}
			h.add(hookRecord{node: i, kind: kind, user: u.UserID, online: u.Online})
		},
		OfflineDelay: offlineDelay,
	}
}

// hookNode starts node i of e's cluster, reaching Redis at addr, with h's
// observers and users named by the "user" query parameter.
func (e *clusterEnv) hookNode(i int, addr string, h *hookRecorder, offlineDelay time.Duration) string {
	e.t.Helper()
	_, url := e.hookServer(i, addr, h, offlineDelay)
	return url
}

// hookServer is hookNode that also returns the node's server.
func (e *clusterEnv) hookServer(i int, addr string, h *hookRecorder, offlineDelay time.Duration) (*Server, string) {
	e.t.Helper()
	opts := e.nodeOptions(addr, nil, nil)
	opts.Hooks = h.hooks(i, offlineDelay)
	opts.OnAuth = func(r *http.Request) (*UserInfo, error) {
		return &UserInfo{UserID: r.URL.Query().Get("user")}, nil
	}
	return startServer(e.t, opts)
}

// userJoin connects to a hookNode's url as user and joins room.
func userJoin(t *testing.T, url, user, room string) *livesynctest.Client {
	t.Helper()
	c := livesynctest.Dial(t, url+"?user="+user)
	c.Join(room, nil)
	return c
}

func kindIn(kind, room string) func(hookRecord) bool {
	return func(r hookRecord) bool { return r.kind == kind && r.room == room }
}

func userKind(kind, user string) func(hookRecord) bool {
	return func(r hookRecord) bool { return r.kind == kind && r.user == user }
}

// TestClusterHooksRoomOnce: members of one room on three nodes, joining
// and leaving at once: exactly one join is the room's first and exactly
// one leave its last, cluster-wide, wherever they happen.
func TestClusterHooksRoomOnce(t *testing.T) { forRedisModes(t, testClusterHooksRoomOnce) }

func testClusterHooksRoomOnce(t *testing.T, e *clusterEnv) {
	h := &hookRecorder{}
	var urls []string
	for i := range 3 {
		urls = append(urls, e.hookNode(i, e.addr, h, time.Second))
	}
	for round := range 2 { // the room is occupied and vacated twice
		var peers []*livesynctest.Client
		for _, u := range urls {
			peers = append(peers, livesynctest.Dial(t, u), livesynctest.Dial(t, u))
		}
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Go(func() { p.Join("r", nil) })
		}
		wg.Wait()
		livesynctest.WaitFor(t, "every join observed", func() bool { return h.count(kindIn("join", "r")) == 6*(round+1) })
		if n := h.count(func(r hookRecord) bool { return r.kind == "join" && r.edge }); n != round+1 {
			t.Fatalf("round %d: %d joins were the room's first, want %d", round, n, round+1)
		}
		for _, p := range peers {
			wg.Go(p.Close)
		}
		wg.Wait()
		livesynctest.WaitFor(t, "every leave observed", func() bool { return h.count(kindIn("leave", "r")) == 6*(round+1) })
		if n := h.count(func(r hookRecord) bool { return r.kind == "leave" && r.edge }); n != round+1 {
			t.Fatalf("round %d: %d leaves were the room's last, want %d", round, n, round+1)
		}
	}
}

// TestClusterHooksUserOnce: a user with connections on two nodes is
// online once; closing one sends nothing; a reload onto a third node
// sends nothing; closing the last sends one offline, after the delay.
// Markers (other users' offline, on the same node, after the same delay)
// show that nothing more is coming.
func TestClusterHooksUserOnce(t *testing.T) { forRedisModes(t, testClusterHooksUserOnce) }

func testClusterHooksUserOnce(t *testing.T, e *clusterEnv) {
	h := &hookRecorder{}
	const delay = time.Second // far longer than a reload takes
	var urls []string
	for i := range 3 {
		urls = append(urls, e.hookNode(i, e.addr, h, delay))
	}
	dial := func(node int, user string) *livesynctest.Client {
		return userJoin(t, urls[node], user, "r-"+user) // answered once the connection is registered
	}
	// marker: a user connecting and closing on node, after what came
	// before there; its offline comes after any that was due before it.
	marker := func(node int, user string) {
		dial(node, user).Close()
		livesynctest.WaitFor(t, user+"'s offline", func() bool { return h.count(userKind("offline", user)) == 1 })
	}

	tab1, tab2 := dial(0, "ann"), dial(1, "ann")
	livesynctest.WaitFor(t, "ann online", func() bool { return h.count(userKind("online", "ann")) == 1 })
	tab1.Close()
	marker(0, "m1")
	tab2.Close()
	tab3 := dial(2, "ann") // the reload, onto another node
	marker(1, "m2")
	if n := h.count(userKind("offline", "ann")); n != 0 {
		t.Fatalf("ann offline %d times while connected elsewhere", n)
	}
	tab3.Close()
	livesynctest.WaitFor(t, "ann offline", func() bool { return h.count(userKind("offline", "ann")) == 1 })
	marker(2, "m3")
	marker(0, "m4")
	if on, off := h.count(userKind("online", "ann")), h.count(userKind("offline", "ann")); on != 1 || off != 1 {
		t.Fatalf("ann online %d and offline %d times, want once each", on, off)
	}
}

// TestClusterHooksDeadNode: a node dies (loses Redis for good, its
// clients still connected to it): its members' leaves, the room it alone
// occupied going vacant and its only user going offline are each
// observed once, by a surviving node; a user it shared with a live node
// stays online, a room it shared stays occupied until its last member
// elsewhere leaves.
func TestClusterHooksDeadNode(t *testing.T) { forRedisModes(t, testClusterHooksDeadNode) }

func testClusterHooksDeadNode(t *testing.T, e *clusterEnv) {
	h := &hookRecorder{}
	proxy := e.link()
	const delay = 200 * time.Millisecond
	urls := []string{e.hookNode(0, e.addr, h, delay), e.hookNode(1, e.addr, h, delay), e.hookNode(2, proxy.Addr(), h, delay)}
	dial := func(node int, user, room string) *livesynctest.Client { return userJoin(t, urls[node], user, room) }
	a := dial(0, "amy", "shared")
	c := dial(2, "cat", "solo")
	c2 := dial(2, "amy", "shared")
	c3 := dial(2, "cat", "shared")
	livesynctest.WaitFor(t, "every join observed", func() bool { return h.count(func(r hookRecord) bool { return r.kind == "join" }) == 4 })
	livesynctest.WaitFor(t, "both online", func() bool {
		return h.count(userKind("online", "amy")) == 1 && h.count(userKind("online", "cat")) == 1
	})

	proxy.Cut() // node 2 dies, as far as the cluster can tell
	dead := []string{c.ID, c2.ID, c3.ID}
	livesynctest.WaitFor(t, "the dead node's members' leaves", func() bool {
		return h.count(func(r hookRecord) bool { return r.kind == "leave" }) == 3
	})
	livesynctest.WaitFor(t, "cat offline", func() bool { return h.count(userKind("offline", "cat")) == 1 })
	// Marker: a user closing on the sweeper's peers after the sweep; its
	// offline comes after anything else the sweep caused.
	m := dial(0, "marker", "elsewhere")
	m.Close()
	livesynctest.WaitFor(t, "the marker's offline", func() bool { return h.count(userKind("offline", "marker")) == 1 })

	for _, id := range dead {
		if n := h.count(func(r hookRecord) bool { return r.kind == "leave" && r.conn == id && r.node != 2 }); n != 1 {
			t.Errorf("dead member %s's leaves observed by survivors: %d, want 1", id, n)
		}
	}
	if n := h.count(func(r hookRecord) bool { return r.kind == "leave" && r.edge && r.room == "solo" && r.node != 2 }); n != 1 {
		t.Errorf("solo vacated %d times, want once", n)
	}
	if n := h.count(func(r hookRecord) bool { return r.kind == "leave" && r.edge && r.room == "shared" }); n != 0 {
		t.Errorf("shared vacated %d times while amy is in it on node 0", n)
	}
	if n := h.count(func(r hookRecord) bool { return r.kind == "offline" && r.user == "cat" && r.node != 2 }); n != 1 {
		t.Errorf("cat offline %d times by survivors, want 1", n)
	}
	if n := h.count(userKind("offline", "amy")); n != 0 {
		t.Errorf("amy offline %d times while connected to node 0", n)
	}

	// The shared room's last member, on a live node, leaves: vacated once.
	a.Close()
	livesynctest.WaitFor(t, "amy's leave", func() bool {
		return h.count(func(r hookRecord) bool { return r.kind == "leave" && r.conn == a.ID }) == 1
	})
	if n := h.count(func(r hookRecord) bool { return r.kind == "leave" && r.edge && r.room == "shared" }); n != 1 {
		t.Errorf("shared vacated %d times, want once", n)
	}
	if n := h.count(func(r hookRecord) bool { return r.node == 2 && r.kind != "join" && r.kind != "online" }); n != 0 {
		t.Errorf("the dead node observed %d departures itself", n)
	}
}

// TestClusterHooksCountsSurviveRedisLoss: Redis loses everything during
// an outage; once it is back the nodes re-register their members and
// connections, so the last leave and the last close are still observed
// as the room's last and the user going offline, once.
func TestClusterHooksCountsSurviveRedisLoss(t *testing.T) {
	forRedisModes(t, testClusterHooksCountsSurviveRedisLoss)
}

func testClusterHooksCountsSurviveRedisLoss(t *testing.T, e *clusterEnv) {
	h := &hookRecorder{}
	proxy := e.link()
	const delay = 100 * time.Millisecond
	var srvs []*Server
	var urls []string
	for i := range 2 {
		s, url := e.hookServer(i, proxy.Addr(), h, delay)
		srvs, urls = append(srvs, s), append(urls, url)
	}
	a := userJoin(t, urls[0], "ann", "r")
	b := userJoin(t, urls[1], "bob", "r")
	livesynctest.WaitFor(t, "both online", func() bool { return h.count(func(r hookRecord) bool { return r.kind == "online" }) == 2 })

	proxy.Cut()
	e.wipe()
	for _, s := range srvs {
		livesynctest.WaitFor(t, "the outage noticed", func() bool { return s.broker.Healthy() != nil })
	}
	proxy.Restore()
	// The re-registration is the broker's business; its result shows in
	// Redis as both users' connections counted again.
	livesynctest.WaitFor(t, "connections re-registered", func() bool {
		return e.rdb.HLen(t.Context(), e.userKey("ann")).Val() == 1 && e.rdb.HLen(t.Context(), e.userKey("bob")).Val() == 1 &&
			e.rdb.HLen(t.Context(), e.membersKey("r")).Val() == 2
	})
	// Closed only once both nodes know Redis is back: a connection that
	// ends while its node still counts Redis as down is the known window
	// in which a user.offline can be lost, a limit this test does not cover.
	for _, s := range srvs {
		livesynctest.WaitFor(t, "the recovery noticed", func() bool { return s.broker.Healthy() == nil })
	}

	a.Close()
	b.Close()
	livesynctest.WaitFor(t, "both offline", func() bool { return h.count(func(r hookRecord) bool { return r.kind == "offline" }) == 2 })
	livesynctest.WaitFor(t, "both leaves", func() bool { return h.count(kindIn("leave", "r")) == 2 })
	if n := h.count(func(r hookRecord) bool { return r.kind == "leave" && r.edge }); n != 1 {
		t.Fatalf("%d leaves were the room's last, want 1", n)
	}
}

// TestClusterHooksDeadNodeMidOfflineDelay: a node dies while a user whose
// last connection closed there waits out the offline delay (in that
// node's memory): the node that sweeps it sends the user's offline, once.
// A user who came back on another node within the delay is not sent one.
func TestClusterHooksDeadNodeMidOfflineDelay(t *testing.T) {
	forRedisModes(t, testClusterHooksDeadNodeMidOfflineDelay)
}

func testClusterHooksDeadNodeMidOfflineDelay(t *testing.T, e *clusterEnv) {
	h := &hookRecorder{}
	proxy := e.link()
	const delay = 200 * time.Millisecond
	// The dying node's delay never ends within the test: only a survivor
	// can send the offline.
	urls := []string{e.hookNode(0, e.addr, h, delay), e.hookNode(1, e.addr, h, delay), e.hookNode(2, proxy.Addr(), h, time.Hour)}
	dial := func(node int, user string) *livesynctest.Client {
		return userJoin(t, urls[node], user, "r-"+user) // answered once the connection is registered
	}
	cat, dan := dial(2, "cat"), dial(2, "dan")
	livesynctest.WaitFor(t, "both online", func() bool {
		return h.count(userKind("online", "cat")) == 1 && h.count(userKind("online", "dan")) == 1
	})
	pending := func(user string) bool { return e.rdb.Exists(t.Context(), e.pendingKey(user)).Val() == 1 }
	cat.Close()
	dan.Close()
	livesynctest.WaitFor(t, "both waiting out the delay on node 2", func() bool { return pending("cat") && pending("dan") })
	dial(0, "dan") // back, on another node, within the delay
	livesynctest.WaitFor(t, "dan's pending offline cancelled", func() bool { return !pending("dan") })

	proxy.Cut() // node 2 dies, its timers with it as far as the cluster can tell
	livesynctest.WaitFor(t, "cat offline", func() bool { return h.count(userKind("offline", "cat")) == 1 })
	// Marker: a user closing on a survivor after the sweep; its offline
	// comes after anything else the sweep caused.
	dial(0, "marker").Close()
	livesynctest.WaitFor(t, "the marker's offline", func() bool { return h.count(userKind("offline", "marker")) == 1 })
	if n := h.count(func(r hookRecord) bool { return r.kind == "offline" && r.user == "cat" && r.node != 2 }); n != 1 {
		t.Errorf("cat offline %d times by survivors, want 1", n)
	}
	if n := h.count(userKind("offline", "dan")); n != 0 {
		t.Errorf("dan offline %d times while connected to node 0", n)
	}
	if n := h.count(userKind("online", "dan")); n != 1 {
		t.Errorf("dan online %d times, want once (the return was within the delay)", n)
	}
}

// TestClusterHooksPartitionedNodeReannounces: a node cut off from Redis
// for longer than its heartbeat lasts is taken for dead, and a survivor
// observes its members leaving; when it is back it observes their
// arrivals again: its room that had nobody else as occupied again, its
// user whose offline went out as online again, and not the user still
// connected to a survivor.
func TestClusterHooksPartitionedNodeReannounces(t *testing.T) {
	forRedisModes(t, testClusterHooksPartitionedNodeReannounces)
}

func testClusterHooksPartitionedNodeReannounces(t *testing.T, e *clusterEnv) {
	h := &hookRecorder{}
	proxy := e.link()
	const delay = 200 * time.Millisecond
	urls := []string{e.hookNode(0, e.addr, h, delay), e.hookNode(1, proxy.Addr(), h, delay)}
	dial := func(node int, user, room string) *livesynctest.Client { return userJoin(t, urls[node], user, room) }
	dial(0, "amy", "shared")
	cut := []*livesynctest.Client{dial(1, "cat", "solo"), dial(1, "amy", "shared")}
	livesynctest.WaitFor(t, "every join observed", func() bool { return h.count(func(r hookRecord) bool { return r.kind == "join" }) == 3 })

	proxy.Cut()
	livesynctest.WaitFor(t, "the cut node's members' leaves and cat's offline", func() bool {
		return h.count(func(r hookRecord) bool { return r.kind == "leave" && r.node == 0 }) == 2 &&
			h.count(userKind("offline", "cat")) == 1
	})
	proxy.Restore()
	livesynctest.WaitFor(t, "the arrivals observed again", func() bool {
		return h.count(func(r hookRecord) bool { return r.kind == "join" && r.node == 1 }) == 4 &&
			h.count(userKind("online", "cat")) == 2
	})
	for _, c := range cut {
		if n := h.count(func(r hookRecord) bool { return r.kind == "join" && r.conn == c.ID }); n != 2 {
			t.Errorf("%s's joins observed %d times, want 2", c.ID, n)
		}
	}
	if n := h.count(func(r hookRecord) bool { return r.kind == "join" && r.edge && r.room == "solo" }); n != 2 {
		t.Errorf("solo occupied %d times, want twice (before the cut and after)", n)
	}
	if n := h.count(func(r hookRecord) bool { return r.kind == "join" && r.edge && r.room == "shared" }); n != 1 {
		t.Errorf("shared occupied %d times, want once: amy stayed in it on node 0", n)
	}
	if n := h.count(userKind("online", "amy")); n != 1 {
		t.Errorf("amy online %d times, want once: she stayed connected to node 0", n)
	}
}

package livesync

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/protocol"
)

// tallyWait bounds how long the observers wait for the cluster's count
// of a join, a leave or a connection; past it they use this node's view.
// The broker answers within its own timeouts, so this is a safety net.
const tallyWait = 10 * time.Second

// confirmTimeout bounds asking the broker whether a user is still offline.
const confirmTimeout = 5 * time.Second

// tally is the cluster's answer, still to come from the broker, to "was
// this the room's first member / last member / the user's first
// connection?" The observation that needs it is queued at once, under the
// lock that orders it, and its observer waits for the answer: the
// observations keep their order, and a room never waits for Redis.
type tally struct {
	once        sync.Once
	done        chan struct{}
	edge, known bool
}

func newTally() *tally { return &tally{done: make(chan struct{})} }

// report is the broker.Counter report func.
func (t *tally) report(edge, ok bool) {
	t.once.Do(func() {
		t.edge, t.known = edge, ok
		close(t.done)
	})
}

// wait returns the answer, or known false after tallyWait.
func (t *tally) wait() (edge, known bool) {
	timer := time.NewTimer(tallyWait)
	defer timer.Stop()
	select {
	case <-t.done:
		return t.edge, t.known
	case <-timer.C:
		return false, false
	}
}

// users turns connections into OnUser observations: per node, with the
// offline delay timed here; or, when the broker is a broker.Counter,
// cluster-wide, the broker counting the connections and this node timing
// the offline delay of the disconnects (and dead nodes' connections) the
// broker reported as a user's last, then asking the broker to confirm.
type users struct {
	s       *Server
	delay   time.Duration
	counter broker.Counter // nil: per node

	mu      sync.Mutex
	local   map[string]*localUser           // per node
	pending map[*pendingOffline]*time.Timer // cluster: waiting out the delay
	closing bool                            // flush began: confirm at once
	reports sync.WaitGroup                  // cluster: disconnects the broker has yet to report
}

// localUser is a user id with connections on this node, or waiting out
// the offline delay (per node only).
type localUser struct {
	name  string
	conns int
	timer *time.Timer // waiting out the delay
}

// pendingOffline is a user the broker reported without connections,
// waiting out the delay before the confirmation.
type pendingOffline struct{ id, name, token string }

func newUsers(s *Server, counter broker.Counter) *users {
	d := s.opts.Hooks.OfflineDelay
	if d <= 0 {
		d = defaultOfflineDelay
	}
	return &users{s: s, delay: d, counter: counter, local: map[string]*localUser{}, pending: map[*pendingOffline]*time.Timer{}}
}

func (u *users) observe(ob observation) { u.s.observers.add(ob) }

func userEvent(id, name string, online bool) observation {
	return observation{kind: obsUser, user: UserEvent{UserID: id, Name: name, Online: online, At: time.Now()}}
}

// switchUser makes u the user of c, a registered connection that had
// none and whose join_room carried a token of u (see conn.joinUser): the
// connection is counted under u from then on, so that user.online and
// user.offline follow it. Reader.
func (s *Server) switchUser(c *conn, u *UserInfo) {
	if userID(u) == userID(c.user) {
		c.user = u
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users != nil {
		s.users.disconnected(c.event())
	}
	c.user = u
	if s.users != nil {
		s.users.connected(c.event())
	}
}

// connected counts a connection. s.mu held, so the server's connection
// observations keep their order.
func (u *users) connected(ev ConnectionEvent) {
	if ev.UserID == "" {
		return
	}
	if u.counter != nil {
		ob := userEvent(ev.UserID, ev.Name, true)
		ob.tally = newTally()
		u.observe(ob)
		u.counter.ConnectUser(ev.ConnectionID, ev.UserID, ev.Name, ob.tally.report)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	lu := u.local[ev.UserID]
	if lu == nil {
		lu = &localUser{name: ev.Name}
		u.local[ev.UserID] = lu
		u.observe(userEvent(ev.UserID, ev.Name, true))
	}
	if lu.timer != nil { // back within the delay: it never went offline
		lu.timer.Stop()
		lu.timer = nil
	}
	lu.conns++
}

// disconnected uncounts a connection; a user's last starts the delay.
// s.mu held.
func (u *users) disconnected(ev ConnectionEvent) {
	if ev.UserID == "" {
		return
	}
	if u.counter != nil {
		u.reports.Add(1)
		u.counter.DisconnectUser(ev.ConnectionID, ev.UserID, func(token string, ok bool) {
			defer u.reports.Done()
			if token != "" {
				u.wait(&pendingOffline{id: ev.UserID, name: ev.Name, token: token})
			}
		})
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	lu := u.local[ev.UserID]
	if lu == nil || lu.conns == 0 {
		return
	}
	if lu.conns--; lu.conns > 0 {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(u.delay, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.local[ev.UserID] == lu && lu.timer == t {
			delete(u.local, ev.UserID)
			u.observe(userEvent(ev.UserID, lu.name, false))
		}
	})
	lu.timer = t
}

// wait has p wait out the delay, then confirms it (at once when the
// server is stopping).
func (u *users) wait(p *pendingOffline) {
	u.mu.Lock()
	if u.closing {
		u.mu.Unlock()
		u.confirm(p, false)
		return
	}
	u.pending[p] = time.AfterFunc(u.delay, func() {
		u.mu.Lock()
		_, mine := u.pending[p]
		delete(u.pending, p)
		u.mu.Unlock()
		if mine {
			u.confirm(p, true)
		}
	})
	u.mu.Unlock()
}

// confirm asks the broker whether p's user is still offline; the one
// node told yes observes it. A patient confirm tries again, until
// confirmTimeout, when Redis does not answer (it may be coming back
// from an outage); Shutdown's is not, so that it does not wait per user.
func (u *users) confirm(p *pendingOffline, patient bool) {
	ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
	defer cancel()
	// Redis may be coming back from an outage just then: try again until
	// the bound rather than lose the event to one failed round trip.
	offline, err := u.counter.ConfirmOffline(ctx, p.id, p.token)
	for wait := 50 * time.Millisecond; patient && err != nil && ctx.Err() == nil; wait = min(2*wait, time.Second) {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			offline, err = u.counter.ConfirmOffline(ctx, p.id, p.token)
		}
	}
	if err != nil {
		u.s.log.Log(ctx, slogLevelFor(err), "cluster: could not confirm a user offline; not observed", "err", err)
		return
	}
	if offline {
		u.observe(userEvent(p.id, p.name, false))
	}
}

// flush observes at once the offline users waiting out the delay:
// Shutdown calls it once every connection is gone, since a stopping node
// has no reload to wait for. In a cluster, each is still confirmed, so a
// user connected elsewhere is not observed offline; a user who reconnects
// to another node only after this may be observed offline and online.
func (u *users) flush(ctx context.Context) {
	u.mu.Lock()
	u.closing = true
	var ps []*pendingOffline
	for p, t := range u.pending {
		t.Stop()
		ps = append(ps, p)
	}
	clear(u.pending)
	for id, lu := range u.local {
		if lu.timer != nil {
			lu.timer.Stop()
			delete(u.local, id)
			u.observe(userEvent(id, lu.name, false))
		}
	}
	u.mu.Unlock()
	for _, p := range ps {
		u.confirm(p, false)
	}
	// Disconnects the broker has not reported yet confirm as they come.
	done := make(chan struct{})
	go func() { u.reports.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// NodeLost implements broker.LossSink: this node swept a dead node, and
// alone observes its members' departures (with Last as the broker
// counted it) and times its users' offline delay.
func (k clusterSink) NodeLost(members []broker.LostMember, lost []broker.LostUser) {
	s := k.s
	if s.observers == nil {
		return
	}
	at := time.Now()
	for _, m := range members {
		if _, doc := docName(m.RoomID); doc {
			continue // a document's peer, not a room's member
		}
		var e protocol.PresenceEntry
		json.Unmarshal(m.Entry, &e) // the dead node encoded it; a bad one still has the ids below
		ev := MemberEvent{RoomID: m.RoomID, ConnectionID: m.ConnID, UserID: e.UserID, Name: e.Name, Last: m.Last, At: at}
		s.observers.add(observation{kind: obsLeave, member: ev})
	}
	if s.users != nil {
		for _, l := range lost {
			s.users.wait(&pendingOffline{id: l.UserID, name: l.Name, token: l.Token})
		}
	}
}

var _ broker.Reannouncer = clusterSink{}

// Reannounce implements broker.Reannouncer: this node was taken for dead
// and another reported its members gone; now registered again, it
// reports their arrivals again, each room's first as the room's first
// when the room was empty, and each user in onlineUsers coming online.
func (k clusterSink) Reannounce(firstRooms, onlineUsers []string) {
	s := k.s
	if s.observers == nil {
		return
	}
	first := make(map[string]bool, len(firstRooms))
	for _, r := range firstRooms {
		first[r] = true
	}
	for _, r := range s.roomList() {
		r.mu.Lock()
		for i, c := range r.local {
			ev := memberEvent(r.id, &r.members[c.id].entry, i == 0 && first[r.id], false)
			s.observers.add(observation{kind: obsJoin, member: ev})
		}
		r.mu.Unlock()
	}
	if s.users == nil || len(onlineUsers) == 0 {
		return
	}
	online := make(map[string]bool, len(onlineUsers))
	for _, u := range onlineUsers {
		online[u] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if ev := c.event(); online[ev.UserID] {
			delete(online, ev.UserID)
			s.users.observe(userEvent(ev.UserID, ev.Name, true))
		}
	}
}

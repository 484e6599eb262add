package redis

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// recorder is a sink that records what it receives as lines.
type recorder struct {
	mu      sync.Mutex
	got     []string
	resyncs int
}

func (r *recorder) add(s string) { r.mu.Lock(); r.got = append(r.got, s); r.mu.Unlock() }

func (r *recorder) MemberSet(room, conn string, entry []byte) {
	r.add(fmt.Sprintf("set %s %s %s", room, conn, entry))
}
func (r *recorder) MemberRemoved(room, conn string) { r.add(fmt.Sprintf("left %s %s", room, conn)) }
func (r *recorder) Event(room string, msg []byte)   { r.add(fmt.Sprintf("event %s %s", room, msg)) }
func (r *recorder) Chat(room string, seq uint64, msgs []protocol.StoredChatMessage) {
	for _, m := range msgs {
		r.add(fmt.Sprintf("chat %s %s", room, m.Message))
	}
}
func (r *recorder) Resync() { r.mu.Lock(); r.resyncs++; r.mu.Unlock() }

func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) resyncCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resyncs
}

// waitFor waits until the recorder has every line of want.
func (r *recorder) waitFor(t *testing.T, want ...string) {
	t.Helper()
	livesynctest.WaitFor(t, fmt.Sprintf("%q", want), func() bool {
		got := r.lines()
		return !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(got, w) })
	})
}

// forBackends runs a test against a single Redis and against a Redis
// Cluster, each under a key prefix of its own: one suite, two backends.
func forBackends(t *testing.T, test func(t *testing.T, url string)) {
	t.Run("single", func(t *testing.T) {
		addr, prefix := testsvc.RedisPrefix(t)
		test(t, "redis://"+addr+"/0?prefix="+prefix)
	})
	t.Run("cluster", func(t *testing.T) {
		url, _ := testsvc.RedisClusterURL(t)
		test(t, url)
	})
}

// startBroker starts a broker as node on the Redis at url, with fast
// heartbeats, adjusted by tune when it is not nil; it is closed when the
// test ends.
func startBroker(t *testing.T, url, node string, tune ...func(*Options)) (*Broker, *recorder) {
	t.Helper()
	rec := &recorder{}
	return startBrokerWith(t, url, node, rec, tune...), rec
}

// startBrokerWith is startBroker with a sink of the caller's.
func startBrokerWith(t *testing.T, url, node string, sink broker.Sink, tune ...func(*Options)) *Broker {
	t.Helper()
	o := &Options{Heartbeat: 50 * time.Millisecond, NodeTTL: 300 * time.Millisecond, OpTimeout: time.Second}
	for _, f := range tune {
		f(o)
	}
	b, err := New(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(node, sink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func subscribe(t *testing.T, b *Broker, room string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	if err := b.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}
}

// TestBrokerRelaysToOthersOnly: announcements, events and chat reach the
// other nodes subscribed to the room, never their sender; the registry
// shows each node the others' members.
func TestBrokerRelaysToOthersOnly(t *testing.T) { forBackends(t, testBrokerRelaysToOthersOnly) }

func testBrokerRelaysToOthersOnly(t *testing.T, url string) {
	a, ra := startBroker(t, url, "na")
	b, rb := startBroker(t, url, "nb")
	subscribe(t, a, "r")
	subscribe(t, b, "r")
	a.SetMember("r", "na-1", []byte(`{"connectionId":"na-1","presence":{}}`))
	a.PublishEvent("r", []byte(`{"e":1}`))
	a.SetMember("r", "na-1", []byte(`{"connectionId":"na-1","presence":{"x":1}}`))
	rb.waitFor(t, `set r na-1 {"connectionId":"na-1","presence":{"x":1}}`)
	want := []string{
		`set r na-1 {"connectionId":"na-1","presence":{}}`,
		`event r {"e":1}`,
		`set r na-1 {"connectionId":"na-1","presence":{"x":1}}`,
	}
	if got := rb.lines(); !slices.Equal(got, want) {
		t.Fatalf("b received %q, want %q in order", got, want)
	}

	ctx := context.Background()
	st, err := b.RoomState(ctx, "r")
	if err != nil || len(st.Members) != 1 || st.Members[0].ConnID != "na-1" {
		t.Fatalf("b's registry view %+v %v", st, err)
	}
	if st, _ := a.RoomState(ctx, "r"); len(st.Members) != 0 {
		t.Fatalf("a sees its own members in the registry: %+v", st)
	}

	lock, err := b.LockChat(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	seq, err := lock.Publish([]protocol.StoredChatMessage{{ID: "1", RoomID: "r", Message: "hi"}})
	if err != nil || seq <= lock.Seq() {
		t.Fatalf("publish: seq %d after %d, %v", seq, lock.Seq(), err)
	}
	ra.waitFor(t, "chat r hi")

	a.RemoveMember("r", "na-1")
	rb.waitFor(t, "left r na-1")
	// Redis delivers a channel's messages in publication order, so once a
	// has b's marker, published after all of a's own, a would have had
	// those too.
	b.PublishEvent("r", []byte("marker"))
	ra.waitFor(t, "event r marker")
	if got, want := ra.lines(), []string{"chat r hi", "event r marker"}; !slices.Equal(got, want) {
		t.Fatalf("a received %q, want only %q: not its own publications", got, want)
	}
}

// TestBrokerChatLockIsExclusive: a second node waits for the lock until
// the first publishes, and sees its sequence.
func TestBrokerChatLockIsExclusive(t *testing.T) { forBackends(t, testBrokerChatLockIsExclusive) }

func testBrokerChatLockIsExclusive(t *testing.T, url string) {
	a, _ := startBroker(t, url, "na")
	b, _ := startBroker(t, url, "nb")
	ctx := context.Background()
	la, err := a.LockChat(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.LockChat(short, "r"); err == nil {
		t.Fatal("b took a lock a holds")
	}
	got := make(chan uint64, 1)
	go func() {
		lb, err := b.LockChat(ctx, "r")
		if err != nil {
			t.Error(err)
			got <- 0
			return
		}
		got <- lb.Seq()
		lb.Release()
	}()
	seq, err := la.Publish([]protocol.StoredChatMessage{{ID: "1", Message: "m"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != seq {
			t.Fatalf("b's lock is after %d, want %d", s, seq)
		}
	case <-time.After(livesynctest.Timeout):
		t.Fatal("b never got the lock")
	}
}

// TestBrokerSweepsDeadNode: a node that stops without a word (no
// deregistration) has its members removed by the others, in every room,
// once its heartbeat expires.
func TestBrokerSweepsDeadNode(t *testing.T) { forBackends(t, testBrokerSweepsDeadNode) }

func testBrokerSweepsDeadNode(t *testing.T, url string) {
	a, _ := startBroker(t, url, "na")
	b, rb := startBroker(t, url, "nb")
	subscribe(t, b, "r")
	a.SetMember("r", "na-1", []byte(`{}`))
	a.SetMember("s", "na-2", []byte(`{}`))
	rb.waitFor(t, "set r na-1 {}")
	a.stop() // a crash: no goodbye, its keys stay
	rb.waitFor(t, "left r na-1")
	// A Redis Cluster's sweep goes member by member: s's may come after.
	livesynctest.WaitFor(t, "the dead node's member of s removed", func() bool {
		st, err := b.RoomState(context.Background(), "s")
		return err == nil && len(st.Members) == 0
	})
}

// TestBrokerOutage: while Redis (every shard of it) cannot be reached,
// calls fail fast, nothing queues up, Healthy says why; when it is back,
// the node re-registers its members (Redis lost them) and asks for a
// resync.
func TestBrokerOutage(t *testing.T) { forBackends(t, testBrokerOutage) }

func testBrokerOutage(t *testing.T, url string) {
	// A proxy in front of each node a reaches.
	proxy := testsvc.NewProxies(t, nil)
	a, ra := startBroker(t, url, "na", func(o *Options) { o.Dialer = proxy.Dial })
	b, rb := startBroker(t, url, "nb")
	subscribe(t, a, "r")
	subscribe(t, b, "r")
	a.SetMember("r", "na-1", []byte(`{}`))
	rb.waitFor(t, "set r na-1 {}")

	proxy.Cut()
	livesynctest.WaitFor(t, "the outage to be noticed", func() bool { return a.Healthy() != nil })
	// b sweeps a's member once a's heartbeat expires.
	rb.waitFor(t, "left r na-1")
	for i := range 10000 {
		a.PublishEvent("r", []byte(fmt.Sprint(i)))
	}
	a.qmu.Lock()
	queued := len(a.queue)
	a.qmu.Unlock()
	if queued > 10 {
		t.Fatalf("%d operations queued during the outage", queued)
	}
	start := time.Now()
	if _, err := a.LockChat(context.Background(), "r"); err == nil || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("LockChat during the outage: %v after %v, want a fast failure", err, time.Since(start))
	}
	a.SetMember("r", "na-2", []byte(`{}`)) // a joins while cut off

	resyncs := ra.resyncCount()
	proxy.Restore()
	rb.waitFor(t, "set r na-1 {}", "set r na-2 {}")
	livesynctest.WaitFor(t, "a resync after the outage", func() bool { return ra.resyncCount() > resyncs && a.Healthy() == nil })
}

// TestBrokerChatLockOfDeadHolder: a node that dies holding a room's chat
// lock (it stored a batch and never published it) holds up the room's
// chat only until the lock expires; the next holder sees the sequence of
// the last batch that was published.
func TestBrokerChatLockOfDeadHolder(t *testing.T) { forBackends(t, testBrokerChatLockOfDeadHolder) }

func testBrokerChatLockOfDeadHolder(t *testing.T, url string) {
	ttl := func(o *Options) { o.ChatLockTTL = 300 * time.Millisecond }
	a, _ := startBroker(t, url, "na", ttl)
	b, rb := startBroker(t, url, "nb", ttl)
	subscribe(t, b, "r")
	ctx := context.Background()
	la, err := a.LockChat(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	seq, err := la.Publish([]protocol.StoredChatMessage{{ID: "1", Message: "before"}})
	if err != nil {
		t.Fatal(err)
	}
	rb.waitFor(t, "chat r before")
	if _, err := a.LockChat(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	a.stop() // a crash: no goodbye, its keys stay
	start := time.Now()
	wait, cancel := context.WithTimeout(ctx, livesynctest.Timeout)
	defer cancel()
	lb, err := b.LockChat(wait, "r")
	if err != nil {
		t.Fatalf("the dead holder's lock was never released: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took the lock after %v, want about its TTL", took)
	}
	if lb.Seq() != seq {
		t.Errorf("lock after sequence %d, want %d: the last published batch", lb.Seq(), seq)
	}
	if next, err := lb.Publish([]protocol.StoredChatMessage{{ID: "2", Message: "after"}}); err != nil || next <= seq {
		t.Fatalf("publishing after the takeover: sequence %d after %d, %v", next, seq, err)
	}
}

// TestBrokerSubscribeDuringReconnection: a Subscribe made while the
// subscription connection is being replaced returns only once the new
// connection has the channel, so a publication made right after it
// returns is delivered.
func TestBrokerSubscribeDuringReconnection(t *testing.T) {
	forBackends(t, testBrokerSubscribeDuringReconnection)
}

func testBrokerSubscribeDuringReconnection(t *testing.T, url string) {
	a, ra := startBroker(t, url, "na")
	b, _ := startBroker(t, url, "nb")
	subscribe(t, a, "r")
	cutSubscription(t, a, "r")
	subscribe(t, a, "r") // a second interest in the room, as a room's next life has
	b.PublishEvent("r", []byte("after"))
	ra.waitFor(t, "event r after")
}

// TestBrokerCloseLeavesNoGoroutines: two nodes exchange traffic and
// close; every goroutine they started ends.
func TestBrokerCloseLeavesNoGoroutines(t *testing.T) {
	forBackends(t, testBrokerCloseLeavesNoGoroutines)
}

func testBrokerCloseLeavesNoGoroutines(t *testing.T, url string) {
	before := runtime.NumGoroutine()
	a, _ := startBroker(t, url, "na")
	b, rb := startBroker(t, url, "nb")
	subscribe(t, b, "r")
	a.SetMember("r", "na-1", []byte(`{}`))
	a.PublishEvent("r", []byte(`{}`))
	lock, err := a.LockChat(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Publish([]protocol.StoredChatMessage{{ID: "1"}}); err != nil {
		t.Fatal(err)
	}
	rb.waitFor(t, "chat r ")
	for _, x := range []*Broker{a, b} {
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}
	livesynctest.WaitFor(t, "the brokers' goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// cutSubscription closes the pub/sub connection that has room's channel
// (the only one with a single Redis, the room's shard's in a cluster), as
// a network failure would, and waits until b notices.
func cutSubscription(t *testing.T, b *Broker, room string) {
	t.Helper()
	b.subMu.Lock()
	var gone func() bool
	if b.cluster != nil {
		sh := b.placed[b.k.channel(room)]
		sh.ps.Close()
		gone = func() bool { return b.placed[b.k.channel(room)] != sh }
	} else {
		old := b.ps
		old.Close()
		gone = func() bool { return b.ps != old }
	}
	b.subMu.Unlock()
	livesynctest.WaitFor(t, "the lost connection to be noticed", func() bool {
		b.subMu.Lock()
		defer b.subMu.Unlock()
		return gone()
	})
}

var _ broker.Sink = (*recorder)(nil)

// lossRecorder is a recorder that is a broker.LossSink too.
type lossRecorder struct {
	*recorder
}

func (r lossRecorder) NodeLost(members []broker.LostMember, users []broker.LostUser) {
	for _, m := range members {
		r.add(fmt.Sprintf("lost %s %s %s last=%v", m.RoomID, m.ConnID, m.Entry, m.Last))
	}
	for _, u := range users {
		r.add(fmt.Sprintf("offline %s %s", u.UserID, u.Name))
	}
}

// report is a Counter's report, as a channel.
func report(t *testing.T) (func(bool, bool), func() bool) {
	ch := make(chan [2]bool, 1)
	return func(v, ok bool) { ch <- [2]bool{v, ok} }, func() bool {
		t.Helper()
		select {
		case r := <-ch:
			if !r[1] {
				t.Fatal("counter failed")
			}
			return r[0]
		case <-time.After(livesynctest.Timeout):
			t.Fatal("no report")
			return false
		}
	}
}

// TestBrokerCountsAndSweepReports: room and user counts see first and
// last across nodes; a node that dies is swept by one other node, which
// alone reports its members and its users left without connections.
// On a Redis Cluster this runs every counting and sweeping script: a
// script that crossed slots would fail.
func TestBrokerCountsAndSweepReports(t *testing.T) {
	forBackends(t, testBrokerCountsAndSweepReports)
}

func testBrokerCountsAndSweepReports(t *testing.T, url string) {
	a, _ := startBroker(t, url, "na")
	newLoss := func(node string) (*Broker, lossRecorder) {
		rec := lossRecorder{&recorder{}}
		return startBrokerWith(t, url, node, rec), rec
	}
	b, rb := newLoss("nb")
	c, rc := newLoss("nc")

	rep, got := report(t)
	a.JoinMember("r", "na-1", []byte(`{}`), rep)
	if !got() {
		t.Fatal("first join of r not first")
	}
	b.JoinMember("r", "nb-1", []byte(`{}`), rep)
	if got() {
		t.Fatal("second join of r first")
	}
	a.ConnectUser("na-1", "ann", "Ann", rep)
	if !got() {
		t.Fatal("ann's first connection not online")
	}
	b.ConnectUser("nb-1", "ann", "Ann", rep)
	if got() {
		t.Fatal("ann's second connection online")
	}
	a.ConnectUser("na-2", "bob", "Bob", rep)
	got()
	a.JoinMember("s", "na-2", []byte(`{"b":1}`), rep)
	got()
	tokens := make(chan string, 1)
	b.DisconnectUser("nb-1", "ann", func(tok string, ok bool) { tokens <- tok })
	if tok := <-tokens; tok != "" {
		t.Fatal("ann offline while connected on a")
	}
	b.LeaveMember("r", "nb-1", rep)
	if got() {
		t.Fatal("leave of r last while a's member stays")
	}

	// Users whose last connection closed on a: cid waits out the delay
	// there when a dies; eve's offline a confirmed already; fay came
	// back on b within the delay.
	disconnect := func(n *Broker, conn, user string) string {
		n.DisconnectUser(conn, user, func(tok string, ok bool) { tokens <- tok })
		return <-tokens
	}
	a.ConnectUser("na-3", "cid", "Cid", rep)
	got()
	tokCid := disconnect(a, "na-3", "cid")
	a.ConnectUser("na-4", "eve", "Eve", rep)
	got()
	if ok, err := a.ConfirmOffline(context.Background(), "eve", disconnect(a, "na-4", "eve")); err != nil || !ok {
		t.Fatalf("confirming eve offline: %v %v", ok, err)
	}
	a.ConnectUser("na-5", "fay", "Fay", rep)
	got()
	disconnect(a, "na-5", "fay")
	b.ConnectUser("nb-2", "fay", "Fay", rep)
	if got() {
		t.Fatal("fay online again, back within the delay")
	}

	a.stop() // a crash
	want := []string{"lost r na-1 {} last=true", "lost s na-2 {\"b\":1} last=true", "offline ann Ann", "offline bob Bob", "offline cid Cid"}
	livesynctest.WaitFor(t, "the sweep's report", func() bool {
		return len(rb.lines())+len(rc.lines()) >= len(want)
	})
	var all []string
	for _, l := range append(rb.lines(), rc.lines()...) {
		if strings.HasPrefix(l, "lost") || strings.HasPrefix(l, "offline") {
			all = append(all, l)
		}
	}
	slices.Sort(all)
	if !slices.Equal(all, want) {
		t.Fatalf("reported %q, want %q once each", all, want)
	}
	// The pending offlines the sweep left are confirmable once.
	if ok, err := c.ConfirmOffline(context.Background(), "bob", "swept\nna\nna-2"); err != nil || !ok {
		t.Fatalf("confirming bob offline: %v %v", ok, err)
	}
	// cid's keeps the token a gave it.
	if ok, err := c.ConfirmOffline(context.Background(), "cid", tokCid); err != nil || !ok {
		t.Fatalf("confirming cid offline: %v %v", ok, err)
	}
	if st, _ := b.RoomState(context.Background(), "s"); len(st.Members) != 0 {
		t.Fatalf("dead node's member still registered: %+v", st)
	}
}

// TestNewDetectsClusterNode: a single address that is a node of a Redis
// Cluster makes a cluster broker; a cluster URL on a Redis that is not a
// cluster, and a prefix with a brace on a cluster, are refused at once.
func TestNewDetectsClusterNode(t *testing.T) {
	seeds := testsvc.RedisClusterAddrs(t)
	ctx := context.Background()
	b, err := New(ctx, "redis://"+seeds[0]+"/0?prefix=olstest-detect", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.cluster == nil {
		t.Error("a cluster node's address made a single-Redis broker")
	}
	b.Close()
	if _, err := New(ctx, "redis://"+seeds[0]+"?prefix=a{b}", nil); err == nil || !strings.Contains(err.Error(), "{") {
		t.Errorf("prefix with braces on a cluster: %v", err)
	}
	if _, err := New(ctx, "redis://127.0.0.1:1?addr=127.0.0.1:2", &Options{OpTimeout: 500 * time.Millisecond}); err == nil {
		t.Error("a cluster URL whose seeds are all unreachable was accepted")
	}
	single := testsvc.RedisAddr(t)
	if _, err := New(ctx, "redis://"+single+"?addr="+single, nil); err == nil || !strings.Contains(err.Error(), "not a cluster") {
		t.Errorf("cluster URL on a single Redis: %v", err)
	}
}

// TestCallerDeadlineIsNoOutage: a call whose caller's context has ended
// (a LockChat tried with a deadline that passed) fails, but says nothing
// about Redis: the broker stays healthy and the next call works.
func TestCallerDeadlineIsNoOutage(t *testing.T) { forBackends(t, testCallerDeadlineIsNoOutage) }

func testCallerDeadlineIsNoOutage(t *testing.T, url string) {
	b, _ := startBroker(t, url, "n", func(o *Options) { o.Heartbeat = time.Hour; o.NodeTTL = 2 * time.Hour })
	ended, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := b.LockChat(ended, "r"); err == nil {
		t.Fatal("LockChat with an ended context succeeded")
	}
	if _, err := b.RoomState(ended, "r"); err == nil {
		t.Fatal("RoomState with an ended context succeeded")
	}
	if err := b.Healthy(); err != nil {
		t.Fatalf("Healthy after a caller gave up: %v", err)
	}
	l, err := b.LockChat(context.Background(), "r")
	if err != nil {
		t.Fatalf("LockChat after a caller gave up: %v", err)
	}
	l.Release()
}

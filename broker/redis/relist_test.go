package redis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
)

// TestBrokerRelistedNodeIsNotSwept: when Redis has lost a node's heartbeat
// and registry (a restart without persistence), the node lists itself
// again with its next member or resynchronisation, which may come before
// its next heartbeat. Another node sweeping in between must not take it
// for dead and report its members gone; and the heartbeat that follows
// still finds its own key expired and has the node re-register.
func TestBrokerRelistedNodeIsNotSwept(t *testing.T) { forBackends(t, testBrokerRelistedNodeIsNotSwept) }

func testBrokerRelistedNodeIsNotSwept(t *testing.T, url string) {
	// No beats or sweeps but those the test makes.
	quiet := func(o *Options) { o.Heartbeat, o.NodeTTL = time.Hour, 2*time.Hour }
	ra := &recorder{}
	a := startBrokerWith(t, url, "na", ra, quiet)
	rb := lossRecorder{&recorder{}}
	b := startBrokerWith(t, url, "nb", rb, quiet)
	subscribe(t, b, "r")
	a.SetMember("r", "na-1", []byte(`{}`))
	rb.waitFor(t, "set r na-1 {}")

	ctx := context.Background()
	for _, key := range []string{a.k.alive("na"), a.k.nodes()} {
		if err := a.rdb.Del(ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a.SetMember("r", "na-2", []byte(`{}`))
	rb.waitFor(t, "set r na-2 {}")
	a.triggerResync()
	livesynctest.WaitFor(t, "a to be listed again", func() bool {
		listed, err := a.rdb.SIsMember(ctx, a.k.nodes(), "na").Result()
		return err == nil && listed
	})
	b.sweep()
	for _, l := range rb.lines() {
		if strings.HasPrefix(l, "lost") || strings.HasPrefix(l, "offline") {
			t.Fatalf("a live node was swept: %q", rb.lines())
		}
	}

	resyncs := ra.resyncCount()
	a.heartbeat()
	livesynctest.WaitFor(t, "the heartbeat to find its key expired and resynchronise", func() bool {
		return ra.resyncCount() > resyncs
	})
}

// reannounceRecorder is a lossRecorder that records Reannounce too.
type reannounceRecorder struct{ lossRecorder }

func (r reannounceRecorder) Reannounce(rooms, users []string) {
	slices.Sort(rooms)
	slices.Sort(users)
	r.add(fmt.Sprintf("reannounce rooms=%v users=%v", rooms, users))
}

// TestBrokerSweptNodeReannounces: a node taken for dead while it lives
// (its heartbeat gone, another node swept it and reported its members
// and users gone) finds out at its next heartbeat, registers them again
// and has its sink announce them again: the rooms it alone is in as
// occupied again, and the users whose offline was confirmed as online
// again, not those still connected elsewhere. A heartbeat that merely
// expired (nobody swept) announces nothing.
func TestBrokerSweptNodeReannounces(t *testing.T) { forBackends(t, testBrokerSweptNodeReannounces) }

func testBrokerSweptNodeReannounces(t *testing.T, url string) {
	quiet := func(o *Options) { o.Heartbeat, o.NodeTTL = time.Hour, 2*time.Hour }
	ra := reannounceRecorder{lossRecorder{&recorder{}}}
	a := startBrokerWith(t, url, "na", ra, quiet)
	rb := lossRecorder{&recorder{}}
	b := startBrokerWith(t, url, "nb", rb, quiet)
	rep, got := report(t)
	for _, j := range []struct {
		node             *Broker
		room, conn, user string
	}{
		{a, "r", "na-1", "amy"}, {a, "shared", "na-2", "cid"}, {b, "shared", "nb-1", "cid"},
	} {
		j.node.JoinMember(j.room, j.conn, []byte(`{}`), rep)
		got()
		j.node.ConnectUser(j.conn, j.user, j.user, rep)
		got()
	}

	ctx := context.Background()
	if err := a.rdb.Del(ctx, a.k.alive("na")).Err(); err != nil {
		t.Fatal(err)
	}
	b.sweep()
	rb.waitFor(t, "lost r na-1 {} last=true", "offline amy amy")
	if ok, err := b.ConfirmOffline(ctx, "amy", "swept\nna\nna-1"); err != nil || !ok {
		t.Fatalf("confirming amy offline: %v %v", ok, err)
	}

	a.heartbeat()
	ra.waitFor(t, "reannounce rooms=[r] users=[amy]")
	if st, err := b.RoomState(ctx, "r"); err != nil || len(st.Members) != 1 {
		t.Fatalf("r after the re-registration: %+v, %v", st, err)
	}

	// Expired without a sweep: re-registered, not announced.
	resyncs := ra.resyncCount()
	if err := a.rdb.Del(ctx, a.k.alive("na")).Err(); err != nil {
		t.Fatal(err)
	}
	a.heartbeat()
	livesynctest.WaitFor(t, "the re-registration", func() bool { return ra.resyncCount() > resyncs })
	done := make(chan struct{})
	a.enqueue(op{kind: opBarrier, done: done}, true) // behind the re-registration
	<-done
	n := 0
	for _, l := range ra.lines() {
		if strings.HasPrefix(l, "reannounce") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d reannouncements, want 1: %q", n, ra.lines())
	}
}

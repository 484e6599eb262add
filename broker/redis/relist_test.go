package redis

import (
	"context"
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

package redis

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// TestBrokerFlushDelay: with steady traffic the sender holds events for
// FlushDelay (here an hour: until something ends the hold), a lone event
// after a pause goes at once, and an operation someone waits for (chat,
// the barrier of Close) ends the hold, with everything held sent before
// it, in order.
func TestBrokerFlushDelay(t *testing.T) { forBackends(t, testBrokerFlushDelay) }

func testBrokerFlushDelay(t *testing.T, url string) {
	a, _ := startBroker(t, url, "na", func(o *Options) { o.FlushDelay = time.Hour })
	b, rb := startBroker(t, url, "nb")
	subscribe(t, a, "r")
	subscribe(t, b, "r")

	a.PublishEvent("r", []byte("lone"))
	rb.waitFor(t, "event r lone")

	// The sender is back waiting within microseconds of that pipeline's
	// reply; the next event, queued well after, finds steady traffic.
	time.Sleep(100 * time.Millisecond)
	a.PublishEvent("r", []byte("held"))
	time.Sleep(100 * time.Millisecond)
	a.qmu.Lock()
	queued := len(a.queue)
	a.qmu.Unlock()
	if queued != 1 || slices.Contains(rb.lines(), "event r held") {
		t.Fatalf("the second event was not held: %d queued, b has %q", queued, rb.lines())
	}

	lock, err := a.LockChat(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Publish([]protocol.StoredChatMessage{{ID: "1", RoomID: "r", Message: "hi"}}); err != nil {
		t.Fatal(err)
	}
	rb.waitFor(t, "chat r hi")
	if got, want := rb.lines(), []string{"event r lone", "event r held", "chat r hi"}; !slices.Equal(got, want) {
		t.Fatalf("b received %q, want %q", got, want)
	}

	a.PublishEvent("r", []byte("at close"))
	a.Close()
	rb.waitFor(t, "event r at close")
}

// TestFlushDelayFromURL: the URL's flush_delay sets FlushDelay, 0 turns
// holding off, and a value that is not a duration is refused before any
// connection is tried.
func TestFlushDelayFromURL(t *testing.T) {
	for _, bad := range []string{"soon", "-1ms", "1"} {
		_, err := New(context.Background(), "redis://127.0.0.1:1/0?flush_delay="+bad, nil)
		if err == nil || !strings.Contains(err.Error(), "flush_delay") {
			t.Errorf("flush_delay=%s: %v, want a flush_delay error", bad, err)
		}
	}
	addr, prefix := testsvc.RedisPrefix(t)
	for q, want := range map[string]time.Duration{"": time.Millisecond, "&flush_delay=0": -1, "&flush_delay=250us": 250 * time.Microsecond} {
		b, err := New(context.Background(), "redis://"+addr+"/0?prefix="+prefix+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b.opts.FlushDelay != want {
			t.Errorf("%q: FlushDelay %v, want %v", q, b.opts.FlushDelay, want)
		}
		b.Close()
	}
}

package redis

import (
	"bytes"
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// replyCutter loses the reply of the first command written with a marker
// in it: the command reaches Redis and runs, its reply arrives, and the
// client sees the connection end instead (a connection cut at the worst
// moment). A client that sends the command again then runs it twice.
type replyCutter struct {
	mu     sync.Mutex
	marker []byte
	cuts   atomic.Int32
}

func (c *replyCutter) arm(marker string) {
	c.mu.Lock()
	c.marker = []byte(marker)
	c.mu.Unlock()
}

func (c *replyCutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: conn, c: c}, nil
}

type cutConn struct {
	net.Conn
	c      *replyCutter
	doomed atomic.Bool
}

func (cc *cutConn) Write(p []byte) (int, error) {
	cc.c.mu.Lock()
	if cc.c.marker != nil && bytes.Contains(p, cc.c.marker) {
		cc.c.marker = nil
		cc.doomed.Store(true)
	}
	cc.c.mu.Unlock()
	return cc.Conn.Write(p)
}

func (cc *cutConn) Read(p []byte) (int, error) {
	if !cc.doomed.Load() {
		return cc.Conn.Read(p)
	}
	// Wait for the reply, which says the command ran, and lose it.
	cc.Conn.Read(p)
	cc.Conn.Close()
	cc.c.cuts.Add(1)
	return 0, io.EOF
}

// startCutBroker is startBroker on the Redis Cluster at url, its
// commands going through a replyCutter.
func startCutBroker(t *testing.T, url, node string, tune ...func(*Options)) (*Broker, *recorder, *replyCutter) {
	t.Helper()
	o := &Options{Heartbeat: 50 * time.Millisecond, NodeTTL: 300 * time.Millisecond, OpTimeout: time.Second}
	for _, f := range tune {
		f(o)
	}
	b, err := New(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	cut := &replyCutter{}
	co := *b.cluster.Options()
	co.Dialer = cut.dial
	b.cluster.Close()
	b.cluster = goredis.NewClusterClient(&co)
	b.rdb = b.cluster
	rec := &recorder{}
	if err := b.Start(node, rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, rec, cut
}

// count is how many lines of r are line.
func (r *recorder) count(line string) int {
	n := 0
	for _, l := range r.lines() {
		if l == line {
			n++
		}
	}
	return n
}

// TestClusterLostReplyIsNoDuplicate: in cluster mode, go-redis sends a
// command (or a node's whole pipeline) again when its reply is lost; an
// event, a join and a chat batch whose reply is lost after they ran are
// still delivered once, and the join is never reported as not the
// room's first.
func TestClusterLostReplyIsNoDuplicate(t *testing.T) {
	url, _ := testsvc.RedisClusterURL(t)
	a, _, cut := startCutBroker(t, url, "na")
	b, rb := startBroker(t, url, "nb")
	subscribe(t, a, "r")
	subscribe(t, b, "r")

	// Event: the SPUBLISH's reply is lost.
	cut.arm("cut-event")
	a.PublishEvent("r", []byte(`{"cut-event":1}`))
	livesynctest.WaitFor(t, "the event's reply to be cut", func() bool { return cut.cuts.Load() == 1 })
	a.PublishEvent("r", []byte(`{"after":1}`))
	rb.waitFor(t, `event r {"after":1}`)
	if n := rb.count(`event r {"cut-event":1}`); n != 1 {
		t.Fatalf("the event was delivered %d times, want once: %q", n, rb.lines())
	}

	// Join: the registration script's reply is lost.
	cut.arm("cut-join")
	first := make(chan [2]bool, 1)
	a.JoinMember("r", "na-1", []byte(`{"cut-join":1}`), func(v, ok bool) { first <- [2]bool{v, ok} })
	select {
	case r := <-first:
		if r == [2]bool{false, true} {
			t.Fatal("the room's first member reported as not the first")
		}
	case <-time.After(livesynctest.Timeout):
		t.Fatal("no report")
	}
	a.PublishEvent("r", []byte(`{"after":2}`))
	rb.waitFor(t, `event r {"after":2}`)
	if n := rb.count(`set r na-1 {"cut-join":1}`); n != 1 {
		t.Fatalf("the join was announced %d times, want once: %q", n, rb.lines())
	}

	// Chat: the script's reply is lost. A first batch loads the script
	// on the shard, so that the cut one is not answered NOSCRIPT.
	ctx := context.Background()
	publish := func(text string) {
		t.Helper()
		lock, err := a.LockChat(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lock.Publish([]protocol.StoredChatMessage{{ID: text, Message: text}}); err != nil {
			t.Fatal(err)
		}
	}
	publish("warm-up")
	cut.arm("cut-chat")
	publish("cut-chat")
	publish("after-chat")
	rb.waitFor(t, "chat r after-chat")
	if cut.cuts.Load() != 3 {
		t.Fatalf("%d replies cut, want 3", cut.cuts.Load())
	}
	chats := slices.DeleteFunc(rb.lines(), func(l string) bool { return l[:4] != "chat" })
	if want := []string{"chat r warm-up", "chat r cut-chat", "chat r after-chat"}; !slices.Equal(chats, want) {
		t.Fatalf("chat delivered %q, want %q", chats, want)
	}
}

// TestClusterLostClaimReplyStillSweeps: the reply to a node's claim on a
// dead node is lost and go-redis sends the claim again; the claim it made
// is its own, so it sweeps the dead node at once, not once the claim
// expires (minutes here: five times OpTimeout).
func TestClusterLostClaimReplyStillSweeps(t *testing.T) {
	url, _ := testsvc.RedisClusterURL(t)
	a, ra, cut := startCutBroker(t, url, "na", func(o *Options) {
		o.Heartbeat, o.NodeTTL, o.OpTimeout = time.Second, 5*time.Second, time.Minute
	})
	b, _ := startBroker(t, url, "nb", func(o *Options) { o.NodeTTL = 5 * time.Second })
	subscribe(t, a, "r")
	b.SetMember("r", "nb-1", []byte(`{}`))
	ra.waitFor(t, "set r nb-1 {}")
	// Loaded on every shard, the claim runs at its first sending, whose
	// reply is the one lost (not a NOSCRIPT, which ran nothing).
	ctx := context.Background()
	if err := cClaimScript.Load(ctx, a.cluster).Err(); err != nil {
		t.Fatal(err)
	}
	b.stop() // a crash: its keys stay
	// Its heartbeat ended at once, so that a's next claim (a sweeps once a
	// second) is the one that succeeds, and the one whose reply is cut.
	cut.arm(a.k.nodeKey("nb", "claim"))
	if err := a.rdb.Del(ctx, a.k.alive("nb")).Err(); err != nil {
		t.Fatal(err)
	}
	ra.waitFor(t, "left r nb-1")
	if cut.cuts.Load() != 1 {
		t.Fatalf("%d claim replies cut, want 1", cut.cuts.Load())
	}
}

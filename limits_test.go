package livesync

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// Tests of the limits a connection lives under: frame size, rates, the
// connections one address may hold, a full send queue, a dead peer, and
// what an idle connection costs.

func TestFrameTooLargeCloses1009(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{MaxMessageBytes: 1024}})
	c := livesynctest.Dial(t, url)
	c.SendRaw(`{"type":"join_room","payload":{"roomId":"` + strings.Repeat("a", 2000) + `"}}`)
	if code := c.WaitClosed(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close %d, want 1009", code)
	}
}

func TestRateLimits(t *testing.T) {
	s, url := startServer(t, &Options{Limits: Limits{EventRate: 1, EventBurst: 3, ChatRate: 1, ChatBurst: 2, MaxViolations: 5}})
	c := livesynctest.Dial(t, url)
	c.Join("r", nil)
	for range 3 {
		c.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "e"})
	}
	c.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "e"})
	c.ExpectError(protocol.CodeRateLimited)
	c.Send(protocol.MsgSendChat, map[string]any{"message": "1"})
	c.Send(protocol.MsgSendChat, map[string]any{"message": "2"})
	c.Send(protocol.MsgSendChat, map[string]any{"message": "3"})
	// The refusal may overtake the stored messages: count, don't order.
	kinds := map[string]int{}
	for range 3 {
		kinds[c.Next().Type]++
	}
	if kinds[protocol.MsgChatMessage] != 2 || kinds[protocol.MsgError] != 1 {
		t.Fatalf("got %v, want 2 chat messages and 1 error", kinds)
	}
	// Sustained abuse closes the connection with 1008.
	for range 5 {
		c.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "e"})
	}
	if code := c.WaitClosed(); code != websocket.ClosePolicyViolation {
		t.Fatalf("close %d, want 1008", code)
	}
	waitMetric(t, s, 1, "livesync_rate_limit_disconnects_total")
	// Each refusal was an error sent (a token may come back meanwhile:
	// at least the five in a row).
	if got := mustMetric(t, s, "livesync_errors_sent_total", "code", protocol.CodeRateLimited); got < 5 {
		t.Fatalf("RATE_LIMITED errors sent %v, want at least 5", got)
	}
}

// TestFloodIsLimitedAndOthersServed: a client writing events as fast as
// it can, under the default limits, is closed with 1008, and a room-mate
// gets at most the burst of its spam before a well-behaved member's event.
func TestFloodIsLimitedAndOthersServed(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := livesynctest.Pair(t, url, "calm")
	flooder := livesynctest.Dial(t, url)
	flooder.Join("calm", nil)
	// The flooder writes as fast as it can; its own reader drains errors.
	for i := range 2000 {
		if err := flooder.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"broadcast_event","payload":{"event":"spam","payload":{"i":`+fmt.Sprint(i)+`}}}`)); err != nil {
			break // closed by the server: expected
		}
	}
	if code := flooder.WaitClosed(); code != 1008 {
		t.Fatalf("flooder closed with %d, want 1008", code)
	}
	// b got at most the burst of spam, then the calm event.
	a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "calm"})
	if spam := eventsBefore(b, "calm"); spam > 250 {
		t.Fatalf("%d spam events relayed; the burst is 200", spam)
	}
}

// TestConnectionsPerIP: connections from one address beyond the cap,
// configured or the default of 1,000, are refused with HTTP 429 while
// those under it are still served; a slot frees when a connection goes.
func TestConnectionsPerIP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured int // Limits.ConnectionsPerIP
		limit      int // in force
	}{{"configured", 2, 2}, {"default", 0, 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.limit > 100 && testing.Short() {
				t.Skip("opens 1,000 connections")
			}
			s, url := startServer(t, &Options{Limits: Limits{ConnectionsPerIP: tc.configured}})
			held := make([]*livesynctest.RawConn, 0, tc.limit)
			for range tc.limit - 2 {
				held = append(held, livesynctest.RawDial(t, url))
			}
			a, b := livesynctest.Pair(t, url, "calm") // the last two under the cap
			wantTooMany(t, url, nil, "one connection beyond the cap")
			stillServed(t, a, b, "at the cap")
			b.Close()
			freed := held[:min(len(held), 100)]
			for _, rc := range freed {
				rc.Close()
			}
			livesynctest.WaitFor(t, "closed connections to be released", func() bool {
				return s.Stats().Connections == int64(tc.limit-1-len(freed))
			})
			waitForSlot(t, url, nil, "a slot to free").Join("calm", nil)
		})
	}
}

// wantTooMany checks that a connection from the address (the one
// forwarded in h, when not nil) is refused with HTTP 429.
func wantTooMany(t *testing.T, url string, h http.Header, what string) {
	t.Helper()
	if _, err := livesynctest.TryDial(t, url, h); livesynctest.StatusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("%s: %v, want HTTP 429", what, err)
	}
}

// waitForSlot waits until a connection from the address (the one
// forwarded in h, when not nil) is accepted again, and returns it.
func waitForSlot(t *testing.T, url string, h http.Header, what string) *livesynctest.Client {
	t.Helper()
	var c *livesynctest.Client
	livesynctest.WaitFor(t, what, func() bool {
		var err error
		c, err = livesynctest.TryDial(t, url, h)
		return err == nil
	})
	return c
}

// TestRefusedConnectionHoldsItsSlot: a connection refused after the
// upgrade (here by OnAuth) counts against its address until it has ended,
// as an accepted one does; a client that never answers the close holds
// the slot for the grace period, not for nothing.
func TestRefusedConnectionHoldsItsSlot(t *testing.T) {
	_, url := startServer(t, &Options{
		Limits: Limits{ConnectionsPerIP: 1},
		OnAuth: func(*http.Request) (*UserInfo, error) { return nil, nil }, // refuses everyone
	})
	silent := livesynctest.RawDial(t, url) // upgraded, then sent 4401; it never reads
	wantTooMany(t, url, nil, "second connection while the refused one lingers")
	silent.Close()
	waitForSlot(t, url, nil, "the refused connection's slot to free")
}

// TestSlowConsumerDoesNotStallRoom: a client that never reads is closed
// with 1008 once its queue is full, its backlog dropped (the stream stays
// whole: what it reads later ends in the close frame), and the others keep
// receiving and see it leave.
func TestSlowConsumerDoesNotStallRoom(t *testing.T) {
	s, url := startServer(t, &Options{Limits: Limits{SendQueueBytes: 64 << 10, EventRate: 1e6, EventBurst: 1e6}})
	stuck, reader, left := overflowStuckMember(t, s, url)
	if code := stuck.ReadClose(t); code != protocol.ClosePolicy {
		t.Fatalf("the slow consumer was closed with %d, want %d", code, protocol.ClosePolicy)
	}
	reader.Until("the slow consumer to leave", func() bool { return left }, func(env protocol.Envelope) {
		if env.Type == protocol.MsgPresenceUpdated {
			left = len(livesynctest.DecodePresence(t, env).Left) == 1
		}
	})
	if n := s.Stats().SlowConsumerDisconnects; n != 1 {
		t.Fatalf("slow consumers %d", n)
	}
}

// TestSlowConsumerThatNeverReadsIsGone: a client that lets its queue
// overflow and reads nothing, not even its close frame, is not kept for
// the write timeout (an hour here): its writes are cut short, and it is
// gone within the close handshake's grace.
func TestSlowConsumerThatNeverReadsIsGone(t *testing.T) {
	s, url := startServer(t, &Options{Limits: Limits{SendQueueBytes: 64 << 10, EventRate: 1e6, EventBurst: 1e6, WriteTimeout: time.Hour}})
	overflowStuckMember(t, s, url)
	livesynctest.WaitFor(t, "the stuck client's connection to end", func() bool { return s.Stats().Connections == 2 })
}

// overflowStuckMember has a client join room r of s and never read, and
// another send events to r until the stuck one's send queue overflows; a
// third member reads them. It returns the stuck client, the reader, and
// whether the reader saw someone leave meanwhile.
func overflowStuckMember(t *testing.T, s *Server, url string) (stuck *livesynctest.RawConn, reader *livesynctest.Client, left bool) {
	t.Helper()
	sender, reader := livesynctest.Pair(t, url, "r")
	stuck = livesynctest.RawDial(t, url)
	stuck.WriteText(t, `{"type":"join_room","payload":{"roomId":"r"}}`)
	sender.Expect(protocol.MsgPresenceUpdated, nil)
	reader.Expect(protocol.MsgPresenceUpdated, nil)
	payload := strings.Repeat("p", 4000)
	for i := 0; s.Stats().SlowConsumerDisconnects == 0; i++ {
		if i > 20000 {
			t.Fatal("the stuck client's send queue never overflowed")
		}
		sender.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "e", "payload": map[string]string{"p": payload}})
		reader.PresenceBefore(func(pu protocol.PresenceUpdatedPayload) { left = left || len(pu.Left) == 1 })
	}
	return stuck, reader, left
}

func TestDeadPeerIsDropped(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond}})
	watcher := livesynctest.Dial(t, url)
	watcher.Join("r", nil)
	dead := livesynctest.RawDial(t, url)
	dead.WriteText(t, `{"type":"join_room","payload":{"roomId":"r"}}`)
	var pu protocol.PresenceUpdatedPayload
	watcher.Expect(protocol.MsgPresenceUpdated, &pu)
	deadID := pu.Joined[0].ConnectionID
	// The watcher's client answers pings, so only the dead peer goes.
	watcher.Expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Left) != 1 || pu.Left[0] != deadID {
		t.Fatalf("got %+v, want %s to leave", pu, deadID)
	}
}

// TestUnfinishedMessageIsNoHeartbeat: a peer that starts a message and
// then sends only pongs is dropped like a silent one; otherwise it could
// hold a buffer of up to the message limit for as long as it liked.
func TestUnfinishedMessageIsNoHeartbeat(t *testing.T) {
	_, url := startServer(t, &Options{Limits: Limits{PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond}})
	rc := livesynctest.RawDial(t, url)
	rc.WriteFrame(t, 0x01, `{"type":"join_room","payload":`) // no FIN: the message goes on
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := rc.Write([]byte{0x8A, 0x80, 0, 0, 0, 0}); err != nil { // an empty masked pong
					return
				}
			}
		}
	}()
	if !livesynctest.ReadsUntilClosed(rc, livesynctest.Timeout) {
		t.Fatal("a peer holding an unfinished message open with pongs was never dropped")
	}
}

// TestSlowSteadyMessageKeepsThePeer: a peer that sends one large message,
// in many frames (as Chromium does) or in one (as Firefox does), taking
// several PongTimeouts, but steadily and well above minMessageRate (a
// browser on a slow uplink sending a large paste), is kept alive by the
// message's progress and gets it delivered.
func TestSlowSteadyMessageKeepsThePeer(t *testing.T) {
	const join = `{"type":"join_room","payload":{"roomId":"r"}`
	for _, mode := range []struct {
		name string
		send func(rc *livesynctest.RawConn) error // about 60 KB at about 60 KB/s
	}{
		{"frames", func(rc *livesynctest.RawConn) error {
			// With a pong now and then, as a browser answers pings
			// between the frames.
			for i := range 102 {
				first, s := byte(0x00), strings.Repeat(" ", 600) // a continuation
				switch i {
				case 0:
					first, s = 0x01, join // a text message that goes on
				case 101:
					first, s = 0x80, "}" // its end
				}
				if err := rc.TryWriteFrame(first, s); err != nil {
					return fmt.Errorf("frame %d: %w", i, err)
				}
				if i%5 == 0 {
					if err := rc.TryWriteFrame(0x8A, ""); err != nil {
						return fmt.Errorf("pong after frame %d: %w", i, err)
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			return nil
		}},
		{"one frame", func(rc *livesynctest.RawConn) error {
			f, err := livesynctest.MaskedFrame(0x81, join+strings.Repeat(" ", 60_000)+"}")
			if err != nil {
				return err
			}
			for i := 0; i < len(f); i += 600 {
				if _, err := rc.Write(f[i:min(i+600, len(f))]); err != nil {
					return fmt.Errorf("at byte %d: %w", i, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			return nil
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			// More than 2 PongTimeouts, in each of which messageAliveBytes
			// asks for 4,915 bytes.
			_, url := startServer(t, &Options{Limits: Limits{PingInterval: 50 * time.Millisecond, PongTimeout: 400 * time.Millisecond}})
			watcher := livesynctest.Dial(t, url)
			watcher.Join("r", nil)
			if err := mode.send(livesynctest.RawDial(t, url)); err != nil {
				t.Fatalf("%v: the server dropped the peer while it was sending", err)
			}
			var pu protocol.PresenceUpdatedPayload
			watcher.Expect(protocol.MsgPresenceUpdated, &pu)
			if len(pu.Joined) != 1 {
				t.Fatalf("got %+v, want the slow peer to join", pu)
			}
		})
	}
}

// TestMessageStartedAtAPingKeepsThePeer: a peer quiet until the server
// pings it, that then starts a large message in one frame (as Firefox
// does: its pong waits behind the frame) and sends it at 1.5 ×
// minMessageRate, is kept and gets it delivered. The message shows it
// alive as it begins, not first once it has grown by messageAliveBytes,
// when the peer has been quiet for over a PongTimeout.
func TestMessageStartedAtAPingKeepsThePeer(t *testing.T) {
	const join = `{"type":"join_room","payload":{"roomId":"r"}`
	const rate, step = minMessageRate * 3 / 2, 50 * time.Millisecond
	// The default ratio of PingInterval to PongTimeout is 25 s to 60 s; a
	// higher one leaves the sender a wider margin than the defect's.
	_, url := startServer(t, &Options{Limits: Limits{PingInterval: 750 * time.Millisecond, PongTimeout: time.Second}})
	watcher := livesynctest.Dial(t, url)
	watcher.Join("r", nil)
	rc := livesynctest.RawDial(t, url)
	rc.SetReadDeadline(time.Now().Add(livesynctest.Timeout))
	head := make([]byte, 2)
	if _, err := io.ReadFull(rc, head); err != nil || head[0] != 0x89 {
		t.Fatalf("waiting for the server's ping: got % x, %v", head, err)
	}
	rc.SetReadDeadline(time.Time{})
	closed := make(chan bool, 1)
	go func() { closed <- livesynctest.ReadsUntilClosed(rc, livesynctest.Timeout) }()
	// Three messageAliveBytes of 12,288 bytes.
	f, err := livesynctest.MaskedFrame(0x81, join+strings.Repeat(" ", 36_000)+"}")
	if err != nil {
		t.Fatal(err)
	}
	chunk := int(rate * step / time.Second)
	for i := 0; i < len(f); i += chunk {
		select {
		case <-closed:
			t.Fatalf("the server dropped the peer at byte %d of its %d-byte message", i, len(f))
		default:
		}
		if _, err := rc.Write(f[i:min(i+chunk, len(f))]); err != nil {
			t.Fatalf("the server dropped the peer at byte %d of its %d-byte message: %v", i, len(f), err)
		}
		time.Sleep(step)
	}
	var pu protocol.PresenceUpdatedPayload
	watcher.Expect(protocol.MsgPresenceUpdated, &pu)
	if len(pu.Joined) != 1 {
		t.Fatalf("got %+v, want the peer to join", pu)
	}
}

// TestTrickledMessageIsNoHeartbeat: a peer that goes on with an
// unfinished message, but far below minMessageRate, is dropped like a
// silent one: with pongs between its frames, or in one frame.
func TestTrickledMessageIsNoHeartbeat(t *testing.T) {
	big, err := livesynctest.MaskedFrame(0x81, strings.Repeat(" ", 60_000))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []struct {
		name  string
		start func(*livesynctest.RawConn)
		more  func(rc *livesynctest.RawConn, i int)
	}{
		{"frames", func(rc *livesynctest.RawConn) {
			rc.WriteFrame(t, 0x01, `{"type":"join_room","payload":`) // no FIN: the message goes on
		}, func(rc *livesynctest.RawConn, _ int) {
			_ = rc.TryWriteFrame(0x00, strings.Repeat(" ", 16))
			_ = rc.TryWriteFrame(0x8A, "")
		}},
		{"one frame", func(*livesynctest.RawConn) {}, func(rc *livesynctest.RawConn, i int) {
			if i+16 < len(big) {
				_, _ = rc.Write(big[i : i+16])
			}
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			_, url := startServer(t, &Options{Limits: Limits{PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond}})
			rc := livesynctest.RawDial(t, url)
			mode.start(rc)
			closed := make(chan bool, 1)
			go func() { closed <- livesynctest.ReadsUntilClosed(rc, livesynctest.Timeout) }()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i += 16 {
				select {
				case ok := <-closed:
					if !ok {
						t.Fatal("a peer trickling a message, 16 bytes every 20 ms, was never dropped")
					}
					return
				case <-tick.C:
					// Once the peer is dropped, writes fail: it waits for the close.
					mode.more(rc, i)
				}
			}
		})
	}
}

// TestIdleConnectionsHoldNoGoroutine: on Linux a connection that joined and
// went quiet is watched by the poller, not by a goroutine of its own.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux's")
	}
	_, url := startServer(t, nil)
	before := runtime.NumGoroutine()
	const n = 100
	for i := range n {
		rc := livesynctest.RawDial(t, url)
		rc.WriteText(t, fmt.Sprintf(`{"type":"join_room","payload":{"roomId":"idle-%d"}}`, i%10))
		// Wait for room_joined: the join has been handled.
		rc.SetReadDeadline(time.Now().Add(livesynctest.Timeout))
		if _, err := rc.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	livesynctest.WaitFor(t, "the readers of idle connections to end", func() bool {
		return runtime.NumGoroutine()-before < n/4
	})
}

package livesync

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// stillServed checks that two well-behaved clients in a room still see
// each other's events.
func stillServed(t *testing.T, a, b *client, tag string) {
	t.Helper()
	a.send(protocol.MsgBroadcastEvent, map[string]any{"event": tag})
	for {
		var ev protocol.BroadcastEventRelayPayload
		env := b.next()
		if env.Type != protocol.MsgBroadcastEventRelay {
			continue // presence traffic from the attackers
		}
		json.Unmarshal(env.Payload, &ev)
		if ev.Event == tag {
			return
		}
	}
}

func wellBehavedPair(t *testing.T, url string) (*client, *client) {
	a, b := dial(t, url), dial(t, url)
	a.join("calm", nil)
	b.join("calm", nil)
	a.expect(protocol.MsgPresenceUpdated, nil)
	return a, b
}

// readsUntilClosed reports whether the server closes nc within waitTimeout.
func readsUntilClosed(nc net.Conn) bool {
	nc.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, nc)
	ne, isNet := err.(net.Error)
	return err == nil || !(isNet && ne.Timeout())
}

func TestMalformedFramesHarmOnlyTheirConnection(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := wellBehavedPair(t, url)
	frames := map[string][]byte{
		"unmasked":           {0x81, 0x02, '{', '}'},
		"reserved bits":      {0xF1, 0x80, 0, 0, 0, 0},
		"unknown opcode":     {0x83, 0x80, 0, 0, 0, 0},
		"fragmented control": {0x09, 0x80, 0, 0, 0, 0},
		"oversized ping":     append([]byte{0x89, 0x80 | 126, 0, 200, 0, 0, 0, 0}, make([]byte, 200)...),
		"continuation first": {0x80, 0x80, 0, 0, 0, 0},
		"length lies":        {0x81, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0},
	}
	for name, f := range frames {
		rc := rawDial(t, url)
		if _, err := rc.Write(f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !readsUntilClosed(rc) {
			t.Fatalf("%s: connection not closed", name)
		}
		stillServed(t, a, b, name)
	}
	// Garbage instead of a handshake.
	addr := strings.TrimPrefix(url, "ws://")
	nc, err := net.Dial("tcp", addr[:strings.Index(addr, "/")])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("\x16\x03\x01garbage\r\n\r\n"))
	if !readsUntilClosed(nc) {
		t.Fatal("garbage handshake not closed")
	}
	stillServed(t, a, b, "after garbage")
}

func TestSlowlorisAndHalfOpenHandshakes(t *testing.T) {
	_, url := startServer(t, nil)
	// httptest's server has no header timeout; the library's own Serve
	// does. Exercise Serve with a short handshake limit.
	s, err := New(&Options{Logger: discardLogger(), Limits: Limits{HandshakeTimeout: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { ctxShutdown(t, s) })
	a, b := wellBehavedPair(t, url)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			if i%2 == 0 {
				// Slowloris: a header line every so often, never finishing.
				fmt.Fprintf(nc, "GET /live HTTP/1.1\r\nHost: x\r\n")
				go func() {
					for range 20 {
						if _, err := fmt.Fprintf(nc, "X-Slow: 1\r\n"); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}()
			}
			// Half-open: say nothing at all (odd i).
			if !readsUntilClosed(nc) {
				t.Error("stalled handshake was not cut off")
			}
		}()
	}
	// Well-behaved clients of the same server connect and are served
	// meanwhile.
	good := dial(t, "ws://"+ln.Addr().String()+"/live")
	good.join("g", nil)
	wg.Wait()
	stillServed(t, a, b, "after slowloris")
}

func TestThousandConnectionsFromOneAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	s, url := startServer(t, nil)
	const n = 1000
	conns := make([]*rawConn, 0, n)
	for range n - 2 {
		rc := rawDial(t, url)
		conns = append(conns, rc)
	}
	a, b := wellBehavedPair(t, url) // connections 999 and 1000
	if _, err := dialErr(t, url, nil); err == nil {
		t.Fatal("connection 1,001 from one address was accepted")
	}
	stillServed(t, a, b, "at the cap")
	for _, rc := range conns[:100] {
		rc.Close()
	}
	waitFor(t, "closed connections to be released", func() bool { return s.Stats().Connections == n-100 })
	c := dial(t, url)
	c.join("calm", nil)
}

func TestFloodIsLimitedAndOthersServed(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := wellBehavedPair(t, url)
	flooder := dial(t, url)
	flooder.join("calm", nil)
	// The flooder writes as fast as it can; its own reader drains errors.
	for i := range 2000 {
		if err := flooder.ws.WriteMessage(1, []byte(`{"type":"broadcast_event","payload":{"event":"spam","payload":{"i":`+fmt.Sprint(i)+`}}}`)); err != nil {
			break // closed by the server: expected
		}
	}
	if code := flooder.waitClosed(); code != 1008 {
		t.Fatalf("flooder closed with %d, want 1008", code)
	}
	// b got at most the burst of spam, then the calm event.
	spam := 0
	a.send(protocol.MsgBroadcastEvent, map[string]any{"event": "calm"})
	for {
		env := b.next()
		if env.Type != protocol.MsgBroadcastEventRelay {
			continue
		}
		var ev protocol.BroadcastEventRelayPayload
		json.Unmarshal(env.Payload, &ev)
		if ev.Event == "calm" {
			break
		}
		spam++
	}
	if spam > 250 {
		t.Fatalf("%d spam events relayed; the burst is 200", spam)
	}
}

package livesync

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// Tests of hostile input: malformed messages and frames, garbage and
// stalled handshakes, each harming only its own connection.

// stillServed checks that two well-behaved clients in a room still see
// each other's events.
func stillServed(t *testing.T, a, b *livesynctest.Client, tag string) {
	t.Helper()
	a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": tag})
	eventsBefore(b, tag)
}

// eventsBefore reads c's messages up to the relayed event named tag,
// passing over other messages (presence traffic from attackers, say), and
// returns how many other events came first.
func eventsBefore(c *livesynctest.Client, tag string) int {
	c.T.Helper()
	for n := 0; ; n++ {
		var ev protocol.BroadcastEventRelayPayload
		json.Unmarshal(c.NextOf(protocol.MsgBroadcastEventRelay).Payload, &ev)
		if ev.Event == tag {
			return n
		}
	}
}

func TestBadInputGetsErrorsAndHarmsNobody(t *testing.T) {
	_, url := startServer(t, nil)
	bad, other := livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	other.Join("r", nil)

	notInRoom := []struct{ name, frame, code string }{
		{"not JSON", `{"type":`, protocol.CodeInvalidJSON},
		{"not an object", `[1,2]`, protocol.CodeInvalidMessage},
		{"type not a string", `{"type":5}`, protocol.CodeInvalidMessage},
		{"no type", `{"payload":{}}`, protocol.CodeInvalidMessage},
		{"unknown type", `{"type":"explode","payload":{}}`, protocol.CodeInvalidMessage},
		{"join without payload", `{"type":"join_room"}`, protocol.CodeInvalidPayload},
		{"payload not an object", `{"type":"join_room","payload":"r"}`, protocol.CodeInvalidPayload},
		{"roomId missing", `{"type":"join_room","payload":{}}`, protocol.CodeInvalidPayload},
		{"roomId empty", `{"type":"join_room","payload":{"roomId":""}}`, protocol.CodeInvalidPayload},
		{"roomId not a string", `{"type":"join_room","payload":{"roomId":42}}`, protocol.CodeInvalidPayload},
		{"roomId too long", `{"type":"join_room","payload":{"roomId":"` + strings.Repeat("a", 257) + `"}}`, protocol.CodeInvalidPayload},
		{"roomId control char", `{"type":"join_room","payload":{"roomId":"a\u0000b"}}`, protocol.CodeInvalidPayload},
		{"presence not an object", `{"type":"join_room","payload":{"roomId":"r","presence":[1]}}`, protocol.CodeInvalidPayload},
		{"presence too large", `{"type":"join_room","payload":{"roomId":"r","presence":{"a":"` + strings.Repeat("x", 9000) + `"}}}`, protocol.CodeMessageTooLarge},
		{"event before joining", `{"type":"broadcast_event","payload":{"event":"e"}}`, protocol.CodeNotInRoom},
		{"chat before joining", `{"type":"send_chat","payload":{"message":"m"}}`, protocol.CodeNotInRoom},
		{"presence before joining", `{"type":"update_presence","payload":{"presence":{}}}`, protocol.CodeNotInRoom},
	}
	for _, tc := range notInRoom {
		bad.SendRaw(tc.frame)
		if e := bad.ExpectError(tc.code); e.Message == "" {
			t.Errorf("%s: empty error message", tc.name)
		} else if strings.HasPrefix(tc.name, "join") && !strings.Contains(e.Message, "roomId") {
			t.Errorf("%s: message %q does not name roomId", tc.name, e.Message)
		}
	}
	if err := bad.WS.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	bad.ExpectError(protocol.CodeInvalidMessage)

	bad.Join("r", nil)
	other.Expect(protocol.MsgPresenceUpdated, nil)
	inRoom := []struct{ name, frame, code, field string }{
		{"event not a string", `{"type":"broadcast_event","payload":{"event":7}}`, protocol.CodeInvalidPayload, "event"},
		{"event missing", `{"type":"broadcast_event","payload":{}}`, protocol.CodeInvalidPayload, "event"},
		{"message not a string", `{"type":"send_chat","payload":{"message":{}}}`, protocol.CodeInvalidPayload, "message"},
		{"metadata not an object", `{"type":"send_chat","payload":{"message":"m","metadata":"x"}}`, protocol.CodeInvalidPayload, "metadata"},
		{"chat too large", `{"type":"send_chat","payload":{"message":"` + strings.Repeat("x", 16<<10+1) + `"}}`, protocol.CodeMessageTooLarge, "message"},
		{"presence missing", `{"type":"update_presence","payload":{}}`, protocol.CodeInvalidPayload, "presence"},
		{"presence not an object", `{"type":"update_presence","payload":{"presence":"x"}}`, protocol.CodeInvalidPayload, "presence"},
		{"presence null", `{"type":"update_presence","payload":{"presence":null}}`, protocol.CodeInvalidPayload, "presence"},
	}
	for _, tc := range inRoom {
		bad.SendRaw(tc.frame)
		e := bad.ExpectError(tc.code)
		if tc.field != "" && !strings.Contains(e.Message, tc.field) {
			t.Errorf("%s: message %q does not name %q", tc.name, e.Message, tc.field)
		}
	}
	// Still usable, still in the room, and the other member saw none of it:
	// its next message is the event sent now.
	bad.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "ok"})
	var ev protocol.BroadcastEventRelayPayload
	other.Expect(protocol.MsgBroadcastEventRelay, &ev)
	if ev.Event != "ok" {
		t.Fatalf("other got %+v", ev)
	}
}

func TestMalformedFramesHarmOnlyTheirConnection(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := livesynctest.Pair(t, url, "calm")
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
		rc := livesynctest.RawDial(t, url)
		if _, err := rc.Write(f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !livesynctest.ReadsUntilClosed(rc, livesynctest.Timeout) {
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
	if !livesynctest.ReadsUntilClosed(nc, livesynctest.Timeout) {
		t.Fatal("garbage handshake not closed")
	}
	stillServed(t, a, b, "after garbage")
}

func TestSlowlorisAndHalfOpenHandshakes(t *testing.T) {
	_, url := startServer(t, nil)
	// httptest's server has no header timeout; the library's own Serve
	// does. Exercise Serve with a short handshake limit.
	_, addr := serveOn(t, &Options{Limits: Limits{HandshakeTimeout: 300 * time.Millisecond}}, nil)
	a, b := livesynctest.Pair(t, url, "calm")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
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
			if !livesynctest.ReadsUntilClosed(nc, livesynctest.Timeout) {
				t.Error("stalled handshake was not cut off")
			}
		}()
	}
	// Well-behaved clients of the same server connect and are served
	// meanwhile.
	good := livesynctest.Dial(t, "ws://"+addr+"/live")
	good.Join("g", nil)
	wg.Wait()
	stillServed(t, a, b, "after slowloris")
}

// Leaving a room the connection is not in is no error and changes
// nothing, as in the Node server: the 1.0.x client sends leave_room for
// a room whose join was refused, which must not come back as an error
// in place of the refusal's.
func TestLeavingAnotherRoomIsNoError(t *testing.T) {
	_, url := startServer(t, nil)
	a, b := livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	a.SendRaw(`{"type":"leave_room"}`)
	a.SendRaw(`{"type":"leave_room","payload":{"roomId":"refused"}}`)
	a.Join("r", nil) // the next message, not an error
	b.Join("r", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)
	a.SendRaw(`{"type":"leave_room","payload":{"roomId":"elsewhere"}}`)
	a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "still here"})
	var ev protocol.BroadcastEventRelayPayload
	b.Expect(protocol.MsgBroadcastEventRelay, &ev) // no leave before it
	if ev.Event != "still here" {
		t.Fatalf("b got %+v", ev)
	}
	a.SendRaw(`{"type":"leave_room","payload":{"roomId":"r"}}`)
	var pu protocol.PresenceUpdatedPayload
	if b.Expect(protocol.MsgPresenceUpdated, &pu); len(pu.Left) != 1 || pu.Left[0] != a.ID {
		t.Fatalf("b saw %+v, want a leave", pu)
	}
}

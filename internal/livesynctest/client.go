// Package livesynctest is the test kit of OpenLiveSync's own tests: a
// protocol client that decodes what the server sends into a channel and
// waits for it with a deadline, the presence view a member keeps
// (snapshot plus deltas, checked as it goes), a raw WebSocket connection
// that does nothing it is not told to, and WaitFor.
//
// It speaks the wire protocol through package protocol only and does not
// import the server package, so the server's internal tests can use it.
// Every helper takes a testing.TB and fails the test itself; none waits
// for a fixed time, only for a condition, bounded by a timeout.
package livesynctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/protocol"
)

// Timeout bounds every wait of the kit unless a client's own Timeout
// says otherwise.
const Timeout = 10 * time.Second

// Client is a protocol test client. A goroutine reads every message the
// server sends, decodes it and queues it on In; Next, Expect and the
// other readers take from that queue, failing the test when nothing comes
// within Timeout.
type Client struct {
	// T is the test the client fails.
	T testing.TB
	// WS is the connection, for writes the protocol methods do not make
	// (binary frames, bytes that are not UTF-8) and for closing it.
	WS *websocket.Conn
	// ID is the connection id the last Join was given.
	ID string
	// View is the client's picture of its room: set from the snapshot by
	// Join, kept up to date by Track and SeesBy.
	View View
	// Timeout bounds each wait of the client; Dial sets it to the
	// package's Timeout.
	Timeout time.Duration

	in   chan protocol.Envelope
	done chan struct{}
	err  error // why reading ended; set before done is closed
}

// HTTPError is the error of a dial the server answered with an HTTP
// status instead of an upgrade.
type HTTPError struct {
	// Status is the response's status code.
	Status int
	// Err is the dialer's error.
	Err error
}

// Error says the status and the dialer's error.
func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err) }

// Unwrap returns the dialer's error.
func (e *HTTPError) Unwrap() error { return e.Err }

// StatusOf returns the HTTP status of a refused dial's error, or 0 when
// err is not an HTTPError.
func StatusOf(err error) int {
	if he, ok := errors.AsType[*HTTPError](err); ok {
		return he.Status
	}
	return 0
}

// Dial connects to url and fails t when it cannot.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	return DialHeader(t, url, nil)
}

// DialHeader is Dial with request headers.
func DialHeader(t testing.TB, url string, h http.Header) *Client {
	t.Helper()
	c, err := TryDial(t, url, h)
	if err != nil {
		t.Fatalf("dial %s %v: %v", url, h, err)
	}
	return c
}

// TryDial connects to url with headers h and returns the error of a
// failed dial, an *HTTPError when the server answered with a status.
func TryDial(t testing.TB, url string, h http.Header) (*Client, error) {
	return DialWith(t, &websocket.Dialer{HandshakeTimeout: Timeout}, url, h)
}

// DialWith is TryDial through d (for a TLS configuration, say).
func DialWith(t testing.TB, d *websocket.Dialer, url string, h http.Header) (*Client, error) {
	ws, resp, err := d.Dial(url, h)
	if err != nil {
		if resp != nil {
			return nil, &HTTPError{resp.StatusCode, err}
		}
		return nil, err
	}
	return on(t, ws), nil
}

// on starts a client's reader on a connection already made; the
// connection is closed when the test ends.
func on(t testing.TB, ws *websocket.Conn) *Client {
	c := &Client{T: t, WS: ws, Timeout: Timeout, in: make(chan protocol.Envelope, 4096), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { ws.Close() })
	return c
}

func (c *Client) read() {
	defer close(c.in)
	defer close(c.done)
	for {
		_, data, err := c.WS.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		var env protocol.Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			c.err = fmt.Errorf("message %q: %w", data, err)
			return
		}
		c.in <- env
	}
}

// In is the queue of received messages, closed after the last one once
// the connection has ended.
func (c *Client) In() <-chan protocol.Envelope { return c.in }

// Err is why the connection ended (a *websocket.CloseError when the
// server closed it), or nil while it is open.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close closes the connection without a close handshake.
func (c *Client) Close() { c.WS.Close() }

// Send sends a message of type typ with payload encoded as JSON.
func (c *Client) Send(typ string, payload any) {
	c.T.Helper()
	msg, err := protocol.Encode(typ, payload)
	if err != nil {
		c.T.Fatal(err)
	}
	c.SendRaw(string(msg))
}

// SendRaw sends s as a text message, as it is.
func (c *Client) SendRaw(s string) {
	c.T.Helper()
	if err := c.WS.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.T.Fatalf("write: %v", err)
	}
}

// Next returns the next message, failing the test when the connection
// ends or nothing arrives within Timeout.
func (c *Client) Next() protocol.Envelope {
	c.T.Helper()
	env, ok := c.nextBy(time.Now().Add(c.Timeout))
	if !ok {
		c.T.Fatalf("timed out after %v waiting for a message", c.Timeout)
	}
	return env
}

// nextBy returns the next message, false when deadline passes first.
func (c *Client) nextBy(deadline time.Time) (protocol.Envelope, bool) {
	c.T.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case env, ok := <-c.in:
		if !ok {
			c.T.Fatalf("connection %s closed while waiting: %v", c.ID, c.err)
		}
		return env, true
	case <-timer.C:
		return protocol.Envelope{}, false
	}
}

// NextOf returns the next message of one of types, passing over others.
func (c *Client) NextOf(types ...string) protocol.Envelope {
	c.T.Helper()
	for {
		if env := c.Next(); slices.Contains(types, env.Type) {
			return env
		}
	}
}

// Expect returns the next message and checks its type, decoding its
// payload into v when v is not nil.
func (c *Client) Expect(typ string, v any) protocol.Envelope {
	c.T.Helper()
	env := c.Next()
	if env.Type != typ {
		c.T.Fatalf("got %s %s, want %s", env.Type, env.Payload, typ)
	}
	if v != nil {
		if err := json.Unmarshal(env.Payload, v); err != nil {
			c.T.Fatalf("decode %s: %v", typ, err)
		}
	}
	return env
}

// ExpectError checks that the next message is an error with code and
// returns it.
func (c *Client) ExpectError(code string) protocol.ErrorPayload {
	c.T.Helper()
	var e protocol.ErrorPayload
	c.Expect(protocol.MsgError, &e)
	if e.Code != code {
		c.T.Fatalf("error code %s (%s), want %s", e.Code, e.Message, code)
	}
	return e
}

// Join joins room with presence (none when nil), checks that the next
// message is room_joined and returns it; it sets ID and View.
func (c *Client) Join(room string, presence any) protocol.RoomJoinedPayload {
	c.T.Helper()
	p := map[string]any{"roomId": room}
	if presence != nil {
		p["presence"] = presence
	}
	c.Send(protocol.MsgJoinRoom, p)
	return c.ExpectJoined()
}

// ExpectJoined checks that the next message is room_joined and returns
// it; it sets ID and View, as Join does for a join sent otherwise.
func (c *Client) ExpectJoined() protocol.RoomJoinedPayload {
	c.T.Helper()
	var rj protocol.RoomJoinedPayload
	c.Expect(protocol.MsgRoomJoined, &rj)
	c.ID = rj.ConnectionID
	c.View = View(rj.Presence)
	return rj
}

// WaitClosed reads until the server has closed the connection and
// returns the close code, 0 when it was cut without a close frame.
func (c *Client) WaitClosed() int {
	c.T.Helper()
	timer := time.NewTimer(c.Timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				if ce, isClose := errors.AsType[*websocket.CloseError](c.err); isClose {
					return ce.Code
				}
				return 0
			}
		case <-timer.C:
			c.T.Fatalf("timed out after %v waiting for the connection to close", c.Timeout)
		}
	}
}

// PresenceBefore reads messages up to the next relayed event and passes
// each presence_updated before it to f.
func (c *Client) PresenceBefore(f func(protocol.PresenceUpdatedPayload)) {
	c.T.Helper()
	for {
		env := c.Next()
		if env.Type == protocol.MsgBroadcastEventRelay {
			return
		}
		if env.Type == protocol.MsgPresenceUpdated {
			f(DecodePresence(c.T, env))
		}
	}
}

// Until passes each message to handle until cond holds, failing the test
// when the connection ends or Timeout passes first.
func (c *Client) Until(what string, cond func() bool, handle func(protocol.Envelope)) {
	c.T.Helper()
	c.UntilBy(time.Now().Add(c.Timeout), what, cond, handle)
}

// UntilBy is Until with a deadline of its own.
func (c *Client) UntilBy(deadline time.Time, what string, cond func() bool, handle func(protocol.Envelope)) {
	c.T.Helper()
	for !cond() {
		env, ok := c.nextBy(deadline)
		if !ok {
			c.T.Fatalf("%s: timed out waiting for %s; view %v", c.ID, what, c.View.IDs())
		}
		handle(env)
	}
}

// Track applies env to View when it is a presence_updated and ignores it
// otherwise.
func (c *Client) Track(env protocol.Envelope) {
	c.T.Helper()
	if env.Type == protocol.MsgPresenceUpdated {
		c.View.Apply(c.T, DecodePresence(c.T, env))
	}
}

// SeesBy reads messages, tracking presence and passing over the rest,
// until View holds exactly the members ids, failing the test when the
// connection ends or deadline passes first.
func (c *Client) SeesBy(deadline time.Time, ids ...string) {
	c.T.Helper()
	c.UntilBy(deadline, fmt.Sprintf("view %v", ids), func() bool { return c.View.Is(ids...) }, c.Track)
}

// DecodePresence decodes a presence_updated message's payload.
func DecodePresence(t testing.TB, env protocol.Envelope) protocol.PresenceUpdatedPayload {
	t.Helper()
	var pu protocol.PresenceUpdatedPayload
	if err := json.Unmarshal(env.Payload, &pu); err != nil {
		t.Fatalf("decode %s %s: %v", env.Type, env.Payload, err)
	}
	return pu
}

// Pair dials url twice and has both clients join room, a first; it
// reads b's arrival on a, so that the next message each gets is whatever
// the test does next.
func Pair(t testing.TB, url, room string) (a, b *Client) {
	t.Helper()
	a, b = Dial(t, url), Dial(t, url)
	a.Join(room, nil)
	b.Join(room, nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)
	return a, b
}

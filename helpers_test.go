package livesync

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 10 * time.Second

// startServer runs a server on an httptest listener and shuts it down when
// the test ends.
func startServer(t testing.TB, opts *Options) (*Server, string) {
	t.Helper()
	s, ts := startOn(t, opts, httptest.NewServer)
	return s, "ws" + strings.TrimPrefix(ts.URL, "http") + s.opts.Path
}

// startOn is startServer on the test server newServer makes (plain or
// TLS); the server is shut down when the test ends.
func startOn(t testing.TB, opts *Options, newServer func(http.Handler) *httptest.Server) (*Server, *httptest.Server) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := newServer(s.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ts.Close()
	})
	return s, ts
}

// client is a test WebSocket client whose reader decodes every frame
// into a channel.
type client struct {
	t      testing.TB
	ws     *websocket.Conn
	in     chan protocol.Envelope
	closed chan struct{}
	err    error // why reading ended; set before closed is closed
	id     string
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	c, err := dialErr(t, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

func dialErr(t testing.TB, url string, h http.Header) (*client, error) {
	d := websocket.Dialer{HandshakeTimeout: waitTimeout}
	ws, resp, err := d.Dial(url, h)
	if err != nil {
		if resp != nil {
			return nil, &httpError{resp.StatusCode, err}
		}
		return nil, err
	}
	return clientOn(t, ws), nil
}

// clientOn starts a test client's reader on a connection already made.
func clientOn(t testing.TB, ws *websocket.Conn) *client {
	c := &client{t: t, ws: ws, in: make(chan protocol.Envelope, 4096), closed: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() { ws.Close() })
	return c
}

type httpError struct {
	status int
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }

func (c *client) readLoop() {
	defer close(c.closed)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		var env protocol.Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			c.err = err
			return
		}
		c.in <- env
	}
}

func (c *client) send(typ string, payload any) {
	c.t.Helper()
	p, err := json.Marshal(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(`{"type":` + string(mustJSON(typ)) + `,"payload":` + string(p) + `}`)
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// next returns the next message, failing the test after waitTimeout.
func (c *client) next() protocol.Envelope {
	c.t.Helper()
	select {
	case env := <-c.in:
		return env
	case <-c.closed:
		select {
		case env := <-c.in:
			return env
		default:
		}
		c.t.Fatalf("connection closed while waiting: %v", c.err)
	case <-time.After(waitTimeout):
		c.t.Fatal("timed out waiting for a message")
	}
	return protocol.Envelope{}
}

// expect returns the next message and checks its type, decoding its
// payload into v when v is not nil.
func (c *client) expect(typ string, v any) protocol.Envelope {
	c.t.Helper()
	env := c.next()
	if env.Type != typ {
		c.t.Fatalf("got %s %s, want %s", env.Type, env.Payload, typ)
	}
	if v != nil {
		if err := json.Unmarshal(env.Payload, v); err != nil {
			c.t.Fatalf("decode %s: %v", typ, err)
		}
	}
	return env
}

// expectError waits for an error message with code.
func (c *client) expectError(code string) protocol.ErrorPayload {
	c.t.Helper()
	var e protocol.ErrorPayload
	c.expect(protocol.MsgError, &e)
	if e.Code != code {
		c.t.Fatalf("error code %s (%s), want %s", e.Code, e.Message, code)
	}
	return e
}

// join joins room and returns the room_joined payload.
func (c *client) join(room string, presence any) protocol.RoomJoinedPayload {
	c.t.Helper()
	p := map[string]any{"roomId": room}
	if presence != nil {
		p["presence"] = presence
	}
	c.send(protocol.MsgJoinRoom, p)
	var rj protocol.RoomJoinedPayload
	c.expect(protocol.MsgRoomJoined, &rj)
	c.id = rj.ConnectionID
	return rj
}

// waitClosed waits for the server to close the connection and returns
// the close code (0 when it was cut without a close frame).
func (c *client) waitClosed() int {
	c.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case <-c.in:
		case <-c.closed:
			if ce, ok := c.err.(*websocket.CloseError); ok {
				return ce.Code
			}
			return 0
		case <-deadline:
			c.t.Fatal("timed out waiting for the connection to close")
		}
	}
}

// presenceBefore reads c's messages up to the next relayed event and
// passes each presence_updated before it to f.
func (c *client) presenceBefore(f func(protocol.PresenceUpdatedPayload)) {
	c.t.Helper()
	for {
		env := c.next()
		if env.Type == protocol.MsgBroadcastEventRelay {
			return
		}
		var pu protocol.PresenceUpdatedPayload
		json.Unmarshal(env.Payload, &pu)
		f(pu)
	}
}

// churn has client i of a convergence test leave when i is odd: by
// leave_room when i%4 == 1, by closing when i%4 == 3.
func churn(i int, c *client) {
	switch i % 4 {
	case 1:
		c.send(protocol.MsgLeaveRoom, nil)
	case 3:
		go c.ws.Close()
	}
}

// view tracks one client's picture of its room: snapshot plus deltas.
type view map[string]protocol.PresenceEntry

func (v view) apply(t testing.TB, p protocol.PresenceUpdatedPayload) {
	t.Helper()
	for _, e := range p.Joined {
		if _, dup := v[e.ConnectionID]; dup {
			t.Errorf("joined %s, already in view", e.ConnectionID)
		}
		v[e.ConnectionID] = e
	}
	for _, id := range p.Left {
		if _, ok := v[id]; !ok {
			t.Errorf("left %s, not in view", id)
		}
		delete(v, id)
	}
	for _, e := range p.Updated {
		if _, ok := v[e.ConnectionID]; !ok {
			t.Errorf("updated %s, not in view", e.ConnectionID)
		}
		v[e.ConnectionID] = e
	}
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testsvc.WaitFor(t, what, waitTimeout, cond)
}

func ctxShutdown(t testing.TB, s *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeServer is a minimal in-process OpenLiveSync relay, just enough protocol
// to exercise the generator's scenarios without the real server: rooms,
// presence snapshot and deltas, broadcast_event to the others, chat_message
// to everyone. dropEvery > 0 drops every dropEvery-th relayed event, to check
// that the generator notices loss.
type fakeServer struct {
	t         *testing.T
	srv       *httptest.Server
	handler   http.Handler
	dropEvery int64
	// stallID names a connection the server stops reading after its join,
	// as a server stuck on one client would.
	stallID string
	stopped chan struct{}
	resume  chan struct{} // closing it makes the stalled connection read again
	events  map[string]int
	// discardEvents drops broadcast_event unparsed, to keep the fake
	// server cheap when a test only pushes bytes at it.
	discardEvents bool

	mu      sync.Mutex
	rooms   map[string]map[*fakeConn]bool
	nextID  int
	chatSeq int
	remotes map[string]int // connections per remote IP
	hostOf  map[int]string // Host header of the connection whose presence is {"i": key}

	relayed atomic.Int64
}

type fakeConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	id   string
	host string // the Host it dialled: which node, when there are several
	room string
	pres json.RawMessage
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, rooms: map[string]map[*fakeConn]bool{}, remotes: map[string]int{},
		stopped: make(chan struct{}), resume: make(chan struct{}), events: map[string]int{}, hostOf: map[int]string{}}
	up := websocket.Upgrader{}
	f.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		f.mu.Lock()
		f.remotes[host]++
		f.nextID++
		c := &fakeConn{ws: ws, id: "conn-" + strconv.Itoa(f.nextID), host: r.Host}
		f.mu.Unlock()
		f.serve(c)
	})
	f.srv = httptest.NewServer(f.handler)
	t.Cleanup(func() {
		close(f.stopped)
		f.srv.Close()
	})
	return f
}

// url is the server's WebSocket URL.
func (f *fakeServer) url() string {
	return wsURL(f.srv)
}

// addNode serves the same rooms on another port, as another node of a
// cluster does, and returns its WebSocket URL.
func (f *fakeServer) addNode() string {
	srv := httptest.NewServer(f.handler)
	f.t.Cleanup(srv.Close)
	return wsURL(srv)
}

func wsURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/live"
}

// joinHosts returns, for each connection that joined with the generator's
// presence {"i": N}, the Host it dialled, by N.
func (f *fakeServer) joinHosts() map[int]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[int]string, len(f.hostOf))
	for k, v := range f.hostOf {
		out[k] = v
	}
	return out
}

func (c *fakeConn) send(typ string, payload any) {
	b, err := json.Marshal(map[string]any{"type": typ, "payload": payload})
	if err != nil {
		panic(err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.ws.WriteMessage(websocket.TextMessage, b)
}

func (f *fakeServer) serve(c *fakeConn) {
	defer f.leave(c)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if f.discardEvents && bytes.Contains(b, []byte(`"broadcast_event"`)) {
			f.mu.Lock()
			f.events[c.id]++
			f.mu.Unlock()
			continue
		}
		var env struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(b, &env) != nil {
			c.send("error", map[string]string{"code": "INVALID_JSON", "message": "bad json"})
			continue
		}
		switch env.Type {
		case "join_room":
			var p struct {
				RoomID   string          `json:"roomId"`
				Presence json.RawMessage `json:"presence"`
			}
			_ = json.Unmarshal(env.Payload, &p)
			f.join(c, p.RoomID, p.Presence)
			if c.id == f.stallID {
				select {
				case <-f.stopped:
					return
				case <-f.resume:
				}
			}
		case "broadcast_event":
			var p struct {
				Event   string          `json:"event"`
				Payload json.RawMessage `json:"payload"`
			}
			_ = json.Unmarshal(env.Payload, &p)
			for _, o := range f.members(c.room) {
				if o == c {
					continue
				}
				if n := f.relayed.Add(1); f.dropEvery > 0 && n%f.dropEvery == 0 {
					continue
				}
				o.send("broadcast_event", map[string]any{"roomId": c.room, "connectionId": c.id, "event": p.Event, "payload": p.Payload})
			}
		case "send_chat":
			var p struct {
				Message  string          `json:"message"`
				Metadata json.RawMessage `json:"metadata"`
			}
			_ = json.Unmarshal(env.Payload, &p)
			f.mu.Lock()
			f.chatSeq++
			id := "m" + strconv.Itoa(f.chatSeq)
			f.mu.Unlock()
			msg := map[string]any{"roomId": c.room, "connectionId": c.id, "message": p.Message,
				"metadata": p.Metadata, "id": id, "createdAt": time.Now().UnixMilli()}
			for _, o := range f.members(c.room) {
				o.send("chat_message", msg)
			}
		default:
			c.send("error", map[string]string{"code": "INVALID_MESSAGE", "message": env.Type})
		}
	}
}

func entry(c *fakeConn) map[string]any {
	return map[string]any{"connectionId": c.id, "presence": c.pres}
}

func (f *fakeServer) join(c *fakeConn, room string, pres json.RawMessage) {
	f.mu.Lock()
	c.room, c.pres = room, pres
	var named struct {
		I *int `json:"i"`
	}
	if json.Unmarshal(pres, &named) == nil && named.I != nil {
		f.hostOf[*named.I] = c.host
	}
	if f.rooms[room] == nil {
		f.rooms[room] = map[*fakeConn]bool{}
	}
	f.rooms[room][c] = true
	snap := map[string]any{}
	var others []*fakeConn
	for o := range f.rooms[room] {
		snap[o.id] = entry(o)
		if o != c {
			others = append(others, o)
		}
	}
	// Sent under the lock so that every member sees the snapshot and the
	// deltas in an order that converges.
	c.send("room_joined", map[string]any{"roomId": room, "connectionId": c.id, "presence": snap, "chatHistory": []any{}})
	for _, o := range others {
		o.send("presence_updated", map[string]any{"roomId": room, "joined": []any{entry(c)}})
	}
	f.mu.Unlock()
}

func (f *fakeServer) leave(c *fakeConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.room == "" {
		return
	}
	delete(f.rooms[c.room], c)
	for o := range f.rooms[c.room] {
		o.send("presence_updated", map[string]any{"roomId": c.room, "left": []string{c.id}})
	}
}

func (f *fakeServer) members(room string) []*fakeConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*fakeConn, 0, len(f.rooms[room]))
	for o := range f.rooms[room] {
		out = append(out, o)
	}
	return out
}

// remoteIPs returns how many connections came from each address.
func (f *fakeServer) remoteIPs() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.remotes {
		out[k] = v
	}
	return out
}

// eventsFrom returns how many broadcast_event frames the server read from
// connection id (discardEvents mode).
func (f *fakeServer) eventsFrom(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events[id]
}

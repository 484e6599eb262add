package livesync

import (
	"bytes"
	"errors"
	"github.com/openlivesync/livesync/chat"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/yupdate"
)

// yClient is a y-websocket peer written from the wire format, for tests.
type yClient struct {
	t  *testing.T
	ws *websocket.Conn
}

// startDocServer runs a server and returns the base URL of its document
// endpoint ("ws://…/yjs/").
func startDocServer(t *testing.T, opts *Options) (*Server, string) {
	s, u := startServer(t, opts)
	return s, strings.TrimSuffix(u, s.opts.Path) + DocPath
}

func dialDoc(t *testing.T, url string) *yClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return &yClient{t: t, ws: ws}
}

func (c *yClient) write(parts ...[]byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, bytes.Join(parts, nil)); err != nil {
		c.t.Fatal(err)
	}
}

func ySync(sub uint64, payload []byte) []byte {
	return appendYBytes(appendYUint(appendYUint(nil, yMsgSync), sub), payload)
}

func yAwarenessMsg(entries ...yAwarenessEntry) []byte {
	u := appendYUint(nil, uint64(len(entries)))
	for _, e := range entries {
		u = appendYBytes(appendYUint(appendYUint(u, e.client), e.clock), []byte(e.state))
	}
	return appendYBytes(appendYUint(nil, yMsgAwareness), u)
}

// yMsg is one message read, decoded down to its payload.
type yMsg struct {
	typ, sub uint64
	payload  []byte
}

// read returns the next message, failing on a close or a timeout.
func (c *yClient) read() yMsg {
	c.t.Helper()
	m, err := c.next()
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *yClient) next() (yMsg, error) {
	c.ws.SetReadDeadline(time.Now().Add(livesynctest.Timeout))
	op, data, err := c.ws.ReadMessage()
	if err != nil {
		return yMsg{}, err
	}
	if op != websocket.BinaryMessage {
		return yMsg{}, errors.New("text frame on /yjs")
	}
	r := yReader{b: data}
	m := yMsg{typ: r.uint()}
	if m.typ == yMsgSync {
		m.sub = r.uint()
	}
	if m.typ != yMsgQueryAwareness {
		m.payload = r.bytes()
	}
	if r.err != nil || len(r.b) != 0 {
		return m, errors.New("malformed message from the server")
	}
	return m, nil
}

// expect reads the next message and checks its type and sub-type.
func (c *yClient) expect(typ, sub uint64) []byte {
	c.t.Helper()
	m := c.read()
	if m.typ != typ || m.sub != sub {
		c.t.Fatalf("got message %d/%d, want %d/%d", m.typ, m.sub, typ, sub)
	}
	return m.payload
}

// expectClose reads until the server's close frame and returns its code.
func (c *yClient) expectClose() int {
	c.t.Helper()
	for {
		_, err := c.next()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil && !strings.Contains(err.Error(), "malformed") {
			c.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

// handshake does the sync exchange of a provider that has state (an
// update, or nil): it reads the server's step 1, answers it with step 2,
// sends its own step 1 and returns the server's step 2.
func (c *yClient) handshake(state []byte) []byte {
	c.t.Helper()
	if state == nil {
		state = emptyYUpdate
	}
	serverSV := c.expect(yMsgSync, ySyncStep1)
	diff, err := yupdate.DiffUpdate(state, serverSV)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(ySync(ySyncStep2, diff))
	sv, err := yupdate.EncodeStateVectorFromUpdate(state)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(ySync(ySyncStep1, sv))
	return c.expect(yMsgSync, ySyncStep2)
}

// yText is an update typing s into root text "t" as client at clock,
// after the client's previous character when clock > 0.
func yText(client, clock uint64, s string) []byte {
	st := yupdate.Struct{Kind: yupdate.KindItem, ID: yupdate.ID{Client: client, Clock: clock},
		Content: yupdate.ContentString{Str: s}}
	st.Length = st.Content.Len()
	if clock > 0 {
		st.HasOrigin, st.Origin = true, yupdate.ID{Client: client, Clock: clock - 1}
	} else {
		st.Parent, st.ParentName = yupdate.ParentRoot, "t"
	}
	return (&yupdate.Update{Structs: []yupdate.Struct{st}}).Encode()
}

// svOf is the state vector of update, decoded.
func svOf(t *testing.T, update []byte) yupdate.StateVector {
	t.Helper()
	sv, err := yupdate.StateVectorFromUpdate(update)
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

func TestDocSyncAndRelay(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := dialDoc(t, base+"notes")
	if got := a.handshake(nil); !bytes.Equal(got, emptyYUpdate) {
		t.Fatalf("step 2 of an empty document: % x", got)
	}
	b := dialDoc(t, base+"notes")
	b.handshake(nil)
	other := dialDoc(t, base+"other") // another document hears nothing
	other.handshake(nil)

	u1 := yText(1, 0, "hello")
	a.write(ySync(ySyncUpdate, u1))
	if got := b.expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, u1) {
		t.Fatalf("B got % x, want % x", got, u1)
	}
	u2 := yText(1, 5, " world")
	a.write(ySync(ySyncStep2, u2)) // a step 2 is applied and relayed as an update
	if got := b.expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, u2) {
		t.Fatalf("B got % x, want % x", got, u2)
	}

	// A late joiner that has the first update gets only the second.
	c := dialDoc(t, base+"notes")
	sv := c.expect(yMsgSync, ySyncStep1)
	if want := yupdate.EncodeStateVector(yupdate.StateVector{1: 11}); !bytes.Equal(sv, want) {
		t.Fatalf("server's state vector % x, want % x", sv, want)
	}
	c.write(ySync(ySyncStep1, yupdate.EncodeStateVector(yupdate.StateVector{1: 5})))
	diff := c.expect(yMsgSync, ySyncStep2)
	d, err := yupdate.Decode(diff)
	if err != nil || len(d.Structs) != 1 || d.Structs[0].ID.Clock != 5 || d.Structs[0].Content != (yupdate.ContentString{Str: " world"}) {
		t.Fatalf("diff against {1:5}: %+v, %v", d, err)
	}
	// A late joiner with nothing gets the whole document.
	e := dialDoc(t, base+"notes")
	whole := e.handshake(nil)
	if got := svOf(t, whole); got[1] != 11 {
		t.Fatalf("whole document's state vector %v", got)
	}
	want, _ := yupdate.MergeUpdates([][]byte{u1, u2})
	if !bytes.Equal(whole, want) {
		t.Fatalf("step 2 % x, want % x", whole, want)
	}
	// The server learns what a client had before connecting: its step 2.
	f := dialDoc(t, base+"notes")
	mine := yText(2, 0, "x")
	f.handshake(mine)
	for _, peer := range []*yClient{a, b} {
		if got := peer.expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, mine) {
			t.Fatalf("relayed step 2: % x, want % x", got, mine)
		}
	}
	other.ws.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := other.ws.ReadMessage(); err == nil {
		t.Fatal("a peer of another document got a message")
	}
}

func TestDocAwareness(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := dialDoc(t, base+"room")
	a.handshake(nil)
	b := dialDoc(t, base+"room")
	b.handshake(nil)

	a.write(yAwarenessMsg(yAwarenessEntry{client: 7, clock: 1, state: `{"cursor":1}`}))
	for _, peer := range []*yClient{a, b} { // the sender too: it keeps a lone provider alive
		entries, err := decodeYAwareness(peer.expect(yMsgAwareness, 0))
		if err != nil || len(entries) != 1 || entries[0] != (yAwarenessEntry{7, 1, `{"cursor":1}`}) {
			t.Fatalf("relayed awareness %+v, %v", entries, err)
		}
	}
	// B echoes it back, as providers do: nothing new, not relayed.
	b.write(yAwarenessMsg(yAwarenessEntry{client: 7, clock: 1, state: `{"cursor":1}`}))
	// A query is answered with the states known.
	b.write(appendYUint(nil, yMsgQueryAwareness))
	entries, err := decodeYAwareness(b.expect(yMsgAwareness, 0))
	if err != nil || len(entries) != 1 || entries[0].client != 7 {
		t.Fatalf("query: %+v, %v", entries, err)
	}
	// A newcomer is told the states after the server's step 1.
	c := dialDoc(t, base+"room")
	c.expect(yMsgSync, ySyncStep1)
	if entries, err := decodeYAwareness(c.expect(yMsgAwareness, 0)); err != nil || len(entries) != 1 {
		t.Fatalf("newcomer's awareness: %+v, %v", entries, err)
	}
	// A goes: its client is removed for everyone, clock + 1.
	a.ws.Close()
	for _, peer := range []*yClient{b, c} {
		entries, err := decodeYAwareness(peer.expect(yMsgAwareness, 0))
		if err != nil || len(entries) != 1 || entries[0] != (yAwarenessEntry{7, 2, "null"}) {
			t.Fatalf("removal: %+v, %v", entries, err)
		}
	}
}

func TestDocMalformedUpdateCloses(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := dialDoc(t, base+"d")
	a.handshake(nil)
	b := dialDoc(t, base+"d")
	b.handshake(nil)
	good := yText(3, 0, "ok")
	bad := append([]byte(nil), good...)
	bad = bad[:len(bad)-3] // cut short
	a.write(ySync(ySyncUpdate, bad))
	if code := a.expectClose(); code != 1007 {
		t.Fatalf("close code %d, want 1007", code)
	}
	// Nothing reached B, and the document has none of it.
	c := dialDoc(t, base+"d")
	c.handshake(nil)
	b.write(ySync(ySyncUpdate, good))
	if got := c.expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, good) {
		t.Fatalf("relayed % x, want % x", got, good)
	}
	if got := dialDoc(t, base+"d").handshake(nil); !bytes.Equal(got, good) {
		t.Fatalf("document after a malformed update: % x, want % x", got, good)
	}
	b.ws.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, data, err := b.ws.ReadMessage(); err == nil {
		t.Fatalf("B got % x", data)
	}

	for name, msg := range map[string][]byte{
		"truncated envelope":   {0, 2, 10, 1},
		"bad state vector":     ySync(ySyncStep1, []byte{5, 1}),
		"bad awareness":        appendYBytes([]byte{yMsgAwareness}, []byte{1, 7}),
		"unknown sync subtype": ySync(9, emptyYUpdate),
	} {
		c := dialDoc(t, base+"d")
		c.expect(yMsgSync, ySyncStep1)
		c.write(msg)
		if code := c.expectClose(); code != 1007 {
			t.Errorf("%s: close code %d, want 1007", name, code)
		}
	}
	c = dialDoc(t, base+"d")
	c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join_room"}`))
	if code := c.expectClose(); code != 1003 {
		t.Errorf("text frame: close code %d, want 1003", code)
	}
}

func TestDocLimits(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{MaxDocMessageBytes: 1000, MaxDocBytes: 300}})
	keeper := dialDoc(t, base+"d") // keeps the document alive while the others come and go
	keeper.handshake(nil)
	a := dialDoc(t, base+"d")
	a.handshake(nil)
	a.write(ySync(ySyncUpdate, yText(1, 0, strings.Repeat("x", 2000))))
	if code := a.expectClose(); code != 1009 {
		t.Fatalf("oversized frame: close code %d, want 1009", code)
	}
	b := dialDoc(t, base+"d")
	b.handshake(nil)
	b.write(ySync(ySyncUpdate, yText(1, 0, strings.Repeat("x", 200))))
	b.write(ySync(ySyncUpdate, yText(1, 200, strings.Repeat("y", 200))))
	if code := b.expectClose(); code != 1009 {
		t.Fatalf("document over MaxDocBytes: close code %d, want 1009", code)
	}
	c := dialDoc(t, base+"d")
	if got := svOf(t, c.handshake(nil)); got[1] != 200 {
		t.Fatalf("document after the refused update: state vector %v, want {1:200}", got)
	}
}

// TestDocUpdateFloodIsCut: a peer sending updates faster than
// DocUpdateRate is closed with 1008, and its peer, which received what
// was relayed before, stays connected: a large update fits the headroom
// a document peer's queue has beyond SendQueueBytes.
func TestDocUpdateFloodIsCut(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{DocUpdateRate: 1000, MaxDocMessageBytes: 8 << 10, SendQueueBytes: 4 << 10}})
	a, b := dialDoc(t, base+"d"), dialDoc(t, base+"d")
	a.handshake(nil)
	b.handshake(nil)
	a.write(ySync(ySyncUpdate, yText(1, 0, strings.Repeat("x", 6000)))) // over SendQueueBytes: relayed all the same
	b.expect(yMsgSync, ySyncUpdate)
	for i := range 40 { // 4,000 bytes more: beyond the 8 KiB burst at 1,000 bytes/s
		a.write(ySync(ySyncUpdate, yText(1, uint64(6000+100*i), strings.Repeat("y", 100))))
	}
	if code := a.expectClose(); code != 1008 {
		t.Fatalf("flooding peer: close code %d, want 1008", code)
	}
	c := dialDoc(t, base+"d")
	if got := svOf(t, c.handshake(nil)); got[1] < 6000 {
		t.Fatalf("document after the flood: state vector %v, want at least {1:6000}", got)
	}
	b.write(ySync(ySyncUpdate, yText(2, 0, "still here")))
	c.expect(yMsgSync, ySyncUpdate)
}

// TestDocForgottenWhenEmpty: a document kept in memory lives while it
// has peers; once the last leaves it is forgotten, and the next peer
// starts an empty one.
// A document nobody edits any more leaves memory, and comes back from the
// store (the default MemoryStore keeps documents) when it is opened again.
func TestDocForgottenWhenEmpty(t *testing.T) {
	s, base := startDocServer(t, nil)
	a := dialDoc(t, base+"d")
	a.handshake(nil)
	b := dialDoc(t, base+"d")
	b.handshake(nil)
	a.write(ySync(ySyncUpdate, yText(1, 0, "hello")))
	b.expect(yMsgSync, ySyncUpdate) // the document holds it
	a.ws.Close()
	b.ws.Close()
	livesynctest.WaitFor(t, "the document to be forgotten", func() bool { return len(s.openDocs()) == 0 })
	c := dialDoc(t, base+"d")
	got := svOf(t, c.handshake(nil))
	if _, stored := s.store.(chat.DocStore); !stored {
		if len(got) != 0 {
			t.Fatalf("after every peer left, with no store to keep it: state vector %v, want empty", got)
		}
		return
	}
	if got[1] != 5 {
		t.Fatalf("after every peer left: state vector %v, want client 1 at 5 (from the store)", got)
	}
}

func TestDocAccess(t *testing.T) {
	_, base := startDocServer(t, &Options{
		OnAuth: func(r *http.Request) (*UserInfo, error) {
			switch r.URL.Query().Get("access_token") {
			case "alice":
				return &UserInfo{UserID: "alice", Rooms: []string{"team-*"}}, nil
			case "broken":
				return nil, errors.New("auth backend down")
			}
			return nil, nil
		},
	})
	for _, tc := range []struct {
		url  string
		code int
	}{
		{"team-a", 4401},
		{"team-a?access_token=bob", 4401},
		{"team-a?access_token=broken", 4500},
		{"other?access_token=alice", 4403},
		{"%01bad?access_token=alice", 4400},
	} {
		c := dialDoc(t, base+tc.url)
		if code := c.expectClose(); code != tc.code {
			t.Errorf("%s: close code %d, want %d", tc.url, code, tc.code)
		}
	}
	ok := dialDoc(t, base+"team-a?access_token=alice")
	ok.handshake(nil)
}

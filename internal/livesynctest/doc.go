package livesynctest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/lib0"
	"github.com/openlivesync/livesync/yupdate"
)

// The y-websocket message types (y-protocols) and sync sub-types.
const (
	DocSync           = 0
	DocAwareness      = 1
	DocQueryAwareness = 3

	SyncStep1  = 0 // a state vector
	SyncStep2  = 1 // an update answering one
	SyncUpdate = 2 // an update made since
)

// EmptyUpdate is the Yjs update of an empty document.
var EmptyUpdate = []byte{0, 0}

// DocClient is a peer of the document endpoint (/yjs/{room}) written from
// the y-websocket wire format, for tests: it sends what a test builds and
// reads messages decoded down to their payload.
type DocClient struct {
	t  testing.TB
	WS *websocket.Conn
}

// DialDoc connects a DocClient to url (…/yjs/room), closed when the test
// ends.
func DialDoc(t testing.TB, url string) *DocClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return &DocClient{t: t, WS: ws}
}

// DialSynced is DialDoc followed by the handshake of a provider with no
// state of its own: the client is then in sync with the document.
func DialSynced(t testing.TB, url string) *DocClient {
	t.Helper()
	c := DialDoc(t, url)
	c.Handshake(nil)
	return c
}

// Write sends the parts, concatenated, as one binary message.
func (c *DocClient) Write(parts ...[]byte) {
	c.t.Helper()
	if err := c.WS.WriteMessage(websocket.BinaryMessage, bytes.Join(parts, nil)); err != nil {
		c.t.Fatal(err)
	}
}

// DocMsg is one message read, decoded down to its payload.
type DocMsg struct {
	Type, Sub uint64
	Payload   []byte
}

// Read returns the next message, failing on a close or a timeout.
func (c *DocClient) Read() DocMsg {
	c.t.Helper()
	m, err := c.Next()
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// Next returns the next message, or the error that ended reading.
func (c *DocClient) Next() (DocMsg, error) {
	c.WS.SetReadDeadline(time.Now().Add(Timeout))
	op, data, err := c.WS.ReadMessage()
	if err != nil {
		return DocMsg{}, err
	}
	if op != websocket.BinaryMessage {
		return DocMsg{}, errors.New("text frame on /yjs")
	}
	r := lib0.Reader{B: data}
	m := DocMsg{Type: r.Uint()}
	if m.Type == DocSync {
		m.Sub = r.Uint()
	}
	if m.Type != DocQueryAwareness {
		m.Payload = r.Bytes()
	}
	if r.Err != nil || len(r.B) != 0 {
		return m, errors.New("malformed message from the server")
	}
	return m, nil
}

// Expect reads the next message and checks its type and sub-type.
func (c *DocClient) Expect(typ, sub uint64) []byte {
	c.t.Helper()
	m := c.Read()
	if m.Type != typ || m.Sub != sub {
		c.t.Fatalf("got message %d/%d, want %d/%d", m.Type, m.Sub, typ, sub)
	}
	return m.Payload
}

// Flush returns once the server has handled every message this client
// sent before it: the server answers a connection's messages in order,
// so the reply to a sync step 1 sent now comes after them. Messages read
// meanwhile are dropped.
func (c *DocClient) Flush() {
	c.t.Helper()
	c.Write(SyncMsg(SyncStep1, yupdate.EncodeStateVector(nil)))
	for {
		if m := c.Read(); m.Type == DocSync && m.Sub == SyncStep2 {
			return
		}
	}
}

// ExpectClose reads until the server's close frame and returns its code.
func (c *DocClient) ExpectClose() int {
	c.t.Helper()
	for {
		_, err := c.Next()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil && !strings.Contains(err.Error(), "malformed") {
			c.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

// Handshake does the sync exchange of a provider that has state (an
// update, or nil): it reads the server's step 1, answers it with step 2,
// sends its own step 1 and returns the server's step 2, merged with the
// updates that came before it. Awareness messages are skipped.
func (c *DocClient) Handshake(state []byte) []byte {
	c.t.Helper()
	if state == nil {
		state = EmptyUpdate
	}
	serverSV := c.Expect(DocSync, SyncStep1)
	diff, err := yupdate.DiffUpdate(state, serverSV)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Write(SyncMsg(SyncStep2, diff))
	sv, err := yupdate.EncodeStateVectorFromUpdate(state)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Write(SyncMsg(SyncStep1, sv))
	var before [][]byte
	for {
		m := c.Read()
		switch {
		case m.Type == DocAwareness:
		case m.Type == DocSync && m.Sub == SyncUpdate:
			before = append(before, m.Payload)
		case m.Type == DocSync && m.Sub == SyncStep2:
			if len(before) == 0 {
				return m.Payload
			}
			merged, err := yupdate.MergeUpdates(append(before, m.Payload))
			if err != nil {
				c.t.Fatal(err)
			}
			return merged
		default:
			c.t.Fatalf("got message %d/%d before the server's sync step 2", m.Type, m.Sub)
		}
	}
}

// ReadUntil reads messages, merging the updates into state, until done
// accepts the merged state or the awareness update just read (the other
// argument is nil), and returns the state.
func (c *DocClient) ReadUntil(state []byte, done func(state, awareness []byte) bool) []byte {
	c.t.Helper()
	if state == nil {
		state = EmptyUpdate
	}
	for {
		m := c.Read()
		switch {
		case m.Type == DocSync && m.Sub != SyncStep1:
			merged, err := yupdate.MergeUpdates([][]byte{state, m.Payload})
			if err != nil {
				c.t.Fatal(err)
			}
			if state = merged; done(state, nil) {
				return state
			}
		case m.Type == DocAwareness:
			if done(nil, m.Payload) {
				return state
			}
		}
	}
}

// SyncMsg is a sync message of sub-type sub carrying payload.
func SyncMsg(sub uint64, payload []byte) []byte {
	return lib0.AppendBytes(lib0.AppendUint(lib0.AppendUint(nil, DocSync), sub), payload)
}

// AwarenessEntry is one client's state in an awareness message: JSON
// text, "null" for a client gone.
type AwarenessEntry struct {
	Client, Clock uint64
	State         string
}

// AwarenessMsg is an awareness message carrying entries.
func AwarenessMsg(entries ...AwarenessEntry) []byte {
	u := lib0.AppendUint(nil, uint64(len(entries)))
	for _, e := range entries {
		u = lib0.AppendBytes(lib0.AppendUint(lib0.AppendUint(u, e.Client), e.Clock), []byte(e.State))
	}
	return lib0.AppendBytes(lib0.AppendUint(nil, DocAwareness), u)
}

// TextUpdate is an update typing s into the root text "t" as client at
// clock, after the client's previous character when clock > 0.
func TextUpdate(client, clock uint64, s string) []byte {
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

// HasClock reports whether update holds client's structs up to clock.
func HasClock(t testing.TB, update []byte, client, clock uint64) bool {
	t.Helper()
	sv, err := yupdate.StateVectorFromUpdate(update)
	if err != nil {
		t.Fatal(err)
	}
	return sv[client] >= clock
}

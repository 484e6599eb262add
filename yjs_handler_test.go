package livesync

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/lib0"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/yupdate"
)

// startDocServer runs a server and returns the base URL of its document
// endpoint ("ws://…/yjs/").
func startDocServer(t *testing.T, opts *Options) (*Server, string) {
	s, u := startServer(t, opts)
	return s, strings.TrimSuffix(u, s.opts.Path) + DocPath
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
	a := livesynctest.DialDoc(t, base+"notes")
	if got := a.Handshake(nil); !bytes.Equal(got, emptyYUpdate) {
		t.Fatalf("step 2 of an empty document: % x", got)
	}
	b := livesynctest.DialSynced(t, base+"notes")
	other := livesynctest.DialDoc(t, base+"other") // another document hears nothing
	other.Handshake(nil)

	u1 := livesynctest.TextUpdate(1, 0, "hello")
	a.Write(livesynctest.SyncMsg(ySyncUpdate, u1))
	if got := b.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, u1) {
		t.Fatalf("B got % x, want % x", got, u1)
	}
	u2 := livesynctest.TextUpdate(1, 5, " world")
	a.Write(livesynctest.SyncMsg(ySyncStep2, u2)) // a step 2 is applied and relayed as an update
	if got := b.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, u2) {
		t.Fatalf("B got % x, want % x", got, u2)
	}

	// A late joiner that has the first update gets only the second.
	c := livesynctest.DialDoc(t, base+"notes")
	sv := c.Expect(yMsgSync, ySyncStep1)
	if want := yupdate.EncodeStateVector(yupdate.StateVector{1: 11}); !bytes.Equal(sv, want) {
		t.Fatalf("server's state vector % x, want % x", sv, want)
	}
	c.Write(livesynctest.SyncMsg(ySyncStep1, yupdate.EncodeStateVector(yupdate.StateVector{1: 5})))
	diff := c.Expect(yMsgSync, ySyncStep2)
	d, err := yupdate.Decode(diff)
	if err != nil || len(d.Structs) != 1 || d.Structs[0].ID.Clock != 5 || d.Structs[0].Content != (yupdate.ContentString{Str: " world"}) {
		t.Fatalf("diff against {1:5}: %+v, %v", d, err)
	}
	// A late joiner with nothing gets the whole document.
	e := livesynctest.DialDoc(t, base+"notes")
	whole := e.Handshake(nil)
	if got := svOf(t, whole); got[1] != 11 {
		t.Fatalf("whole document's state vector %v", got)
	}
	merged, _ := yupdate.MergeUpdates([][]byte{u1, u2})
	if want, _ := yupdate.GC(merged); !bytes.Equal(whole, want) {
		t.Fatalf("step 2 % x, want % x (the two updates merged and collected)", whole, want)
	}
	// The server learns what a client had before connecting: its step 2.
	f := livesynctest.DialDoc(t, base+"notes")
	mine := livesynctest.TextUpdate(2, 0, "x")
	f.Handshake(mine)
	for _, peer := range []*livesynctest.DocClient{a, b} {
		if got := peer.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, mine) {
			t.Fatalf("relayed step 2: % x, want % x", got, mine)
		}
	}
	other.WS.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := other.WS.ReadMessage(); err == nil {
		t.Fatal("a peer of another document got a message")
	}
}

func TestDocAwareness(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := livesynctest.DialSynced(t, base+"room")
	b := livesynctest.DialSynced(t, base+"room")

	a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 1, State: `{"cursor":1}`}))
	for _, peer := range []*livesynctest.DocClient{a, b} { // the sender too: it keeps a lone provider alive
		entries, err := decodeYAwareness(peer.Expect(yMsgAwareness, 0))
		if err != nil || len(entries) != 1 || entries[0] != (yAwarenessEntry{7, 1, `{"cursor":1}`}) {
			t.Fatalf("relayed awareness %+v, %v", entries, err)
		}
	}
	// B echoes it back, as providers do: nothing new, not relayed.
	b.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 1, State: `{"cursor":1}`}))
	// A query is answered with the states known.
	b.Write(lib0.AppendUint(nil, yMsgQueryAwareness))
	entries, err := decodeYAwareness(b.Expect(yMsgAwareness, 0))
	if err != nil || len(entries) != 1 || entries[0].client != 7 {
		t.Fatalf("query: %+v, %v", entries, err)
	}
	// A newcomer is told the states after the server's step 1.
	c := livesynctest.DialDoc(t, base+"room")
	c.Expect(yMsgSync, ySyncStep1)
	if entries, err := decodeYAwareness(c.Expect(yMsgAwareness, 0)); err != nil || len(entries) != 1 {
		t.Fatalf("newcomer's awareness: %+v, %v", entries, err)
	}
	// A goes: its client is removed for everyone, clock + 1.
	a.WS.Close()
	for _, peer := range []*livesynctest.DocClient{b, c} {
		entries, err := decodeYAwareness(peer.Expect(yMsgAwareness, 0))
		if err != nil || len(entries) != 1 || entries[0] != (yAwarenessEntry{7, 2, "null"}) {
			t.Fatalf("removal: %+v, %v", entries, err)
		}
	}
}

// Updates that decode by the format's grammar but that Yjs cannot apply
// (see yupdate's poison tests): one item of client 1 at clock 0 under the
// root type "t", an embed whose JSON is "{{", and an item whose origin is
// itself.
var (
	poisonEmbed  = []byte{1, 1, 1, 0, 5, 1, 1, 't', 2, '{', '{', 0}
	poisonOrigin = []byte{1, 1, 1, 0, 0x84, 1, 0, 1, 'x', 0}
)

func TestDocMalformedUpdateCloses(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := livesynctest.DialSynced(t, base+"d")
	b := livesynctest.DialSynced(t, base+"d")
	good := livesynctest.TextUpdate(3, 0, "ok")
	bad := append([]byte(nil), good...)
	bad = bad[:len(bad)-3] // cut short
	a.Write(livesynctest.SyncMsg(ySyncUpdate, bad))
	if code := a.ExpectClose(); code != 1007 {
		t.Fatalf("close code %d, want 1007", code)
	}
	// Nothing reached B, and the document has none of it.
	c := livesynctest.DialSynced(t, base+"d")
	b.Write(livesynctest.SyncMsg(ySyncUpdate, good))
	if got := c.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, good) {
		t.Fatalf("relayed % x, want % x", got, good)
	}
	if got := livesynctest.DialDoc(t, base+"d").Handshake(nil); !bytes.Equal(got, good) {
		t.Fatalf("document after a malformed update: % x, want % x", got, good)
	}
	b.WS.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, data, err := b.WS.ReadMessage(); err == nil {
		t.Fatalf("B got % x", data)
	}

	for name, msg := range map[string][]byte{
		"truncated envelope":   {0, 2, 10, 1},
		"bad state vector":     livesynctest.SyncMsg(ySyncStep1, []byte{5, 1}),
		"bad awareness":        lib0.AppendBytes([]byte{yMsgAwareness}, []byte{1, 7}),
		"unknown sync subtype": livesynctest.SyncMsg(9, emptyYUpdate),
	} {
		c := livesynctest.DialDoc(t, base+"d")
		c.Expect(yMsgSync, ySyncStep1)
		c.Write(msg)
		if code := c.ExpectClose(); code != 1007 {
			t.Errorf("%s: close code %d, want 1007", name, code)
		}
	}
	if got := livesynctest.DialDoc(t, base+"d").Handshake(nil); !bytes.Equal(got, good) {
		t.Fatalf("document after malformed messages: % x, want % x", got, good)
	}
	c = livesynctest.DialDoc(t, base+"d")
	c.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"join_room"}`))
	if code := c.ExpectClose(); code != 1003 {
		t.Errorf("text frame: close code %d, want 1003", code)
	}
}

func TestDocLimits(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{MaxDocMessageBytes: 1000, MaxDocBytes: 300}})
	keeper := livesynctest.DialDoc(t, base+"d") // keeps the document alive while the others come and go
	keeper.Handshake(nil)
	a := livesynctest.DialSynced(t, base+"d")
	a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, strings.Repeat("x", 2000))))
	// 4413, a refusal y-websocket stops on; after 1009 it would reconnect
	// and send the frame again, forever.
	if code := a.ExpectClose(); code != protocol.CloseDocumentTooLarge {
		t.Fatalf("oversized frame: close code %d, want 4413", code)
	}
	b := livesynctest.DialSynced(t, base+"d")
	b.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, strings.Repeat("x", 200))))
	b.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 200, strings.Repeat("y", 200))))
	if code := b.ExpectClose(); code != protocol.CloseDocumentFull {
		t.Fatalf("document over MaxDocBytes: close code %d, want 4413", code)
	}
	c := livesynctest.DialDoc(t, base+"d")
	if got := svOf(t, c.Handshake(nil)); got[1] != 200 {
		t.Fatalf("document after the refused update: state vector %v, want {1:200}", got)
	}
}

// TestDocLimitCountsMergedSize: MaxDocBytes bounds the merged document,
// not the raw updates waiting to be merged: fifty one-character appends
// take ~20 bytes each raw but merge to a ~60-byte document, which fits.
func TestDocLimitCountsMergedSize(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{MaxDocBytes: 300}})
	a := livesynctest.DialSynced(t, base+"d")
	raw := 0
	for i := range 50 {
		u := livesynctest.TextUpdate(1, uint64(i), "x")
		raw += len(u)
		a.Write(livesynctest.SyncMsg(ySyncUpdate, u))
	}
	if raw <= 300 {
		t.Fatalf("the updates take %d bytes raw: the test needs more than the limit", raw)
	}
	a.Flush() // the server has taken every append
	c := livesynctest.DialDoc(t, base+"d")
	if got := svOf(t, c.Handshake(nil)); got[1] != 50 {
		t.Fatalf("document: state vector %v, want {1:50} (every append kept)", got)
	}
	a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 50, "y")))
	c.Expect(yMsgSync, ySyncUpdate) // the writer was not closed
}

// TestDocUpdateFloodIsCut: a peer sending updates faster than
// DocUpdateRate is closed with 1008, and its peer, which received what
// was relayed before, stays connected: a large update fits the headroom
// a document peer's queue has beyond SendQueueBytes.
func TestDocUpdateFloodIsCut(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{DocUpdateRate: 1000, MaxDocMessageBytes: 8 << 10, SendQueueBytes: 4 << 10}})
	a, b := livesynctest.DialDoc(t, base+"d"), livesynctest.DialDoc(t, base+"d")
	a.Handshake(nil)
	b.Handshake(nil)
	a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, strings.Repeat("x", 6000)))) // over SendQueueBytes: relayed all the same
	b.Expect(yMsgSync, ySyncUpdate)
	for i := range 40 { // 4,000 bytes more: beyond the 8 KiB burst at 1,000 bytes/s
		a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, uint64(6000+100*i), strings.Repeat("y", 100))))
	}
	if code := a.ExpectClose(); code != 1008 {
		t.Fatalf("flooding peer: close code %d, want 1008", code)
	}
	c := livesynctest.DialDoc(t, base+"d")
	if got := svOf(t, c.Handshake(nil)); got[1] < 6000 {
		t.Fatalf("document after the flood: state vector %v, want at least {1:6000}", got)
	}
	b.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(2, 0, "still here")))
	c.Expect(yMsgSync, ySyncUpdate)
}

// TestDocForgottenWhenEmpty: a document kept in memory lives while it
// has peers; once the last leaves it is forgotten, and the next peer
// starts an empty one.
// A document nobody edits any more leaves memory, and comes back from the
// store (the default MemoryStore keeps documents) when it is opened again.
func TestDocForgottenWhenEmpty(t *testing.T) {
	s, base := startDocServer(t, nil)
	a := livesynctest.DialSynced(t, base+"d")
	b := livesynctest.DialSynced(t, base+"d")
	a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, "hello")))
	b.Expect(yMsgSync, ySyncUpdate) // the document holds it
	a.WS.Close()
	b.WS.Close()
	livesynctest.WaitFor(t, "the document to be forgotten", func() bool { return len(s.openDocs()) == 0 })
	c := livesynctest.DialDoc(t, base+"d")
	got := svOf(t, c.Handshake(nil))
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
		{"%2E?access_token=alice", 4400},
		{"%2E%2E?access_token=alice", 4400},
	} {
		c := livesynctest.DialDoc(t, base+tc.url)
		if code := c.ExpectClose(); code != tc.code {
			t.Errorf("%s: close code %d, want %d", tc.url, code, tc.code)
		}
	}
	livesynctest.DialSynced(t, base+"team-a?access_token=alice")
}

// An idle document holds one merged update: what arrived is merged once
// the document has been quiet for a moment, and no spare buffer is kept.
func TestDocIdleHoldsOneUpdate(t *testing.T) {
	s, base := startDocServer(t, nil)
	a := livesynctest.DialSynced(t, base+"d")
	for i := range uint64(40) {
		a.Write(livesynctest.SyncMsg(livesynctest.SyncUpdate, livesynctest.TextUpdate(1, i, "k")))
	}
	livesynctest.WaitFor(t, "the updates to be merged", func() bool {
		d := s.lookupDoc("d")
		if d == nil {
			return false
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		sv, err := yupdate.StateVectorFromUpdate(d.state)
		return err == nil && sv[1] == 40 && len(d.pending) == 0 && cap(d.state) <= 2*len(d.state)
	})
}

// TestDocAwarenessAfterRemoval: a provider whose socket was cut comes
// back with its client id at the clock it had, which the server's removal
// (clock + 1) outdates in every peer: y-protocols ignores it, and the
// cursor stays hidden until the provider's renewals pass the removal's
// clock (30 s). The server answers the stale state, to its sender only,
// with the removal, which a provider answers with its state at a clock
// above it; that one reaches everyone.
func TestDocAwarenessAfterRemoval(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := livesynctest.DialSynced(t, base+"room")
	b := livesynctest.DialSynced(t, base+"room")
	a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 1, State: `{"cursor":1}`}))
	readAwareness(t, a)
	readAwareness(t, b)
	a.WS.Close()
	if got := readAwareness(t, b); len(got) != 1 || got[0] != (yAwarenessEntry{7, 2, "null"}) {
		t.Fatalf("removal: %+v", got)
	}
	back := livesynctest.DialSynced(t, base+"room")
	for _, clock := range []uint64{1, 2} { // as it was, and its renewal
		back.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: clock, State: `{"cursor":1}`}))
		if got := readAwareness(t, back); len(got) != 1 || got[0] != (yAwarenessEntry{7, 2, "null"}) {
			t.Fatalf("answer to the state at clock %d: %+v, want the removal at clock 2", clock, got)
		}
	}
	// What y-protocols does with a removal of its own state: its clock
	// goes past it, and it sends its state again.
	back.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 3, State: `{"cursor":1}`}))
	for _, peer := range []*livesynctest.DocClient{b, back} {
		if got := readAwareness(t, peer); len(got) != 1 || got[0] != (yAwarenessEntry{7, 3, `{"cursor":1}`}) {
			t.Fatalf("state after the removal: %+v", got)
		}
	}
	quiet(t, b, "the stale states") // they reached no one
}

// TestDocAsksNewClientsToRenew: the first state of a client the server
// does not hold (a provider back after a restart, at the clock its peers
// saw) is answered, to its sender alone, with a removal at its clock, to
// which y-protocols answers with its state one clock above: the one
// every peer takes. A client held already is not asked again.
func TestDocAsksNewClientsToRenew(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := livesynctest.DialSynced(t, base+"room")
	b := livesynctest.DialSynced(t, base+"room")
	a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 3, State: `{"c":1}`}))
	for _, p := range []*livesynctest.DocClient{a, b} {
		if got := readAwareness(t, p); len(got) != 1 || got[0] != (yAwarenessEntry{7, 3, `{"c":1}`}) {
			t.Fatalf("relay: %+v", got)
		}
	}
	if got := readAwareness(t, a); len(got) != 1 || got[0] != (yAwarenessEntry{7, 3, "null"}) {
		t.Fatalf("ask: %+v, want the removal of client 7 at clock 3", got)
	}
	a.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 7, Clock: 4, State: `{"c":1}`}))
	for _, p := range []*livesynctest.DocClient{a, b} {
		if got := readAwareness(t, p); len(got) != 1 || got[0] != (yAwarenessEntry{7, 4, `{"c":1}`}) {
			t.Fatalf("renewal: %+v", got)
		}
	}
	quiet(t, a, "another ask")
	quiet(t, b, "the ask")
}

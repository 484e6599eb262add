package livesync

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/lib0"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/yupdate"
)

// The limits of the document endpoint: what an awareness state may be,
// how often a connection may send awareness, queries and sync step 1s,
// what a joiner is sent at once, and the shape of sync messages.

// readAwareness reads the next message of c, an awareness one, decoded.
func readAwareness(t *testing.T, c *livesynctest.DocClient) []yAwarenessEntry {
	t.Helper()
	entries, err := decodeYAwareness(c.Expect(yMsgAwareness, 0))
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// quiet checks that c receives nothing for a moment; c reads nothing
// more after it (a read deadline that passes breaks the connection).
func quiet(t *testing.T, c *livesynctest.DocClient, what string) {
	t.Helper()
	c.WS.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, data, err := c.WS.ReadMessage(); err == nil {
		t.Fatalf("%s: got % x", what, data)
	}
}

// An awareness state that is not JSON would throw in every peer's
// JSON.parse and lose the rest of the message there: it closes its
// sender with 1007, reaches no peer and is kept for no joiner.
func TestDocAwarenessMustBeJSON(t *testing.T) {
	s, base := startDocServer(t, nil)
	watcher := livesynctest.DialSynced(t, base+"d")
	for _, state := range []string{`{"cursor":`, `undefined`, `{'a':1}`, ``, `{"a":1} x`} {
		c := livesynctest.DialSynced(t, base+"d")
		c.Write(livesynctest.AwarenessMsg(
			livesynctest.AwarenessEntry{Client: 1, Clock: 1, State: `{"ok":true}`},
			livesynctest.AwarenessEntry{Client: 2, Clock: 1, State: state}))
		if code := c.ExpectClose(); code != protocol.CloseInvalidData {
			t.Errorf("state %q: close %d, want %d", state, code, protocol.CloseInvalidData)
		}
	}
	d := s.lookupDoc("d")
	d.mu.Lock()
	kept := len(d.aware)
	d.mu.Unlock()
	if kept != 0 {
		t.Fatalf("the document keeps %d awareness states of refused messages", kept)
	}

	// JSON of every kind is relayed, and null with spaces is a removal;
	// the watcher's first message is the first of these: nothing of the
	// refused messages reached it.
	c := livesynctest.DialSynced(t, base+"d")
	for i, state := range []string{`{"user":{"name":"Ada 😀"}}`, `"text"`, `12`, ` [1, 2] `} {
		c.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 9, Clock: uint64(i + 1), State: state}))
		if got := readAwareness(t, watcher); len(got) != 1 || got[0].state != state {
			t.Fatalf("relayed %+v, want state %q", got, state)
		}
		readAwareness(t, c)
	}
	c.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 9, Clock: 20, State: " null\n"}))
	readAwareness(t, watcher)
	joiner := livesynctest.DialDoc(t, base+"d")
	joiner.Expect(yMsgSync, ySyncStep1)
	quiet(t, joiner, "a joiner after the only state was removed")
}

// An awareness state is bounded as presence is (MaxPresenceBytes): one
// over it closes its sender with 4413 and reaches nobody.
func TestDocAwarenessStateSize(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{MaxPresenceBytes: 100}})
	watcher := livesynctest.DialSynced(t, base+"d")
	c := livesynctest.DialSynced(t, base+"d")
	fits := `"` + strings.Repeat("x", 98) + `"`
	c.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 1, Clock: 1, State: fits}))
	if got := readAwareness(t, watcher); len(got) != 1 || got[0].state != fits {
		t.Fatalf("a state of MaxPresenceBytes: relayed %+v", got)
	}
	c.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 1, Clock: 2, State: `"` + strings.Repeat("x", 99) + `"`}))
	if code := c.ExpectClose(); code != protocol.CloseDocumentTooLarge {
		t.Fatalf("a state over MaxPresenceBytes: close %d, want %d", code, protocol.CloseDocumentTooLarge)
	}
	// Its only news is that its client is gone (clock 1 + 1): the large
	// state never arrived.
	if got := readAwareness(t, watcher); len(got) != 1 || got[0] != (yAwarenessEntry{1, 2, "null"}) {
		t.Fatalf("after the refused state the watcher got %+v, want the client's removal", got)
	}
}

// A joiner is sent the awareness states at once, as a snapshot: however
// many peers and however large their states, what it is sent is bounded
// (half the send queue) and never counts as a backlog of its own, so
// that it is not dropped as a slow consumer before it could read.
func TestDocJoinerAwarenessIsBounded(t *testing.T) {
	const queue = 16 << 10
	_, base := startDocServer(t, &Options{Limits: Limits{SendQueueBytes: queue, MaxDocMessageBytes: 32 << 10, MaxPresenceBytes: 2000}})
	state := `"` + strings.Repeat("s", 1998) + `"`
	peers := make([]*livesynctest.DocClient, 4)
	for i := range peers {
		peers[i] = livesynctest.DialDoc(t, base+"d")
		peers[i].Handshake(nil)
	}
	for i, p := range peers { // each announces 12 clients: 96 KB of states in all
		entries := make([]livesynctest.AwarenessEntry, 12)
		for j := range entries {
			entries[j] = livesynctest.AwarenessEntry{Client: uint64(100*i + j), Clock: 1, State: state}
		}
		p.Write(livesynctest.AwarenessMsg(entries...))
		for _, q := range peers {
			readAwareness(t, q)
		}
		readAwareness(t, p) // the ask to renew new clients (yjs_renewals.go)
	}
	joiner := livesynctest.DialDoc(t, base+"d")
	joiner.Expect(yMsgSync, ySyncStep1)
	m := joiner.Read()
	if m.Type != yMsgAwareness {
		t.Fatalf("joiner's second message is %d/%d, want awareness", m.Type, m.Sub)
	}
	entries, err := decodeYAwareness(m.Payload)
	if err != nil || len(entries) == 0 || len(m.Payload) > queue/2 {
		t.Fatalf("joiner's awareness: %d states in %d bytes (%v), want some, in at most %d", len(entries), len(m.Payload), err, queue/2)
	}
	joiner.Write(livesynctest.SyncMsg(ySyncStep1, yupdate.EncodeStateVector(nil)))
	joiner.Expect(yMsgSync, ySyncStep2)
	joiner.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, "joined")))
	if got := peers[0].Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, livesynctest.TextUpdate(1, 0, "joined")) {
		t.Fatalf("the joiner's update: % x", got)
	}
}

// Awareness that changes a state is rate-limited (DocAwarenessRate):
// beyond the rate a message is dropped, and MaxViolations of them in a
// row close the connection with 1008. Echoes of known states, which
// every provider sends back, change nothing and are not counted.
func TestDocAwarenessRate(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{DocAwarenessRate: 0.001, DocAwarenessBurst: 2, MaxViolations: 5}})
	watcher := livesynctest.DialSynced(t, base+"d")
	c := livesynctest.DialSynced(t, base+"d")
	state := func(clock uint64) []byte {
		return livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 5, Clock: clock, State: `{"at":1}`})
	}
	c.Write(state(1))
	for range 20 { // echoes: free
		c.Write(state(1))
	}
	c.Write(state(2))
	for clock := uint64(3); clock < 3+5; clock++ { // over the rate: dropped, five in a row
		c.Write(state(clock))
	}
	if code := c.ExpectClose(); code != protocol.ClosePolicy {
		t.Fatalf("awareness flood: close %d, want %d", code, protocol.ClosePolicy)
	}
	for _, want := range []yAwarenessEntry{{5, 1, `{"at":1}`}, {5, 2, `{"at":1}`}, {5, 3, "null"}} {
		if got := readAwareness(t, watcher); len(got) != 1 || got[0] != want {
			t.Fatalf("watcher got %+v, want %+v (the dropped states never relayed)", got, want)
		}
	}

	// Queries count too.
	q := livesynctest.DialSynced(t, base+"d")
	for range 2 + 5 {
		q.Write(lib0.AppendUint(nil, yMsgQueryAwareness))
	}
	if code := q.ExpectClose(); code != protocol.ClosePolicy {
		t.Fatalf("query flood: close %d, want %d", code, protocol.ClosePolicy)
	}
}

// Each sync step 1 is answered with a diff of the whole document: they
// are rate-limited (DocSyncRate), and a client beyond is closed with 1008.
func TestDocSyncStep1Rate(t *testing.T) {
	s, base := startDocServer(t, &Options{Limits: Limits{DocSyncRate: 0.001, DocSyncBurst: 3}})
	c := livesynctest.DialDoc(t, base+"d")
	c.Expect(yMsgSync, ySyncStep1)
	for range 10 {
		c.Write(livesynctest.SyncMsg(ySyncStep1, yupdate.EncodeStateVector(nil)))
	}
	for range 3 {
		c.Expect(yMsgSync, ySyncStep2)
	}
	if code := c.ExpectClose(); code != protocol.ClosePolicy {
		t.Fatalf("step 1 flood: close %d, want %d", code, protocol.ClosePolicy)
	}
	waitMetric(t, s, 1, "livesync_rate_limit_disconnects_total")
}

// A message with bytes after its payload is malformed (1007): nothing
// of it is applied or relayed.
func TestDocTrailingBytesAreMalformed(t *testing.T) {
	_, base := startDocServer(t, nil)
	watcher := livesynctest.DialSynced(t, base+"d")
	u := livesynctest.TextUpdate(1, 0, "x")
	for name, msg := range map[string][]byte{
		"update":         append(livesynctest.SyncMsg(ySyncUpdate, u), 0),
		"step 2":         append(livesynctest.SyncMsg(ySyncStep2, u), 1, 2, 3),
		"step 1":         append(livesynctest.SyncMsg(ySyncStep1, yupdate.EncodeStateVector(nil)), 0),
		"query":          {yMsgQueryAwareness, 0},
		"awareness tail": append(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 1, Clock: 1, State: "{}"}), 0),
	} {
		c := livesynctest.DialDoc(t, base+"d")
		c.Expect(yMsgSync, ySyncStep1)
		c.Write(msg)
		if code := c.ExpectClose(); code != protocol.CloseInvalidData {
			t.Errorf("%s with trailing bytes: close %d, want %d", name, code, protocol.CloseInvalidData)
		}
	}
	quiet(t, watcher, "a peer after messages with trailing bytes")
	if got := livesynctest.DialDoc(t, base+"d").Handshake(nil); !bytes.Equal(got, emptyYUpdate) {
		t.Fatalf("the document after them: % x, want it empty", got)
	}
}

// A document message may take a few MiB by default: one paste of a long
// text, or the sync step 2 of a provider that edited offline, is accepted
// and relayed whole.
func TestDocLargeUpdateFitsByDefault(t *testing.T) {
	_, base := startDocServer(t, nil)
	a := livesynctest.DialSynced(t, base+"d")
	b := livesynctest.DialSynced(t, base+"d")
	paste := livesynctest.TextUpdate(1, 0, strings.Repeat("long text ", 300_000)) // 3 MB
	a.Write(livesynctest.SyncMsg(ySyncStep2, paste))
	if got := b.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, paste) {
		t.Fatalf("relayed %d bytes, want the %d of the paste", len(got), len(paste))
	}
}

// A lone peer whose awareness state is null renews nothing, and pings do
// not count for y-websocket, which reconnects when no message came for
// 30 s: the server sends a peer it wrote nothing to for docKeepAlive an
// awareness message that changes nothing.
func TestDocKeepAlive(t *testing.T) {
	defer func(d time.Duration) { docKeepAlive = d }(docKeepAlive)
	docKeepAlive = 50 * time.Millisecond
	_, base := startDocServer(t, nil)
	c := livesynctest.DialSynced(t, base+"d")
	for range 3 {
		if got := readAwareness(t, c); len(got) != 0 {
			t.Fatalf("keep-alive carries %+v, want no entries", got)
		}
	}
}

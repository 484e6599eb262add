package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/yupdate"
)

// fakeYServer is a minimal in-process y-websocket server that behaves like
// the official Node one where the two servers differ: it speaks first
// (sync step 1, then an awareness update and a query-awareness, before
// the client has said anything), relays every update to every connection
// of the document, the sender included, and answers a step 1 with
// everything it holds, merged. mergeEvery > 1 relays updates in merged
// batches of that many, as a server that coalesces updates would.
type fakeYServer struct {
	srv        *httptest.Server
	mergeEvery int

	mu      sync.Mutex
	conns   map[string]map[*fakeYConn]bool // by document name
	updates map[string][][]byte
	batch   map[string][][]byte // mergeEvery > 1: updates not relayed yet
}

type fakeYConn struct {
	ws  *websocket.Conn
	wmu sync.Mutex
}

func (c *fakeYConn) write(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.ws.WriteMessage(websocket.BinaryMessage, b)
}

func newFakeYServer(t *testing.T, mergeEvery int) *fakeYServer {
	t.Helper()
	f := &fakeYServer{mergeEvery: mergeEvery, conns: map[string]map[*fakeYConn]bool{},
		updates: map[string][][]byte{}, batch: map[string][][]byte{}}
	up := websocket.Upgrader{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.serve(&fakeYConn{ws: ws}, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// url is the base a doc scenario's -url names.
func (f *fakeYServer) url() string {
	return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/base"
}

func (f *fakeYServer) serve(c *fakeYConn, doc string) {
	f.mu.Lock()
	if f.conns[doc] == nil {
		f.conns[doc] = map[*fakeYConn]bool{}
	}
	f.conns[doc][c] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.conns[doc], c)
		f.mu.Unlock()
		c.ws.Close()
	}()
	c.write(appendYSync(nil, ySyncStep1, yEmptyStateVector))
	// An awareness update: one client (7), clock 1, state null.
	c.write(append([]byte{yMsgAwareness, 8, 1, 7, 1, 4}, "null"...))
	c.write([]byte{yMsgQueryAwareness})
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		typ, sub, payload, err := parseYMessage(msg)
		if err != nil || typ != yMsgSync {
			continue
		}
		switch sub {
		case ySyncStep1:
			f.mu.Lock()
			all, err := yupdate.MergeUpdates(append([][]byte{yEmptyUpdate}, f.updates[doc]...))
			f.mu.Unlock()
			if err != nil {
				panic(err)
			}
			c.write(appendYSync(nil, ySyncStep2, all))
		case ySyncStep2, ySyncUpdate:
			if bytes.Equal(payload, yEmptyUpdate) {
				continue
			}
			f.relay(doc, append([]byte(nil), payload...))
		}
	}
}

// relay keeps update and sends it, or the batch it completes, to every
// connection of doc.
func (f *fakeYServer) relay(doc string, update []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates[doc] = append(f.updates[doc], update)
	out := update
	if f.mergeEvery > 1 {
		f.batch[doc] = append(f.batch[doc], update)
		if len(f.batch[doc]) < f.mergeEvery {
			return
		}
		merged, err := yupdate.MergeUpdates(f.batch[doc])
		if err != nil {
			panic(err)
		}
		f.batch[doc], out = nil, merged
	}
	msg := appendYSync(nil, ySyncUpdate, out)
	for c := range f.conns[doc] {
		c.write(msg)
	}
}

func TestDocAgainstFakeNodeServer(t *testing.T) {
	f := newFakeYServer(t, 1)
	res := runWith(t, f.url(), "-scenario", "doc", "-clients", "4", "-interval", "50ms",
		"-warmup", "200ms", "-duration", "1s", "-grace", "5s").(*DocResult)
	if res.Sent == 0 {
		t.Fatal("nothing sent in the window")
	}
	if res.Loss != 0 || res.Delivered != res.Expected || res.Expected != 3*res.Sent {
		t.Fatalf("sent %d, delivered %d, expected %d, loss %v", res.Sent, res.Delivered, res.Expected, res.Loss)
	}
	// Every keystroke comes back to its sender too, warm-up ones included.
	if res.SelfDeliveries < res.Sent {
		t.Fatalf("self deliveries %d < sent %d", res.SelfDeliveries, res.Sent)
	}
	if res.Duplicates+res.Gaps+res.Foreign+res.Undecodable != 0 || res.Disconnects != 0 || len(res.Errors) != 0 {
		t.Fatalf("anomalies: %+v", res)
	}
	if res.P50MS <= 0 || res.MaxMS < res.P99MS {
		t.Fatalf("latency %+v", res.LatencySummary)
	}
}

// TestDocCountsMergedUpdates checks that a server that merges keystrokes
// into one update before relaying them is credited with each of them.
func TestDocCountsMergedUpdates(t *testing.T) {
	f := newFakeYServer(t, 3)
	res := runWith(t, f.url(), "-scenario", "doc", "-clients", "3", "-interval", "50ms",
		"-warmup", "200ms", "-duration", "1s", "-grace", "1s").(*DocResult)
	// The last batch may stay unsent: at most mergeEvery-1 keystrokes,
	// each missing at the 2 other editors.
	if res.Sent == 0 || res.Expected-res.Delivered > 2*2 || res.Delivered > res.Expected {
		t.Fatalf("sent %d, delivered %d, expected %d", res.Sent, res.Delivered, res.Expected)
	}
	if res.Duplicates+res.Gaps+res.Foreign+res.Undecodable != 0 {
		t.Fatalf("anomalies: %+v", res)
	}
}

// TestDocAgainstRealServer runs a tiny doc load against our /yjs endpoint.
func TestDocAgainstRealServer(t *testing.T) {
	url := strings.TrimSuffix(startRealServer(t), "/live") + "/yjs"
	res := runWith(t, url, "-scenario", "doc", "-clients", "4", "-interval", "50ms",
		"-warmup", "200ms", "-duration", "1s", "-grace", "5s").(*DocResult)
	if res.Sent == 0 || res.Loss != 0 || res.Delivered != res.Expected || res.Expected != 3*res.Sent {
		t.Fatalf("sent %d, delivered %d, expected %d, loss %v", res.Sent, res.Delivered, res.Expected, res.Loss)
	}
	if res.SelfDeliveries+res.Duplicates+res.Gaps+res.Foreign+res.Undecodable != 0 || res.Disconnects != 0 || len(res.Errors) != 0 {
		t.Fatalf("anomalies: %+v", res)
	}
}

func TestDocConfig(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "doc", "-clients", "1"},
		{"-scenario", "doc", "-rooms", "2"},
		{"-scenario", "doc", "-interval", "0s"},
		{"-scenario", "doc", "-duration", "1ms"},
	} {
		if _, err := parseConfig(args, io.Discard); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	cfg, err := parseConfig([]string{"-scenario", "doc", "-url", "ws://localhost:1234/yjs", "-clients", "50", "-expect", "loss<=0,latency_p99_ms<=20,deliveries_per_server_cpu_s>=1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.params(), "50 editors in 1 doc, a keystroke every 100ms"; got != want {
		t.Errorf("params %q, want %q", got, want)
	}
}

func TestKeystrokeAndMessages(t *testing.T) {
	for clock := uint64(0); clock < 3; clock++ {
		msg := appendYSync(nil, ySyncUpdate, keystroke(1<<31+5, clock, 'é'))
		typ, sub, payload, err := parseYMessage(msg)
		if err != nil || typ != yMsgSync || sub != ySyncUpdate {
			t.Fatalf("parse: %d %d %v", typ, sub, err)
		}
		u, err := yupdate.Decode(payload)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.Validate(); err != nil {
			t.Fatal(err)
		}
		s := u.Structs[0]
		if len(u.Structs) != 1 || s.ID != (yupdate.ID{Client: 1<<31 + 5, Clock: clock}) || s.Length != 1 {
			t.Fatalf("structs %+v", u.Structs)
		}
		if c, ok := s.Content.(yupdate.ContentString); !ok || c.Str != "é" {
			t.Fatalf("content %#v", s.Content)
		}
		if clock == 0 && (s.HasOrigin || s.Parent != yupdate.ParentRoot || s.ParentName != "t") {
			t.Fatalf("first keystroke %+v", s)
		}
		if clock > 0 && (!s.HasOrigin || s.Origin != (yupdate.ID{Client: 1<<31 + 5, Clock: clock - 1})) {
			t.Fatalf("keystroke %d %+v", clock, s)
		}
	}
	for _, bad := range [][]byte{nil, {0x80}, {0, 2}, {0, 2, 5, 0}, {0, 2, 1}} {
		if _, _, _, err := parseYMessage(bad); err == nil {
			t.Errorf("% x: parsed", bad)
		}
	}
	if typ, _, _, err := parseYMessage([]byte{yMsgAwareness, 3, 1, 2, 3}); err != nil || typ != yMsgAwareness {
		t.Errorf("awareness: %d %v", typ, err)
	}
}

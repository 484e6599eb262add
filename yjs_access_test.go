package livesync

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// The rules of rooms on the document endpoint: CanJoin, the origin
// allowlist, the per-address cap, bans and heartbeats.

// dialDocStatus dials a document with header and returns the HTTP status
// of a refused upgrade (0 when it was upgraded, and closes it).
func dialDocStatus(t *testing.T, url string, header http.Header) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err == nil {
		ws.Close()
		return 0
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return resp.StatusCode
}

func TestDocCanJoinRefuses(t *testing.T) {
	var (
		mu    sync.Mutex
		asked []string
	)
	_, base := startDocServer(t, &Options{
		OnAuth: func(r *http.Request) (*UserInfo, error) { return &UserInfo{UserID: "u"}, nil },
		CanJoin: func(_ context.Context, user *UserInfo, room string) bool {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, user.UserID+"@"+room)
			return room != "secret"
		},
	})
	refused := livesynctest.DialDoc(t, base+"secret")
	if code := refused.ExpectClose(); code != protocol.CloseForbidden {
		t.Fatalf("a document CanJoin refuses: close %d, want %d", code, protocol.CloseForbidden)
	}
	livesynctest.DialSynced(t, base+"open")
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != "u@secret" || asked[1] != "u@open" {
		t.Fatalf("CanJoin was asked %v, want u@secret then u@open", asked)
	}
}

func TestDocOriginAllowlist(t *testing.T) {
	_, base := startDocServer(t, &Options{AllowedOrigins: []string{"https://ok.example"}})
	if status := dialDocStatus(t, base+"d", http.Header{"Origin": {"https://evil.example"}}); status != http.StatusForbidden {
		t.Fatalf("an upgrade from another origin: HTTP %d, want 403", status)
	}
	if status := dialDocStatus(t, base+"d", http.Header{"Origin": {"https://ok.example"}}); status != 0 {
		t.Fatalf("an upgrade from the allowed origin: HTTP %d, want it upgraded", status)
	}
}

func TestDocConnectionsPerIP(t *testing.T) {
	s, base := startDocServer(t, &Options{Limits: Limits{ConnectionsPerIP: 2}})
	livesynctest.DialSynced(t, base+"d")
	b := livesynctest.DialSynced(t, base+"other")
	if status := dialDocStatus(t, base+"d", nil); status != http.StatusTooManyRequests {
		t.Fatalf("a third document connection from one address: HTTP %d, want 429", status)
	}
	b.WS.Close()
	livesynctest.WaitFor(t, "the closed connection's slot to free", func() bool { return s.Stats().Connections == 1 })
	livesynctest.DialDoc(t, base+"d").Handshake(nil)
}

// A user kicked with a ban is closed with 4403 and refused the document
// again (4403) until the ban ends; the other users are not.
func TestDocBannedUser(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: func(r *http.Request) (*UserInfo, error) {
		return &UserInfo{UserID: r.URL.Query().Get("access_token")}, nil
	}}, testAPIKey)
	docURL := "ws" + o.base[len("http"):] + DocPath
	mallory := livesynctest.DialSynced(t, docURL+"d?access_token=mallory")
	if res := o.api(t, http.MethodPost, roomPath("d", "/kick"), `{"userId":"mallory","banSeconds":600}`); res.status != http.StatusOK {
		t.Fatalf("kick: %d %s", res.status, res.body)
	}
	if code := mallory.ExpectClose(); code != protocol.CloseKicked {
		t.Fatalf("kicked: close %d, want %d", code, protocol.CloseKicked)
	}
	again := livesynctest.DialDoc(t, docURL+"d?access_token=mallory")
	if code := again.ExpectClose(); code != protocol.CloseForbidden {
		t.Fatalf("banned user back: close %d, want %d", code, protocol.CloseForbidden)
	}
	livesynctest.DialDoc(t, docURL+"other?access_token=mallory").Handshake(nil) // banned from d only
	livesynctest.DialDoc(t, docURL+"d?access_token=alice").Handshake(nil)
}

// A peer that stops answering pings is dropped after PongTimeout, and its
// awareness states are removed for the others at once (state null, clock
// + 1), not after y-protocols' 30 s.
func TestDocHeartbeatRemovesAwareness(t *testing.T) {
	_, base := startDocServer(t, &Options{Limits: Limits{PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond}})
	watcher := livesynctest.DialSynced(t, base+"d")
	dead := livesynctest.DialSynced(t, base+"d")
	dead.Write(livesynctest.AwarenessMsg(livesynctest.AwarenessEntry{Client: 42, Clock: 7, State: `{"cursor":3}`}))
	// From now on the dead peer reads nothing, so it answers no ping;
	// the watcher, reading, answers them.
	if got := readAwareness(t, watcher); len(got) != 1 || got[0] != (yAwarenessEntry{42, 7, `{"cursor":3}`}) {
		t.Fatalf("the dead peer's state: %+v", got)
	}
	if got := readAwareness(t, watcher); len(got) != 1 || got[0] != (yAwarenessEntry{42, 8, "null"}) {
		t.Fatalf("after the dead peer's timeout the watcher got %+v, want client 42 removed at clock 8", got)
	}
}

// A room id with characters that mean something in a URL names its
// document when escaped, as encodeURIComponent escapes it (the README's
// snippet): the server unescapes the path segment, "/" included.
func TestDocEscapedRoomID(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	docURL := "ws" + o.base[len("http"):] + DocPath
	const room = "team a/b?c=1#d 100%"
	c := livesynctest.DialSynced(t, docURL+url.PathEscape(room))
	u := livesynctest.TextUpdate(1, 0, "escaped")
	c.Write(livesynctest.SyncMsg(ySyncUpdate, u))
	livesynctest.WaitFor(t, "the update in the document named "+room, func() bool {
		return bytes.Equal(o.api(t, http.MethodGet, roomPath(room, "/document"), "").body, u)
	})
	if o.s.lookupDoc(room) == nil || len(o.s.openDocs()) != 1 {
		t.Fatalf("open documents %d, want the one named %q", len(o.s.openDocs()), room)
	}
}

// A member cannot change or remove the awareness state (cursor, name) of
// another user's client: such entries are dropped and the rest of the
// message goes on. Another connection of the same user takes the client
// over (a provider reconnecting before its old socket is known dead), so
// that the old connection's end does not remove it.
func TestDocAwarenessOwnedByItsUser(t *testing.T) {
	s, base := startDocServer(t, &Options{OnAuth: func(r *http.Request) (*UserInfo, error) {
		return &UserInfo{UserID: r.URL.Query().Get("u")}, nil
	}})
	entry := func(client, clock uint64, state string) livesynctest.AwarenessEntry {
		return livesynctest.AwarenessEntry{Client: client, Clock: clock, State: state}
	}
	watcher := livesynctest.DialSynced(t, base+"d?u=w")
	expect := func(what string, want ...livesynctest.AwarenessEntry) {
		t.Helper()
		got := readAwareness(t, watcher)
		if len(got) != len(want) {
			t.Fatalf("%s: watcher got %+v, want %+v", what, got, want)
		}
		for i, w := range want {
			if got[i].client != w.Client || got[i].clock != w.Clock || got[i].state != w.State {
				t.Fatalf("%s: watcher got %+v, want %+v", what, got, want)
			}
		}
	}
	alice := livesynctest.DialSynced(t, base+"d?u=alice")
	alice.Write(livesynctest.AwarenessMsg(entry(1, 1, `{"name":"alice"}`)))
	expect("alice's state", entry(1, 1, `{"name":"alice"}`))

	mallory := livesynctest.DialSynced(t, base+"d?u=mallory")
	mallory.Write(livesynctest.AwarenessMsg(entry(1, 5, `{"name":"admin"}`), entry(2, 1, `{"name":"mallory"}`)))
	expect("a forged state beside mallory's own", entry(2, 1, `{"name":"mallory"}`))
	mallory.Write(livesynctest.AwarenessMsg(entry(1, 9, "null")))
	mallory.Write(livesynctest.AwarenessMsg(entry(2, 2, `"marker"`)))
	expect("a forged removal, then a marker", entry(2, 2, `"marker"`))

	alice2 := livesynctest.DialSynced(t, base+"d?u=alice")
	alice2.Write(livesynctest.AwarenessMsg(entry(1, 2, `{"name":"alice, again"}`)))
	expect("alice's new connection", entry(1, 2, `{"name":"alice, again"}`))
	alice.WS.Close()
	d := s.lookupDoc("d")
	livesynctest.WaitFor(t, "alice's first connection gone", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.peers) == 3
	})
	mallory.Write(livesynctest.AwarenessMsg(entry(2, 3, `"marker"`)))
	expect("alice's first connection ended, then a marker", entry(2, 3, `"marker"`))
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// hookLog is a webhook receiver's record: each distinct webhook-id once
// (delivery is at least once; receivers deduplicate by id).
type hookLog struct {
	mu   sync.Mutex
	seen map[string]bool
	got  []hookGot
}

type hookGot struct {
	Type string
	Data map[string]string
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p hookGot
	json.Unmarshal(body, &p)
	h.mu.Lock()
	defer h.mu.Unlock()
	if id := r.Header.Get("webhook-id"); !h.seen[id] {
		h.seen[id] = true
		h.got = append(h.got, p)
	}
}

// newHookLog starts a receiver recording into a hookLog, closed when t
// ends, and returns it with its URL.
func newHookLog(t *testing.T) (*hookLog, string) {
	h := &hookLog{seen: map[string]bool{}}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return h, ts.URL
}

// count counts the events of type typ whose data has every field of want.
func (h *hookLog) count(typ string, want ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
next:
	for _, g := range h.got {
		if g.Type != typ {
			continue
		}
		for i := 0; i < len(want); i += 2 {
			if g.Data[want[i]] != want[i+1] {
				continue next
			}
		}
		n++
	}
	return n
}

// expect checks that count(typ, want...) is n.
func (h *hookLog) expect(t *testing.T, n int, typ string, want ...string) {
	t.Helper()
	if have := h.count(typ, want...); have != n {
		t.Errorf("%s %v sent %d times, want %d", typ, want, have, n)
	}
}

// waitCount waits until count(typ, want...) is n.
func (h *hookLog) waitCount(t *testing.T, n int, typ string, want ...string) {
	t.Helper()
	testsvc.WaitState(t, fmt.Sprintf("%d %s %v", n, typ, want), binaryTimeout, func() (bool, any) {
		have := h.count(typ, want...)
		return have == n, have
	})
}

// userToken is an HS256 token for user, signed with secret.
func userToken(t *testing.T, secret, user string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClusterKilledNodeWebhooks: three binaries share a room through
// Redis and send webhooks to one receiver; one is killed with SIGKILL.
// Its members' member.left arrive once each, and the room.vacated and
// user.offline they cause once, from a survivor; a room and a user it
// shared with a live node stay occupied and online until their last
// connection there goes.
func TestClusterKilledNodeWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	rcv, receiver := newHookLog(t)
	secret := strings.Repeat("k", 32)
	url := clusterURL(t)
	bin := buildBinary(t)
	var nodes []string
	var victim interface{ Kill() error }
	for i := range 3 {
		cmd, ws := startBinary(t, bin, "-redis", url, "-jwt-secret", secret,
			"-webhook-url", receiver, "-webhook-secret", hookSecret)
		nodes = append(nodes, ws)
		if i == 2 {
			victim = cmd.Process
		}
	}
	join := func(node int, user, room string) *livesynctest.Client {
		return joinAs(t, nodes[node]+"?access_token="+userToken(t, secret, user), room)
	}
	amy := join(0, "amy", "room")
	bob := join(1, "bob", "room")
	dead := []*livesynctest.Client{join(2, "cat", "room"), join(2, "amy", "room"), join(2, "cat", "solo")}
	rcv.waitCount(t, 5, "member.joined")
	rcv.waitCount(t, 1, "room.occupied", "roomId", "room")
	rcv.waitCount(t, 1, "room.occupied", "roomId", "solo")
	for _, u := range []string{"amy", "bob", "cat"} {
		rcv.waitCount(t, 1, "user.online", "userId", u)
	}

	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, c := range dead {
		rcv.waitCount(t, 1, "member.left", "connectionId", c.ID)
	}
	rcv.waitCount(t, 1, "room.vacated", "roomId", "solo")
	rcv.waitCount(t, 1, "user.offline", "userId", "cat")
	// bob leaving is the marker: its user.offline comes after the offline
	// delay, after anything the sweep still had to send.
	bob.Close()
	rcv.waitCount(t, 1, "user.offline", "userId", "bob")
	for _, c := range dead {
		if n := rcv.count("member.left", "connectionId", c.ID); n != 1 {
			t.Errorf("member.left of %s sent %d times, want once", c.ID, n)
		}
	}
	rcv.expect(t, 1, "room.vacated", "roomId", "solo")
	rcv.expect(t, 0, "room.vacated", "roomId", "room") // amy is still in it on node 0
	rcv.expect(t, 1, "user.offline", "userId", "cat")
	rcv.expect(t, 0, "user.offline", "userId", "amy") // connected to node 0
	amy.Close()
	rcv.waitCount(t, 1, "room.vacated", "roomId", "room")
	rcv.waitCount(t, 1, "user.offline", "userId", "amy")
	rcv.expect(t, 2, "room.vacated")
}

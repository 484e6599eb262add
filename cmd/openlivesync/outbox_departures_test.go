package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// TestKill9SingleNodeDepartures: a server without -redis, on SQLite, is
// killed with SIGKILL while three connections are in rooms; restarted,
// it sends, once -webhook-node-timeout has passed, the member.left of
// each, and the room.vacated and user.offline they cause, once each;
// except for a room and a user that came back to the restarted server
// first, which stay occupied and online until they leave there.
func TestKill9SingleNodeDepartures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	rcv, receiver := newHookLog(t)
	secret := strings.Repeat("k", 32)
	bin := buildBinary(t)
	args := []string{"-store", "sqlite:" + filepath.Join(t.TempDir(), "chat.db"), "-jwt-secret", secret,
		"-webhook-url", receiver, "-webhook-secret", hookSecret, "-webhook-node-timeout", "5s"}
	join := func(url, user, room string) *livesynctest.Client {
		return joinAs(t, url+"?access_token="+userToken(t, secret, user), room)
	}

	first, url := startBinary(t, bin, args...)
	dead := []*livesynctest.Client{join(url, "amy", "room"), join(url, "cat", "room"), join(url, "cat", "solo")}
	rcv.waitCount(t, 3, "member.joined")
	for _, u := range []string{"amy", "cat"} {
		rcv.waitCount(t, 1, "user.online", "userId", u)
	}
	// Every delivery done, so that none is left leased to the dead run
	// (its room's later events would wait out the lease).
	waitOutboxEmpty(t, url)
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()

	// Back before the dead run is spoken for: amy, in room.
	_, url = startBinary(t, bin, args...)
	amy := join(url, "amy", "room")
	for _, c := range dead {
		rcv.waitCount(t, 1, "member.left", "connectionId", c.ID)
	}
	rcv.waitCount(t, 1, "room.vacated", "roomId", "solo")
	rcv.waitCount(t, 1, "user.offline", "userId", "cat")
	rcv.expect(t, 0, "room.vacated", "roomId", "room")
	rcv.expect(t, 0, "user.offline", "userId", "amy")
	amy.Close()
	rcv.waitCount(t, 1, "room.vacated", "roomId", "room")
	rcv.waitCount(t, 1, "user.offline", "userId", "amy")
	rcv.expect(t, 4, "member.left")
}

// waitOutboxEmpty waits until the binary at wsURL reports, on /readyz, a
// webhook outbox with nothing in it.
func waitOutboxEmpty(t *testing.T, wsURL string) {
	t.Helper()
	readyz := "http" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws"), "/live") + "/readyz"
	testsvc.WaitState(t, "an empty webhook outbox", binaryTimeout, func() (bool, any) {
		res, err := http.Get(readyz)
		if err != nil {
			return false, err
		}
		defer res.Body.Close()
		var st struct {
			Webhooks *struct {
				OutboxDepth int `json:"outboxDepth"`
			} `json:"webhooks"`
		}
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil || st.Webhooks == nil {
			return false, err
		}
		return st.Webhooks.OutboxDepth == 0, st.Webhooks.OutboxDepth
	})
}
